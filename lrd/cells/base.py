"""What every mixer shares: the root class :class:`Mixer`, the two engine bases, the probe, projections, inits.

Every registered mixer subclasses :class:`Mixer`, and every recurrent one subclasses one of two bases that mirror
the two functions of :mod:`lrd.scan`:

* :class:`RecurrentCell` runs a nonlinear recurrence through :func:`lrd.scan.bptt_scan` and brings the fields
  ``truncation`` (truncated BPTT), ``unroll`` and ``remat``;
* :class:`LinearRecurrentLayer` runs ``h_t = a_t * h_{t-1} + b_t`` through :func:`lrd.scan.linear_scan` and brings
  ``scan_mode``, ``chunk_size`` and ``truncation``.

**One name for the choice among equivalent algorithms.** A mixer that can compute its function in several ways
(a sequential scan, a parallel prefix scan, a chunkwise or a quadratic "parallel" form, a fused attention kernel)
has the field ``scan_mode``, and lists its values in the class attribute :attr:`Mixer.SCAN_MODES`; every value
computes the same function (the tests check it), only cost differs. :func:`scan_modes` is the typed interface
``lrd bench`` and the tests enumerate.

**Options a mixer cannot honour are errors.** :meth:`Mixer.check` validates every field and raises
:class:`lrd.errors.OptionError` for a bad value or for an option that the chosen ``scan_mode`` ignores (e.g.
``chunk_size`` with a sequential scan, ``truncation`` with a quadratic form); :attr:`Mixer.OPTION_SCAN_MODES`
declares which scan modes honour which option. Modules call ``self.check()`` first thing in ``__call__``, and
:class:`lrd.config.ModelConfig` calls it before any compute.

**Precision.** Every mixer has ``dtype`` (the operand dtype of its projection matmuls: ``"bfloat16"`` lets a GPU
use tensor cores) and ``param_dtype`` (the storage dtype of its weight matrices). Whatever they are, products
accumulate in float32 and come out float32 (``preferred_element_type``), and the state, gates, decays and every
recurrence run in float32: a decay of 0.999 is 1.0 in bfloat16 (spacing 2^-8 near 1), so the recurrence's own
parameters (eigenvalues, step sizes, decay rates) and biases are always stored in float32. Projections go through
:meth:`Mixer.weight` and :func:`affine` / :func:`dense` / :func:`project`, which apply both fields.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lrd.errors import OptionError
from lrd.scan import SCAN_MODES as LINEAR_SCAN_MODES
from lrd.scan import bptt_scan

PROBE_COLLECTION = "probes"
INTERMEDIATES = "intermediates"
DEFAULT_CHUNK_SIZE = 64
FLOAT_DTYPES = ("float32", "bfloat16", "float16")  # operand dtypes of the projection matmuls
PARAM_DTYPES = ("float32", "bfloat16")  # storage dtypes of the weight matrices

__all__ = [
    "PROBE_COLLECTION",
    "INTERMEDIATES",
    "DEFAULT_CHUNK_SIZE",
    "Mixer",
    "RecurrentCell",
    "LinearRecurrentLayer",
    "scan_modes",
    "option_defaults",
    "probe_variable",
    "add_probe",
    "affine",
    "dense",
    "project",
    "operand_dtype",
    "FLOAT_DTYPES",
    "PARAM_DTYPES",
    "to_time_major",
    "to_batch_major",
    "recurrent_initializer",
    "gate_blocks_initializer",
    "uniform_initializer",
    "normal_initializer",
    "RECURRENT_INITS",
]


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


class Mixer(nn.Module):
    """Base of every registered sequence mixer: ``float32[batch, time, d_in] -> float32[batch, time, hidden_size]``.

    Attributes:
      hidden_size: width of the output (and of the state, for most mixers).
      dtype: operand dtype of the projection matmuls (float32 accumulation and result); see the module docstring.
      param_dtype: storage dtype of the weight matrices (the recurrence's own parameters stay float32).

    Class attributes (declared once per class, read by the config, ``lrd list``, ``lrd bench`` and the tests):
      SCAN_MODES: the values of the field ``scan_mode``, equivalent algorithms for the same function; empty for a
        mixer with one algorithm (it then has no ``scan_mode`` field).
      OPTION_SCAN_MODES: ``{option: scan modes that honour it}``. Setting the option to anything but its default
        under another scan mode is an error, since it would be silently ignored.
      AUTO_SCAN_MODES: ``{backend: scan mode}`` that ``scan_mode="auto"`` (the default) resolves to on
        ``jax.default_backend()`` (``"cpu"``, ``"gpu"``, ``"tpu"``; a backend not listed takes the ``"gpu"`` entry).
        The CPU entries were chosen by measurement (``lrd bench``, T=1024, d_model 64, batch 16); the others are
        the parallel forms, unmeasured until a GPU/TPU run is committed.
      STATE_NAMES: names of the leaves of the probed state, in the order of the probe's pytree leaves (``("c",
        "h")`` for the LSTM); the diagnostics report one curve per leaf under these names.
      STATE_PER_POSITION: ``True`` when the probed state is what one position adds to a memory that keeps every
        position (softmax attention's keys and values), so the memory grows with the sequence; ``False`` (default)
        for a fixed-size state carried from step to step.
    """

    hidden_size: int
    dtype: str = "float32"
    param_dtype: str = "float32"

    SCAN_MODES: ClassVar[tuple[str, ...]] = ()
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {}
    STATE_NAMES: ClassVar[tuple[str, ...]] = ("h",)
    STATE_PER_POSITION: ClassVar[bool] = False

    # -- diagnostics -----------------------------------------------------------------------------------------

    def recording(self) -> bool:
        """Whether internals are being recorded: the ``"intermediates"`` collection is mutable (not in ``init``)."""
        return self.is_mutable_collection(INTERMEDIATES) and not self.is_initializing()

    def record(self, name: str, value: Callable[[], jax.Array]) -> None:
        """Sow ``value()`` (computed only when :meth:`recording`) as ``intermediates[name]``, batch-major."""
        if self.recording():
            self.sow(INTERMEDIATES, name, value())

    @nn.nowrap
    def spectrum(self, params: Mapping[str, Any]) -> np.ndarray | None:
        """Eigenvalues of the recurrent transition, from this module's ``params`` (``None`` if input-dependent).

        Cells with a fixed transition override it (the recurrent weight of an Elman RNN, the diagonal of an SSM);
        input-dependent transitions are recorded as ``intermediates`` instead (forget gates, decays).
        """
        del params
        return None

    # -- validation ------------------------------------------------------------------------------------------

    @nn.nowrap
    def fail(self, field: str, detail: str) -> None:
        """Raise :class:`OptionError` for this module's option ``field``."""
        raise OptionError(type(self).__name__, field, getattr(self, field, None), detail)

    @nn.nowrap
    def require(self, condition: bool, field: str, detail: str) -> None:
        """:meth:`fail` unless ``condition``."""
        if not condition:
            self.fail(field, detail)

    @nn.nowrap
    def require_choice(self, field: str, allowed: Sequence[Any]) -> None:
        """The option ``field`` must be one of ``allowed``."""
        value = getattr(self, field)
        self.require(
            value in allowed
            and not (isinstance(value, bool) and not all(isinstance(a, bool) for a in allowed)),
            field,
            f"unknown value; allowed values: {', '.join(str(a) for a in allowed)}",
        )

    @nn.nowrap
    def require_int(self, field: str, minimum: int = 1, *, optional: bool = False) -> None:
        """The option ``field`` must be an int ``>= minimum`` (or ``None`` when ``optional``)."""
        value = getattr(self, field)
        if optional and value is None:
            return
        what = f"an int >= {minimum}" + (" or None" if optional else "")
        self.require(_is_int(value) and value >= minimum, field, f"must be {what}")

    @nn.nowrap
    def require_number(
        self, field: str, *, low: float = -math.inf, high: float = math.inf, strict: bool = True
    ) -> None:
        """The option ``field`` must be a finite number in ``(low, high)`` (``[low, high]`` if not ``strict``)."""
        value = getattr(self, field)
        inside = _is_number(value) and math.isfinite(value)
        if inside:
            inside = low < value < high if strict else low <= value <= high
        left, right = ("(", ")") if strict else ("[", "]")
        self.require(inside, field, f"must be a finite number in {left}{low}, {high}{right}")

    @nn.nowrap
    def require_heads(self, field: str = "num_heads") -> None:
        """The option ``field`` (a number of heads) must be a positive int dividing ``hidden_size``."""
        self.require_int(field)
        self.require(
            self.hidden_size % getattr(self, field) == 0, field, f"must divide hidden_size={self.hidden_size}"
        )

    @nn.nowrap
    def require_bool(self, field: str) -> None:
        """The option ``field`` must be ``True`` or ``False``."""
        self.require(isinstance(getattr(self, field), bool), field, "allowed values: True, False")

    @nn.nowrap
    def check(self) -> None:
        """Validate every option; raise :class:`OptionError` naming the first bad one.

        Subclasses extend it (calling ``super().check()`` first) with their own fields.
        """
        self.require_int("hidden_size")
        self.require_choice("dtype", FLOAT_DTYPES)
        self.require_choice("param_dtype", PARAM_DTYPES)
        if self.SCAN_MODES:
            self.require_choice(
                "scan_mode", ("auto", *self.SCAN_MODES) if self.AUTO_SCAN_MODES else self.SCAN_MODES
            )
        defaults = option_defaults(type(self))
        for option, modes in self.OPTION_SCAN_MODES.items():
            value = getattr(self, option)
            mode = self.effective_scan_mode()
            if value != defaults[option] and mode not in modes:
                runs = f"scan_mode={mode!r}" + (" (auto)" if self.scan_mode == "auto" else "")
                self.fail(
                    option,
                    f"only scan_mode {' or '.join(repr(m) for m in modes)} honours {option}, and this mixer "
                    f"runs {runs}; leave {option} at {defaults[option]!r} or set scan_mode",
                )

    # -- precision -------------------------------------------------------------------------------------------

    def weight(self, name: str, init: Callable, shape: tuple[int, ...]) -> jax.Array:
        """A weight matrix ``name`` (``init(key, shape)``), stored in ``param_dtype``. Use it through
        :func:`affine` / :func:`project` with ``dtype=self.dtype``; a recurrent matrix multiplied by the float32
        state stays a float32 product."""
        dtype = jnp.dtype(self.param_dtype)
        return self.param(name, lambda key, shape: jnp.asarray(init(key, shape), dtype), shape)

    @nn.nowrap
    def effective_scan_mode(self) -> str | None:
        """The scan mode this module runs: ``scan_mode``, with ``"auto"`` resolved for the default backend."""
        mode = getattr(self, "scan_mode", None)
        if mode != "auto":
            return mode
        backend = jax.default_backend()
        return self.AUTO_SCAN_MODES.get(backend, self.AUTO_SCAN_MODES.get("gpu"))


def scan_modes(cls: type) -> tuple[str, ...]:
    """The equivalent algorithms of mixer class ``cls`` (values of its ``scan_mode`` field); ``()`` if one."""
    return tuple(getattr(cls, "SCAN_MODES", ()))


def option_defaults(cls: type) -> dict[str, Any]:
    """``{option: default}`` of a mixer class: every dataclass field but ``parent``, ``name``, ``hidden_size``."""
    out = {}
    for field in dataclasses.fields(cls):
        if field.name in ("parent", "name", "hidden_size"):
            continue
        if field.default is not dataclasses.MISSING:
            out[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            out[field.name] = field.default_factory()
    return out


class RecurrentCell(Mixer):
    """Base for mixers driven by :func:`lrd.scan.bptt_scan` (a nonlinear recurrence).

    Attributes:
      hidden_size: width of the hidden state and of the output.
      truncation: truncated-BPTT length ``k`` (``None``: full BPTT).
      unroll: ``lax.scan`` unroll factor.
      remat: rematerialise each step in the backward pass.
    """

    truncation: int | None = None
    unroll: int = 1
    remat: bool = False

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("truncation", optional=True)
        self.require_int("unroll")
        self.require_bool("remat")

    @nn.nowrap
    def scan_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrd.scan.bptt_scan`."""
        return {"truncation": self.truncation, "unroll": self.unroll, "remat": self.remat}

    def probe(self, state_example: Any, num_steps: int) -> Any | None:
        """The gradient probe for a state shaped like ``state_example`` (see :func:`probe_variable`)."""
        return probe_variable(self, state_example, num_steps)

    @nn.nowrap
    def project_inputs(
        self, x: jax.Array, kernel: jax.Array, bias: jax.Array | None
    ) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
        """``(xs, project)``: the time-major scan inputs and the map from one step's input to ``x_t W + b``.

        On accelerators the projection is hoisted out of the loop (one matmul over all steps, as cuDNN does) and
        ``project`` is the identity. On CPU it is computed inside the step: XLA:CPU ran the hoisted form's loop
        about 2x slower (LSTM, T=256, H=256, B=16, jax 0.10.2: forward 47 against 25 ms, fwd+bwd 135 against
        108 ms, interleaved medians; the slicing of the hoisted ``[T, B, 4H]`` array into gates is what costs).
        """
        if jax.default_backend() != "cpu":
            return affine(x, kernel, bias, time_major=True, dtype=self.dtype), lambda xw_t: xw_t
        return to_time_major(x), lambda x_t: affine(x_t, kernel, bias, dtype=self.dtype)

    def recur(
        self,
        step: Callable[[Any, Any, Any], tuple[Any, dict[str, jax.Array]]],
        carry: Any,
        xs: Any,
        *,
        emit: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run ``step(carry, x_t, probe_t) -> (carry, internals)`` over time-major ``xs`` with :func:`bptt_scan`.

        * The gradient probe (made when the ``"probes"`` collection is requested) has the carry's structure, and
          the step adds ``probe_t`` to each state leaf right where that leaf is computed (``probe_t`` is ``None``
          when there is no probe). So ``grad`` with respect to it is the *total* derivative of the loss with
          respect to that leaf, including paths through other leaves of the same step: for an LSTM, the path
          ``c_t -> h_t -> readout``, which a probe added to the finished carry would miss.
        * ``internals`` (a dict of per-step arrays such as the forget gate) are stacked over time and sown into
          the ``"intermediates"`` collection, batch-major, when that collection is mutable (not during
          ``init``); otherwise they are never materialised.

        Returns the stacked ``emit(carry_t)`` (the carry itself by default), time-major.
        """
        num_steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
        probe = self.probe(carry, num_steps)
        record = self.recording()
        emit = emit or (lambda state: state)

        def body(state, inputs):
            new_state, internals = step(state[0] if record else state, *inputs)
            return (new_state, internals) if record else new_state

        def emit_both(state, _inputs):
            return (emit(state[0]), state[1]) if record else emit(state)

        if record:
            first = jax.tree_util.tree_map(lambda leaf: leaf[0], (xs, probe))
            shapes = jax.eval_shape(lambda: step(carry, *first)[1])
            carry = (carry, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
        _, ys = bptt_scan(body, carry, (xs, probe), emit=emit_both, **self.scan_options())
        if record:
            ys, internals = ys
            for name, value in internals.items():
                self.sow(INTERMEDIATES, name, to_batch_major(value))
        return ys


class LinearRecurrentLayer(Mixer):
    """Base for mixers whose recurrence is linear, ``h_t = a_t * h_{t-1} + b_t``, run by :func:`lrd.scan.linear_scan`.

    Attributes:
      hidden_size: width of the output.
      scan_mode: ``"auto"`` (default: see ``AUTO_SCAN_MODES``) | ``"sequential"`` | ``"associative"`` |
        ``"chunked"`` (see :func:`lrd.scan.linear_scan`; a subclass may offer more equivalent algorithms in its
        ``SCAN_MODES``).
      chunk_size: chunk length of ``scan_mode="chunked"`` (``None``: 64); an error with any other scan mode.
      truncation: truncated BPTT of the linear recurrence: no gradient crosses a boundary every ``truncation``
        steps (``None``: full BPTT). Linear recurrences need no truncation for stability, but a truncation study
        of them is meaningful, so it is implemented rather than ignored.
    """

    scan_mode: str = "auto"
    chunk_size: int | None = None
    truncation: int | None = None

    SCAN_MODES: ClassVar[tuple[str, ...]] = LINEAR_SCAN_MODES
    AUTO_SCAN_MODES: ClassVar[Mapping[str, str]] = {"cpu": "sequential", "gpu": "associative"}
    OPTION_SCAN_MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {"chunk_size": ("chunked",)}

    @nn.nowrap
    def check(self) -> None:
        super().check()
        self.require_int("chunk_size", optional=True)
        self.require_int("truncation", optional=True)

    @nn.nowrap
    def scan_options(self, scan_mode: str | None = None) -> dict[str, Any]:
        """Keyword arguments for :func:`lrd.scan.linear_scan` (``scan_mode`` overrides the field)."""
        return {
            "mode": scan_mode or self.effective_scan_mode(),
            "chunk_size": self.chunk_size or DEFAULT_CHUNK_SIZE,
            "truncation": self.truncation,
        }

    def probe(self, state_example: Any, num_steps: int) -> Any | None:
        """The gradient probe for a state shaped like ``state_example`` (see :func:`probe_variable`)."""
        return probe_variable(self, state_example, num_steps)


def probe_variable(module: nn.Module, like: Any, num_steps: int, name: str = "state") -> Any | None:
    """Zeros ``[time, *leaf.shape]`` for each leaf of ``like`` in the ``"probes"`` collection, or ``None``.

    The probe exists only when the caller asks for it: by passing ``mutable=["probes"]`` (to create it) or by
    supplying a ``"probes"`` collection (to differentiate with respect to it) to ``apply``. ``init`` never makes
    one (it would otherwise, since every collection is mutable during init). Otherwise the scan runs unprobed.
    """
    if module.is_initializing():
        return None
    if not (module.is_mutable_collection(PROBE_COLLECTION) or module.has_variable(PROBE_COLLECTION, name)):
        return None

    def zeros():
        return jax.tree_util.tree_map(lambda leaf: jnp.zeros((num_steps,) + leaf.shape, leaf.dtype), like)

    return module.variable(PROBE_COLLECTION, name, zeros).value


def add_probe(value: jax.Array, probe: jax.Array | None) -> jax.Array:
    """``value + probe``, or ``value`` when there is no probe: where a step adds the gradient probe to a state."""
    return value if probe is None else value + probe


def operand_dtype(dtype: str | None) -> Any:
    """The dtype operands are cast to for a mixer's ``dtype``: ``None`` for ``None`` / ``"float32"`` (no cast)."""
    return None if dtype in (None, "float32") else jnp.dtype(dtype)


def project(
    x: jax.Array, kernel: jax.Array, dtype: str | None = None, equation: str | None = None
) -> jax.Array:
    """``x @ kernel`` (or ``einsum(equation, x, kernel)``) with both operands in ``dtype`` (``None`` or
    ``"float32"``: as given, so float64 stays float64), accumulated and returned in float32 or wider: the one
    place the projections' precision is set."""
    dtype = operand_dtype(dtype)
    if dtype is not None:
        x, kernel = x.astype(dtype), kernel.astype(dtype)
    out_dtype = jnp.promote_types(jnp.result_type(x, kernel), jnp.float32)
    if equation is None:
        if kernel.ndim != 2:
            return jnp.matmul(x, kernel, preferred_element_type=out_dtype)
        contracted = 1
    else:
        contracted = _trailing_contraction(equation)
        if contracted is None:
            return jnp.einsum(equation, x, kernel, preferred_element_type=out_dtype)
    # A product over x's trailing axes and the kernel's leading ones, run as one 2-D GEMM: XLA:CPU differentiates
    # a matmul with batch-like leading axes ([batch, time, d] @ [d, f]) into a weight gradient contracting two
    # axes at once, measured 6-13x slower than the 2-D form's (48 vs 3 ms for [16, 1024, 2] @ [2, 392]).
    lead, inner, tail = (
        x.shape[: x.ndim - contracted],
        x.shape[x.ndim - contracted :],
        kernel.shape[contracted:],
    )
    if inner != kernel.shape[:contracted]:
        raise ValueError(
            f"project: contracted axes {inner} of x do not match {kernel.shape[:contracted]} of the kernel"
        )
    y = jnp.matmul(
        x.reshape(math.prod(lead), math.prod(inner)),
        kernel.reshape(math.prod(inner), math.prod(tail)),
        preferred_element_type=out_dtype,
    )
    return y.reshape(lead + tail)


def _trailing_contraction(equation: str) -> int | None:
    """``k`` if ``equation`` contracts the last ``k`` axes of its first operand with the first ``k`` of its second
    and keeps every other axis in order (``"btd,dhk->bthk"``: 1, ``"bthk,hko->bto"``: 2), else ``None``."""
    equation = equation.replace(" ", "")
    if "." in equation or "->" not in equation or equation.count(",") != 1:
        return None
    inputs, out = equation.split("->")
    lhs, rhs = inputs.split(",")
    if len(set(lhs)) != len(lhs) or len(set(rhs)) != len(rhs):  # a repeated letter is a diagonal or a trace
        return None
    summed = "".join(c for c in lhs if c in rhs and c not in out)
    k = len(summed)
    if k == 0 or lhs[-k:] != summed or rhs[:k] != summed or out != lhs[:-k] + rhs[k:]:
        return None
    return k


def affine(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    time_major: bool = False,
    dtype: str | None = None,
) -> jax.Array:
    """``x W + b`` for every step at once: ``[batch, time, d_in] -> [batch, time, features]``, the product by
    :func:`project` (operands in ``dtype``, float32 result).

    With ``time_major=True`` the result is ``[time, batch, features]``, the layout the scans want: ``x`` is
    transposed *before* the matmul so that XLA emits a plain 2-D GEMM (an einsum writing the transposed layout
    directly, ``"btd,df->tbf"``, measured ~3.5x slower on XLA:CPU).
    """
    if time_major:
        x = jnp.swapaxes(x, 0, 1)
    y = project(x, kernel, dtype)
    return y if bias is None else y + bias


def dense(
    module: nn.Module,
    x: jax.Array,
    features: int,
    name: str,
    *,
    bias: bool = True,
    bias_init: Callable | None = None,
    time_major: bool = False,
) -> jax.Array:
    """:func:`affine` with parameters ``{name}_kernel: [d_in, features]`` (LeCun normal, :meth:`Mixer.weight`)
    and ``{name}_bias`` (``bias_init``, default zeros; float32), created in that order, in ``module.dtype``."""
    kernel = module.weight(f"{name}_kernel", nn.initializers.lecun_normal(), (x.shape[-1], features))
    offset = None
    if bias:
        offset = module.param(f"{name}_bias", bias_init or nn.initializers.zeros_init(), (features,))
    return affine(x, kernel, offset, time_major=time_major, dtype=module.dtype)


def uniform_initializer(low: float, high: float) -> Callable:
    """Initialiser ``U[low, high)``."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def normal_initializer(std: float) -> Callable:
    """Initialiser ``N(0, std^2)``."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return std * jax.random.normal(key, shape, dtype)

    return init


def to_time_major(x: jax.Array) -> jax.Array:
    """``[batch, time, ...] -> [time, batch, ...]``."""
    return jnp.swapaxes(x, 0, 1)


def to_batch_major(x: jax.Array) -> jax.Array:
    """``[time, batch, ...] -> [batch, time, ...]``."""
    return jnp.swapaxes(x, 0, 1)


RECURRENT_INITS = ("orthogonal", "normal", "identity")


def recurrent_initializer(kind: str, spectral_radius: float = 1.0):
    """A ``[hidden, hidden]`` initialiser whose spectral radius is (about) ``spectral_radius``.

    * ``orthogonal``: ``rho * Q`` with ``Q`` Haar-orthogonal; every eigenvalue has modulus exactly ``rho``.
    * ``normal``: i.i.d. ``N(0, rho^2 / H)``; by the circular law the spectrum fills the disc of radius ``rho``.
    * ``identity``: ``rho * I`` (IRNN, Le et al. 2015).
    """
    if kind not in RECURRENT_INITS:
        raise ValueError(f"recurrent_init={kind!r} is unknown; allowed values: {', '.join(RECURRENT_INITS)}")
    if spectral_radius <= 0:
        raise ValueError(f"spectral_radius must be > 0, got {spectral_radius!r}")

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        rows, cols = shape
        if kind == "orthogonal":
            return spectral_radius * nn.initializers.orthogonal()(key, shape, dtype)
        if kind == "normal":
            return jax.random.normal(key, shape, dtype) * (spectral_radius / np.sqrt(rows))
        return spectral_radius * jnp.eye(rows, cols, dtype=dtype)

    return init


def gate_blocks_initializer(base, num_gates: int):
    """Initialise a ``[hidden, num_gates * hidden]`` kernel as ``num_gates`` independent ``[hidden, hidden]`` blocks."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        rows, cols = shape
        width = cols // num_gates
        keys = jax.random.split(key, num_gates)
        return jnp.concatenate([base(k, (rows, width), dtype) for k in keys], axis=1)

    return init
