"""Dimension legend and shared type aliases.

Docstrings write shapes as ``float32[batch, time, d_model]``. The names mean:

* ``batch``: independent sequences in a minibatch.
* ``time`` (``T``): sequence length (time steps).
* ``seeds``: independent training runs vmapped together (leading axis of params and optimizer state).
* ``d_in``: input features seen by a cell (``d_model`` in block models).
* ``hidden``: a recurrent cell's hidden size (the ``hidden_size`` of its config).
* ``d_model``: the residual-stream width of a block model.
* ``state``: the size of an SSM's per-channel latent state (``N`` in the S4/S5/Mamba papers).
* ``heads``, ``head_dim``: attention (or mLSTM) heads and their width.
* ``vocab``: number of input token ids; ``out``: readout width (classes or regression targets).

Modules take and return batch-major arrays ``[batch, time, features]``; scans run time-major internally.
"""

from __future__ import annotations

from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any
Params = Any
