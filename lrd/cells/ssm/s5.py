"""S5: a multi-input multi-output diagonalised state-space layer (Smith, Warrington & Linderman 2023)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.cells.base import LinearRecurrentLayer, normal_initializer, to_batch_major, to_time_major
from lrd.cells.ssm.common import (
    check_time_scales,
    complex_from_parts,
    log_uniform_initializer,
    pairs,
    real_part_of_product,
    real_times_complex,
    to_width,
    unpair,
    zoh,
)
from lrd.registry import register_mixer
from lrd.scan import SCAN_MODES as SCAN_MODES_WITH_TRUNCATION
from lrd.scan import TIME_INVARIANT_SCAN_MODES, linear_scan

MAX_REAL = -1e-4  # clip_eigs: Re(Lambda) <= MAX_REAL keeps the recurrence stable while training

__all__ = ["S5", "s5", "hippo_legs", "hippo_n", "hippo_n_diagonalized"]


def hippo_legs(size: int) -> np.ndarray:
    """HiPPO-LegS (Gu et al. 2020): ``A_nk = -sqrt(2n+1) sqrt(2k+1)`` if ``n > k``, ``-(n+1)`` if ``n = k``, else 0."""
    q = np.sqrt(2 * np.arange(size, dtype=np.float64) + 1)
    return -(np.tril(np.outer(q, q), -1) + np.diag(np.arange(size, dtype=np.float64) + 1))


def hippo_n(size: int) -> np.ndarray:
    """HiPPO-N, the normal part of HiPPO-LegS: ``A_LegS + P P^T`` with ``P_n = sqrt(n + 1/2)`` (S5 Sec. 4.1).

    It equals ``-1/2 I + S`` with ``S`` skew-symmetric, so it is normal and every eigenvalue has real part -1/2.
    """
    p = np.sqrt(np.arange(size, dtype=np.float64) + 0.5)
    return hippo_legs(size) + np.outer(p, p)


@functools.lru_cache(maxsize=16)
def hippo_n_diagonalized(state_size: int, blocks: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(Lambda, V)`` of the S5 initialisation: ``blocks`` copies of HiPPO-N of size ``P/blocks`` on the diagonal.

    Each block ``A_N = V_j Lambda_j V_j^*`` (``V_j`` unitary) is diagonalised through the Hermitian ``-i S``
    (``S = A_N + I/2``), which gives ``Lambda_j = -1/2 + i w`` with ``w`` real. With conjugate symmetry only one
    member of each conjugate pair is kept, so ``Lambda: complex128[P/2]``, ``V: complex128[P, P/2]`` (block
    diagonal) and ``V^*`` restricted to those columns maps real inputs into the kept eigenbasis.
    """
    block = state_size // blocks
    skew = hippo_n(block) + 0.5 * np.eye(block)
    w, vectors = np.linalg.eigh(-1j * skew)
    # eigh sorts w ascending; conjugate pairs are (w, -w), so the first half holds one of each pair.
    lam = -0.5 + 1j * w[: block // 2]
    vectors = vectors[:, : block // 2]
    lam_all = np.tile(lam, blocks)
    v_all = np.zeros((state_size, state_size // 2), np.complex128)
    for j in range(blocks):
        v_all[j * block : (j + 1) * block, j * (block // 2) : (j + 1) * (block // 2)] = vectors
    return lam_all, v_all


def s5(
    u: jax.Array,
    Lambda_re: jax.Array,
    Lambda_im: jax.Array,
    log_step: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    *,
    max_real: float | None = -1e-4,
    probe: jax.Array | None = None,
    dtype: str | None = None,
    **scan_options: Any,
) -> jax.Array:
    """S5: one multi-input multi-output diagonal SSM shared by all channels (Smith et al. 2023, Sec. 3).

    ``x_t = Lambda_bar x_{t-1} + B_bar u_t``, ``y_t = 2 Re(C~ x_t) + D u_t`` with ``Lambda_bar = exp(Delta
    Lambda)``, ``B_bar = ((Lambda_bar - 1) / Lambda) B~`` (zero-order hold, one timescale ``Delta_p =
    exp(log_step_p)`` per state), ``B~ = V^{-1} B`` and ``C~ = C V`` in the eigenbasis of the initial state matrix.
    ``2 Re`` because only one of each conjugate pair of states is kept. ``Re(Lambda)`` is clipped to at most
    ``max_real`` (S5's ``clip_eigs``) so the recurrence stays stable while training.

    Args:
      u: ``float32[batch, time, H]``; Lambda_re, Lambda_im, log_step: ``[P/2]``; B: ``complex64[H, P/2]``
      (input-major ``B~^T``); C: ``complex64[P/2, H]`` (``C~^T``); D: ``float32[H]``;
      probe: ``None`` or ``complex64[time, batch, P/2]``.
      dtype: operand dtype of the two projections (``None``: float32, as given).
      scan_options: keyword arguments of :func:`lrd.scan.linear_scan`.

    Returns:
      ``float32[batch, time, H]``.
    """
    re = Lambda_re if max_real is None else jnp.minimum(Lambda_re, max_real)
    lam = complex_from_parts(re, Lambda_im)
    lam_bar, b_scale = zoh(lam, jnp.exp(log_step))
    bu = to_time_major(real_times_complex(u, B * b_scale, dtype))  # [T, B, P/2]
    h = linear_scan(lam_bar, bu, probe=probe, **scan_options)
    return 2.0 * real_part_of_product(to_batch_major(h), C, dtype) + D * u


@register_mixer(
    "s5",
    family="ssm",
    description="S5: MIMO diagonalised SSM, HiPPO-N init, ZOH, parallel scan (Smith et al. 2023)",
)
class S5(LinearRecurrentLayer):
    """S5 layer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``; see :func:`s5`.

    Attributes:
      hidden_size: ``H``, the width of ``u`` and ``y`` (the input is projected to it if ``d_in != H``).
      state_size: ``P`` (``None``: ``H``); ``P / blocks`` must be even (``P/2`` complex states are kept).
      blocks: ``J`` copies of HiPPO-N of size ``P/J`` on the diagonal of the initial state matrix (S5 Sec. 4.3).
      dt_min, dt_max: ``log Delta_p ~ U[log dt_min, log dt_max]`` per state.
      clip_eigs: clip ``Re(Lambda) <= -1e-4`` (stability while training).
      scan_mode, chunk_size, truncation: see :class:`lrd.cells.base.LinearRecurrentLayer` (the paper uses the
        associative scan).

    Initialisation (Sec. 4): ``Lambda`` from :func:`hippo_n_diagonalized`; ``B ~`` lecun normal ``[P, H]``,
    ``B~ = V^{-1} B``; ``C`` complex with ``Re, Im ~ N(0, 1/P)`` ``[H, P]``, ``C~ = C V``; ``D ~ N(0, 1)``.
    Parameters ``B: float32[H, P/2, 2]`` and ``C: float32[P/2, H, 2]`` hold (real, imaginary) pairs of ``B~^T``
    and ``C~^T`` (``V`` is unitary, so ``V^{-1} = V^*``).
    """

    SCAN_MODES: ClassVar[tuple[str, ...]] = TIME_INVARIANT_SCAN_MODES
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "chunk_size": ("chunked",),
        "truncation": SCAN_MODES_WITH_TRUNCATION,
    }

    state_size: int | None = None
    blocks: int = 1
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    clip_eigs: bool = True

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("state_size", optional=True)
        size = self.state_size or self.hidden_size
        self.require_int("blocks")
        self.require(size % self.blocks == 0, "blocks", f"must divide state_size={size}")
        self.require(
            (size // self.blocks) % 2 == 0,
            "blocks",
            f"state_size / blocks must be even (conjugate pairs), got {size} / {self.blocks}",
        )
        check_time_scales(self)
        self.require_bool("clip_eigs")

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray:
        """The discretised transition ``Lambda_bar = exp(Delta Lambda)`` (with ``clip_eigs`` applied), ``[P/2]``."""
        re = params["Lambda_re"] if not self.clip_eigs else jnp.minimum(params["Lambda_re"], MAX_REAL)
        lam = complex_from_parts(re, params["Lambda_im"])
        return np.asarray(zoh(lam, jnp.exp(params["log_step"]))[0])

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        self.check()
        width = self.hidden_size
        size = self.state_size or width
        half = size // 2
        u = to_width(self, x, width)
        lam, V = hippo_n_diagonalized(size, self.blocks)
        Lambda_re = self.param("Lambda_re", lambda _key: jnp.asarray(lam.real, jnp.float32))
        Lambda_im = self.param("Lambda_im", lambda _key: jnp.asarray(lam.imag, jnp.float32))
        log_step = self.param("log_step", log_uniform_initializer(self.dt_min, self.dt_max), (half,))

        v = jnp.asarray(V, jnp.complex64)

        def b_tilde(key, shape):  # B~^T = (V^* B)^T with B ~ lecun normal [P, H]; stored as (re, im) pairs
            b = nn.initializers.lecun_normal()(key, (size, width))
            return pairs((v.conj().T @ b.astype(jnp.complex64)).T)

        def c_tilde(key, shape):  # C~^T = (C V)^T with Re C, Im C ~ N(0, 1/P) [H, P]
            c = complex_from_parts(
                *(jax.random.normal(k, (width, size)) for k in jax.random.split(key))
            ) / math.sqrt(size)
            return pairs((c @ v).T)

        B = unpair(self.weight("B", b_tilde, (width, half, 2)).astype(jnp.float32))
        C = unpair(self.weight("C", c_tilde, (half, width, 2)).astype(jnp.float32))
        D = self.param("D", normal_initializer(1.0), (width,))
        probe = self.probe(jnp.zeros((x.shape[0], half), jnp.complex64), x.shape[1])
        return s5(
            u,
            Lambda_re,
            Lambda_im,
            log_step,
            B,
            C,
            D,
            max_real=MAX_REAL if self.clip_eigs else None,
            probe=probe,
            dtype=self.dtype,
            **self.scan_options(),
        )
