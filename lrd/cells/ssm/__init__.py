"""Linear-recurrent and state-space layers, one file per model: LRU, S4D, S5, selective SSM (Mamba S6), RG-LRU,
LinOSS, Mamba-2 (SSD).

Most layers here are a *diagonal linear* recurrence ``h_t = a_t * h_{t-1} + b_t`` (complex for LRU/S4D/S5, real
for S6/RG-LRU; ``a`` constant in time for LRU/S4D/S5, input-dependent for S6/RG-LRU), wrapped in position-wise
maps. Each such module subclasses :class:`lrd.cells.base.LinearRecurrentLayer`: the recurrence runs through
:func:`lrd.scan.linear_scan` in any ``scan_mode`` (default ``"auto"``: per backend, see ``AUTO_SCAN_MODES``;
``"fft"`` for the time-invariant LRU, S4D and S5, ``"fused"`` for the selective SSM), with ``chunk_size`` and
``truncation``; everything else is computed for all steps at once, outside the scan. Two are not diagonal:
LinOSS's transition is a real 2x2 block per oscillator (position and velocity), run by the block scans of its own
file in the same modes; Mamba-2's state is a matrix per head with a scalar decay, run step by step or by the SSD
chunked matmul form (it subclasses :class:`lrd.cells.base.Mixer`). Modules only create parameters and then call
the pure functions of their file, which the tests compare with loops over the papers' equations.

Conventions shared by all layers (helpers in :mod:`lrd.cells.ssm.common`):

* ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]`` for any ``d_in``. A layer whose equations
  need its input to have the model width ``H = hidden_size`` (a skip ``D * u`` or a gate acting on ``u``) first
  applies a linear projection ``u = x W_in + b_in`` (params ``input_kernel``, ``input_bias``) **only when**
  ``d_in != hidden_size``; inside a block model (``d_in == d_model``) the layer is exactly the paper's.
* Complex quantities are stored as separate real and imaginary float32 parameters (``*_re``, ``*_im``), so
  optimizers and :func:`lrd.models.count_params` see real numbers only.
* The gradient probe has the shape of the recurrent state, batch-major, e.g. ``complex64[time, batch, state]``
  for LRU; ``grad`` with respect to it is ``dL/dh_t``.
* Complex diagonal layers with real inputs and outputs (S4D, S5) keep one state of each conjugate pair and read
  out ``2 Re(C h)``; the LRU reads out ``Re(C h)`` as in its paper.
* All layers are causal: ``y_t`` depends on ``x_0..x_t`` only (the short convolutions are left-padded).
"""

from lrd.cells.ssm.common import causal_depthwise_conv, zoh
from lrd.cells.ssm.linoss import LinOSS, block_linear_scan, linoss, linoss_transition
from lrd.cells.ssm.lru import LRU, lru, lru_lambda, lru_ring_init
from lrd.cells.ssm.mamba2 import Mamba2, ssd_chunked, ssd_recurrent
from lrd.cells.ssm.rglru import RGLRU, rglru, rglru_lambda_init, sqrt_bounded_derivative
from lrd.cells.ssm.s4d import S4D, S4D_INITS, s4d, s4d_imag_init
from lrd.cells.ssm.s5 import S5, hippo_legs, hippo_n, hippo_n_diagonalized, s5
from lrd.cells.ssm.selective import SelectiveSSM, selective_scan

__all__ = [
    "LRU",
    "S4D",
    "S5",
    "SelectiveSSM",
    "RGLRU",
    "Mamba2",
    "S4D_INITS",
    "causal_depthwise_conv",
    "zoh",
    "lru_ring_init",
    "lru_lambda",
    "lru",
    "s4d_imag_init",
    "s4d",
    "hippo_legs",
    "hippo_n",
    "hippo_n_diagonalized",
    "s5",
    "selective_scan",
    "ssd_recurrent",
    "ssd_chunked",
    "rglru_lambda_init",
    "rglru",
    "sqrt_bounded_derivative",
    "LinOSS",
    "linoss",
    "linoss_transition",
    "block_linear_scan",
]
