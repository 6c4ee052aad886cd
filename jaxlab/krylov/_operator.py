"""Turning what users pass as ``A`` (sparse format, dense array, callable) into matvec functions."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def operator_shape(A: Any, b: jax.Array) -> tuple[int, int]:
    if callable(A) and not hasattr(A, "shape"):
        return (b.shape[0], b.shape[0])
    shape = tuple(A.shape)
    if len(shape) != 2:
        raise ValueError(f"A must be a matrix (2-D), got shape {shape}")
    return shape  # type: ignore[return-value]


def check_system(A: Any, b: jax.Array) -> None:
    """Validates shapes and dtypes at trace time, with messages that say what to change."""
    if not hasattr(b, "ndim") or b.ndim not in (1, 2):
        raise ValueError(f"b must have shape (n,) or (n, k), got {getattr(b, 'shape', type(b))}")
    if not jnp.issubdtype(b.dtype, jnp.inexact):
        raise TypeError(f"b must be a floating point array, got dtype {b.dtype}; cast it with b.astype(...)")
    m, n = operator_shape(A, b)
    if m != n:
        raise ValueError(f"A must be square for a Krylov solve, got shape {(m, n)}")
    if b.shape[0] != n:
        raise ValueError(f"b has {b.shape[0]} rows but A is {n} x {n}; b must have shape ({n},) or ({n}, k)")
    dtype = getattr(A, "dtype", None)
    if dtype is not None and jnp.dtype(dtype) != b.dtype:
        raise TypeError(f"A has dtype {jnp.dtype(dtype)} but b has {b.dtype}; cast one of them so they agree")
