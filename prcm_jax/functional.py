"""The math of every module, written once for both Flax APIs, as pure functions.

Inputs are channels-last, ``(B, *spatial, C)``; kernels are Flax ``(in, out)``. Every
function validates its input before any computation. ``dtype`` is the computation dtype
(``None``: promote the input and parameters, as Flax layers do); the spatial mean and the
recalibration (and so every sum of their gradients) accumulate in at least float32;
``precision`` reaches every dot product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax.nnx.nn.dtypes import promote_dtype
from flax.typing import Dtype, PrecisionLike

from prcm.validate import check_activation, check_factors, check_gate, check_input, check_rank, check_rate

__all__ = [
    "validate_input",
    "spatial_mean",
    "recalibrate",
    "keep_mask",
    "dropout",
    "gate",
    "activation",
    "GATE_FUNCTIONS",
    "ACTIVATION_FUNCTIONS",
    "basis_recalibration",
    "squeeze_excitation",
]


def validate_input(owner: str, x: jax.Array, channels: int | None) -> None:
    """Check rank, channel count and dtype of a channels-last input before any work.

    Args:
      owner: class name for the message.
      x: the input, ``(B, *spatial, C)``.
      channels: the channel count of the weights (``None``: not known yet).
    """
    if not isinstance(x, (jax.Array, np.ndarray)) and not hasattr(x, "__jax_array__"):
        raise TypeError(f"{owner}: expected a JAX or NumPy array, got {type(x).__name__}")
    dtype = jnp.result_type(x)
    check_input(owner, jnp.shape(x), str(dtype), jnp.issubdtype(dtype, jnp.floating), channels, channels_last=True)


def _check_shapes(owner: str, expected: dict[str, tuple[int, ...]], **arrays: jax.Array | None) -> None:
    """Every given array must have the shape the others imply; one error names them all."""
    wrong = [f"{name} {tuple(a.shape)} (expected {expected[name]})"
             for name, a in arrays.items() if a is not None and tuple(a.shape) != expected[name]]  # fmt: skip
    if wrong:
        raise ValueError(f"{owner}: parameter shapes do not fit together: {', '.join(wrong)}")


def spatial_mean(x: jax.Array) -> jax.Array:
    """Mean over every spatial axis, accumulated in at least float32.

    Args:
      x: ``(B, *spatial, C)``.

    Returns:
      ``(B, C)`` in ``x.dtype``.

    >>> spatial_mean(jnp.ones((2, 4, 5, 3), jnp.bfloat16)).dtype == jnp.bfloat16
    True
    >>> spatial_mean(jnp.ones((2, 3)))
    Traceback (most recent call last):
    ...
    ValueError: spatial_mean: expected an input (B, *spatial, C) with at least one spatial axis (3 or more dimensions), got shape (2, 3)
    """
    check_rank("spatial_mean", jnp.shape(x), channels_last=True)
    acc = jnp.promote_types(x.dtype, jnp.float32)
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), dtype=acc).astype(x.dtype)


def recalibrate(x: jax.Array, scale: jax.Array | None = None, shift: jax.Array | None = None) -> jax.Array:
    """``x * scale + shift`` with ``(B, C)`` factors broadcast over the spatial axes.

    Args:
      x: ``(B, *spatial, C)``.
      scale: ``(B, C)`` multiplicative factor, or ``None``.
      shift: ``(B, C)`` additive term, or ``None``.

    >>> recalibrate(jnp.ones((2, 4, 3)), shift=jnp.ones((2, 3))).shape
    (2, 4, 3)
    >>> recalibrate(jnp.ones((2, 4, 3)), shift=jnp.ones(3))
    Traceback (most recent call last):
    ...
    ValueError: recalibrate: expected (B, C) = (2, 3) factors for an input (B, *spatial, C) of shape (2, 4, 3), got shift (3,)
    """
    check_factors("recalibrate", jnp.shape(x), channels_last=True,
                  scale=None if scale is None else jnp.shape(scale), shift=None if shift is None else jnp.shape(shift))  # fmt: skip
    # In at least float32, rounded once to x.dtype: the backward pass's sums over the spatial
    # axes (the gradients of scale and shift) then accumulate in float32 too. In bfloat16,
    # XLA:CPU rounds the accumulator of a bfloat16 reduction after every addition, which
    # loses ~10% of a sum of a thousand positive terms.
    acc = jnp.promote_types(x.dtype, jnp.float32)
    spatial = tuple(range(1, x.ndim - 1))
    y = x.astype(acc)
    if scale is not None:
        y = y * jnp.expand_dims(scale.astype(acc), spatial)
    if shift is not None:
        y = y + jnp.expand_dims(shift.astype(acc), spatial)
    return y.astype(x.dtype)


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """The boolean keep-mask :func:`dropout` draws from ``key``.

    Passing the same ``key`` as ``rngs=`` (NNX) or ``rng=`` (linen) to a module in train
    mode applies exactly this mask to its ``(B, num_basis)`` coefficients, which is how
    :mod:`parity` gives PyTorch the same mask.

    Args:
      key: a JAX PRNG key.
      rate: dropout probability, in ``[0, 1)``.
      shape: mask shape, ``(B, num_basis)`` for the modules.

    >>> keep_mask(jax.random.key(0), 0.5, (2, 8)).shape
    (2, 8)
    >>> keep_mask(jax.random.key(0), 1.5, (2, 8))
    Traceback (most recent call last):
    ...
    ValueError: keep_mask: dropout rate must be in [0, 1), got 1.5
    """
    check_rate("keep_mask", rate)
    return jax.random.bernoulli(key, 1.0 - rate, shape)


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout with PyTorch's arithmetic: ``x * mask * (1 / (1 - rate))``.

    A dropped NaN stays NaN (``NaN * 0``), as in ``torch.nn.Dropout``.

    Args:
      x: any array.
      rate: dropout probability in ``[0, 1)``.
      key: PRNG key; the mask is ``keep_mask(key, rate, x.shape)``.

    >>> dropout(jnp.ones((2, 8)), 0.5, jax.random.key(0)).shape
    (2, 8)
    """
    check_rate("dropout", rate)
    mask = keep_mask(key, rate, x.shape)
    return x * mask.astype(x.dtype) * (1.0 / (1.0 - rate))


#: The gates and hidden activations by name (:data:`prcm.validate.GATES`, ``ACTIVATIONS``):
#: jax.nn's functions, which torch's ``sigmoid``, ``hardsigmoid``, ``relu``, ``silu`` and
#: ``hardswish`` compute (hard_sigmoid is ``relu6(z + 3) / 6``).
GATE_FUNCTIONS = {"sigmoid": jax.nn.sigmoid, "hard_sigmoid": jax.nn.hard_sigmoid}
ACTIVATION_FUNCTIONS = {"relu": jax.nn.relu, "silu": jax.nn.silu, "hard_swish": jax.nn.hard_swish}


def gate(z: jax.Array, name: str) -> jax.Array:
    """The gate ``name`` (``'sigmoid'`` or ``'hard_sigmoid'``) applied to the logits ``z``.

    >>> gate(jnp.array([-4.0, 0.0, 1.5]), "hard_sigmoid").tolist()
    [0.0, 0.5, 0.75]
    """
    return GATE_FUNCTIONS[check_gate("gate", name)](z)


def activation(z: jax.Array, name: str) -> jax.Array:
    """The hidden activation ``name`` (``'relu'``, ``'silu'``, ``'hard_swish'``) applied to ``z``.

    >>> activation(jnp.array([-4.0, 4.0]), "hard_swish").tolist()
    [-0.0, 4.0]
    """
    return ACTIVATION_FUNCTIONS[check_activation("activation", name)](z)


def _project(v: jax.Array, kernel: jax.Array, precision: PrecisionLike) -> jax.Array:
    return jnp.matmul(v, kernel, precision=precision)


def basis_recalibration(
    x: jax.Array,
    basis: jax.Array,
    scale_kernel: jax.Array | None = None,
    shift_kernel: jax.Array | None = None,
    *,
    dropout_rate: float = 0.0,
    dropout_key: jax.Array | None = None,
    gate: str = "sigmoid",
    dtype: Dtype | None = None,
    precision: PrecisionLike = None,
    owner: str = "basis_recalibration",
) -> jax.Array:
    """The PRCM family: ``x * gate(coeff @ scale_kernel) + coeff @ shift_kernel``.

    ``coeff = dropout(mean(x) @ basis.T)``; dropout applies only when ``dropout_key`` is given.

    Args:
      x: ``(B, *spatial, C)``.
      basis: ``(K, C)``.
      scale_kernel: ``(K, C)`` or ``None`` (no scale).
      shift_kernel: ``(K, C)`` or ``None`` (no shift).
      dropout_rate: dropout probability on ``coeff``.
      dropout_key: PRNG key for the dropout mask; ``None`` means deterministic.
      gate: ``'sigmoid'`` or ``'hard_sigmoid'``, on the scale's logits.
      dtype: computation dtype; ``None`` promotes the input and parameters.
      precision: precision of every dot product.
      owner: name used in error messages.

    >>> k = jax.random.key(0)
    >>> basis_recalibration(jnp.ones((2, 5, 5, 16)), jnp.ones((4, 16)), jnp.ones((4, 16))).shape
    (2, 5, 5, 16)
    """
    if jnp.ndim(basis) != 2:
        raise ValueError(f"{owner}: expected basis of shape (num_basis, channels), got {jnp.shape(basis)}")
    _check_shapes(owner, {"scale_kernel": basis.shape, "shift_kernel": basis.shape},
                  scale_kernel=scale_kernel, shift_kernel=shift_kernel)  # fmt: skip
    gate_fn = GATE_FUNCTIONS[check_gate(owner, gate)]
    validate_input(owner, x, basis.shape[-1])
    x, basis, scale_kernel, shift_kernel = promote_dtype((x, basis, scale_kernel, shift_kernel), dtype=dtype)
    coeff = _project(spatial_mean(x), basis.T, precision)
    if dropout_key is not None and dropout_rate > 0:
        coeff = dropout(coeff, dropout_rate, dropout_key)
    scale = None if scale_kernel is None else gate_fn(_project(coeff, scale_kernel, precision))
    shift = None if shift_kernel is None else _project(coeff, shift_kernel, precision)
    return recalibrate(x, scale, shift)


def squeeze_excitation(
    x: jax.Array,
    fc1_kernel: jax.Array,
    fc1_bias: jax.Array,
    fc2_kernel: jax.Array,
    fc2_bias: jax.Array,
    *,
    act_layer: str = "relu",
    gate: str = "sigmoid",
    dtype: Dtype | None = None,
    precision: PrecisionLike = None,
    owner: str = "squeeze_excitation",
) -> jax.Array:
    """Squeeze-and-Excitation: ``x * gate(act(mean(x) @ fc1 + b1) @ fc2 + b2)``.

    Args:
      x: ``(B, *spatial, C)``.
      fc1_kernel: ``(C, C // r)``.
      fc1_bias: ``(C // r,)``.
      fc2_kernel: ``(C // r, C)``.
      fc2_bias: ``(C,)``.
      act_layer: the hidden activation, ``'relu'``, ``'silu'`` or ``'hard_swish'``.
      gate: ``'sigmoid'`` or ``'hard_sigmoid'``.
      dtype: computation dtype; ``None`` promotes the input and parameters.
      precision: precision of every dot product.
      owner: name used in error messages.

    >>> y = squeeze_excitation(jnp.ones((1, 8, 8, 16)), jnp.ones((16, 4)), jnp.zeros(4),
    ...                        jnp.ones((4, 16)), jnp.zeros(16))
    >>> y.shape
    (1, 8, 8, 16)
    """
    if jnp.ndim(fc1_kernel) != 2:
        raise ValueError(f"{owner}: expected fc1_kernel of shape (channels, hidden), got {jnp.shape(fc1_kernel)}")
    channels, hidden = fc1_kernel.shape
    _check_shapes(owner, {"fc1_bias": (hidden,), "fc2_kernel": (hidden, channels), "fc2_bias": (channels,)},
                  fc1_bias=fc1_bias, fc2_kernel=fc2_kernel, fc2_bias=fc2_bias)  # fmt: skip
    act_fn, gate_fn = ACTIVATION_FUNCTIONS[check_activation(owner, act_layer)], GATE_FUNCTIONS[check_gate(owner, gate)]
    validate_input(owner, x, channels)
    x, w1, b1, w2, b2 = promote_dtype((x, fc1_kernel, fc1_bias, fc2_kernel, fc2_bias), dtype=dtype)
    hidden = act_fn(_project(spatial_mean(x), w1, precision) + b1)
    return recalibrate(x, gate_fn(_project(hidden, w2, precision) + b2))
