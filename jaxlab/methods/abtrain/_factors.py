"""Low-rank factors of a weight: ``decompose``, ``compose``, ``truncate`` and the compression they give.

A weight of any rank >= 2 (flax layout: the output axis last, e.g. a Dense kernel ``(in, out)`` or a
Conv kernel ``(kh, kw, in, out)``) is seen as the matrix of the paper's 2-D view: ``(out, -1)``, transposed
so that rows >= columns. For a flax kernel ``K2 = w.reshape(-1, out)`` that matrix is ``K2.T`` when
``out >= fan_in`` and ``K2`` otherwise. It equals the reference's view of the PyTorch weight
``(out, in, kh, kw)`` up to the order of the ``(in, kh, kw)`` columns, which changes neither the singular
values nor the ranks.

With the SVD ``M = U diag(s) V^T`` (in float32) the factors are ``A = U S^1/2``, ``B = S^1/2 V^T``
(``sigma="split"``, the reference's ``split_sigma``), or ``A = U S, B = V^T`` (``"a"``), or
``A = U, B = S V^T`` (``"b"``, what the reference uses with the ``only-b`` sync mode). Truncation keeps
the singular values with ``s_i > tau * s_1``; across workers the kept count is max-reduced
(``truncation_rank(..., axis_name=...)``), so every worker keeps the same rank.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlab.core import Array

Sigma = Literal["split", "a", "b"]


class Factors(NamedTuple):
    """``M = a @ b`` for the 2-D view ``M`` (``m x n``, ``m >= n``) of a weight: ``a`` is ``(m, r)``, ``b`` is ``(r, n)``."""

    a: Array
    b: Array

    @property
    def rank(self) -> int:
        return int(self.a.shape[-1])


class SVD(NamedTuple):
    """Thin SVD of a weight's 2-D view: ``u (m, k)``, ``s (k,)`` in descending order, ``vt (k, n)``."""

    u: Array
    s: Array
    vt: Array


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int, bool]:
    """``(m, n, transposed)`` of the 2-D view of a weight of ``shape``: ``m >= n``; ``transposed`` when the
    view is ``w.reshape(-1, out)`` itself rather than its transpose.

    Raises:
      ValueError: for weights with fewer than 2 axes.

    Examples:
      >>> matrix_shape((784, 1024)), matrix_shape((25088, 4096)), matrix_shape((3, 3, 64, 128))
      ((1024, 784, False), (25088, 4096, True), (576, 128, True))
    """
    if len(shape) < 2:
        raise ValueError(f"a weight needs at least 2 axes to be factorised, got shape {shape}")
    out = int(shape[-1])
    fan_in = math.prod(int(d) for d in shape[:-1])
    if out >= fan_in:
        return out, fan_in, False
    return fan_in, out, True


def to_matrix(w: Array) -> Array:
    """The 2-D view ``(m, n)``, ``m >= n``, of a weight (see the module docstring)."""
    _, _, transposed = matrix_shape(w.shape)
    k2 = w.reshape(-1, w.shape[-1])
    return k2 if transposed else k2.T


def from_matrix(m: Array, shape: tuple[int, ...]) -> Array:
    """Inverse of :func:`to_matrix`: the weight of ``shape`` whose 2-D view is ``m``."""
    rows, cols, transposed = matrix_shape(tuple(shape))
    if m.shape != (rows, cols):
        raise ValueError(f"a weight of shape {tuple(shape)} has a ({rows}, {cols}) view, got a matrix of {m.shape}")
    return (m if transposed else m.T).reshape(shape)


def svd(w: Array) -> SVD:
    """Thin SVD of the 2-D view of ``w``, computed in float32 (or float64 when ``w`` is float64)."""
    m = to_matrix(w)
    dtype = jnp.float64 if m.dtype == jnp.float64 else jnp.float32
    u, s, vt = jnp.linalg.svd(m.astype(dtype), full_matrices=False)
    return SVD(u, s, vt)


def factors_from_svd(usv: SVD, rank: int | None = None, *, sigma: Sigma = "split") -> Factors:
    """Factors of the leading ``rank`` singular triplets (default: all).

    ``rank`` must be a Python int (shapes are static under jit).
    """
    k = usv.s.shape[-1]
    r = k if rank is None else int(rank)
    if not 1 <= r <= k:
        raise ValueError(f"rank must be in [1, {k}] for this SVD, got {r}")
    u, s, vt = usv.u[:, :r], usv.s[:r], usv.vt[:r]
    if sigma == "split":
        root = jnp.sqrt(s)
        return Factors(u * root[None, :], root[:, None] * vt)
    if sigma == "a":
        return Factors(u * s[None, :], vt)
    if sigma == "b":
        return Factors(u, s[:, None] * vt)
    raise ValueError(f"sigma must be 'split', 'a' or 'b', got {sigma!r}")


def decompose(w: Array, *, rank: int | None = None, tau: float | None = None, sigma: Sigma = "split") -> Factors:
    """Factors ``A, B`` of a weight's 2-D view from its SVD (float32).

    Args:
      w: a weight with the output axis last (2-D or more).
      rank: keep this many singular triplets (a Python int; works under jit).
      tau: keep ``s_i > tau * s_1`` instead (needs concrete values: not under jit; there, compute the rank
        with :func:`truncation_rank` and pass ``rank``). Neither: full rank ``min(m, n)``.
      sigma: how ``S`` is split between the factors: ``"split"`` (``A = U S^1/2, B = S^1/2 V^T``), ``"a"``,
        ``"b"``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> w = jax.random.normal(jax.random.key(0), (16, 24), jnp.float32)
      >>> f = decompose(w)
      >>> f.a.shape, f.b.shape
      ((24, 16), (16, 16))
      >>> bool(jnp.allclose(compose(f, w.shape), w, atol=1e-5))
      True
    """
    if rank is not None and tau is not None:
        raise ValueError("pass either rank or tau, not both")
    usv = svd(w)
    if tau is not None:
        rank = truncate(usv, tau).s.shape[0]
    return factors_from_svd(usv, rank, sigma=sigma)


def truncation_rank(s: Array, tau: float, *, axis_name: str | tuple[str, ...] | None = None) -> Array:
    """Number of singular values with ``s_i > tau * s_1`` (at least 1), as an int32 array.

    Args:
      s: singular values in descending order (last axis).
      tau: relative cut-off, e.g. 0.15 (the paper's experiments).
      axis_name: inside ``shard_map``/``pmap``, max-reduce the count over these axes, so that every
        worker keeps the same rank (the largest any worker chose: a worker may keep values below its own
        cut-off).

    Examples:
      >>> int(truncation_rank(jnp.asarray([10.0, 2.0, 1.5, 1.0]), 0.15))
      2
    """
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    count = jnp.sum(s > tau * s[..., :1], axis=-1).astype(jnp.int32)
    count = jnp.maximum(count, 1)
    if axis_name is not None:
        count = lax.pmax(count, axis_name)
    return count


def truncate(usv: SVD, tau: float | None = None, *, rank: int | None = None) -> SVD:
    """The SVD cut to ``rank`` triplets, or to those with ``s_i > tau * s_1`` (concrete values only).

    Examples:
      >>> usv = SVD(jnp.eye(3), jnp.asarray([4.0, 0.7, 0.5], jnp.float32), jnp.eye(3))
      >>> truncate(usv, 0.15).s
      Array([4. , 0.7], dtype=float32)
    """
    if (tau is None) == (rank is None):
        raise ValueError("pass exactly one of tau or rank")
    if rank is None:
        try:
            rank = int(truncation_rank(usv.s, tau))
        except jax.errors.ConcretizationTypeError:
            raise ValueError("truncate(tau=...) needs concrete singular values; under jit compute the rank with "
                             "truncation_rank() outside and pass rank=") from None
    k = usv.s.shape[-1]
    if not 1 <= rank <= k:
        raise ValueError(f"rank must be in [1, {k}], got {rank}")
    return SVD(usv.u[:, :rank], usv.s[:rank], usv.vt[:rank])


def compose(f: Factors, shape: tuple[int, ...], dtype=None) -> Array:
    """The weight of ``shape`` whose 2-D view is ``f.a @ f.b`` (in ``dtype``, default the factors')."""
    w = from_matrix(f.a @ f.b, tuple(shape))
    return w if dtype is None else w.astype(dtype)


def compression(shape: tuple[int, ...], rank: int) -> float:
    """Stored values of the factors over those of the weight: ``r (m + n) / (m n)``.

    Examples:
      >>> round(compression((784, 1024), 100), 4)
      0.2252
    """
    m, n, _ = matrix_shape(tuple(shape))
    return rank * (m + n) / (m * n)


def decompose_reference(w: np.ndarray, *, rank: int | None = None, tau: float | None = None,
                        sigma: Sigma = "split") -> tuple[np.ndarray, np.ndarray]:
    """NumPy oracle of :func:`decompose` (float64 SVD of the PyTorch-style view, then transposed back).

    Builds the view the way the reference does for a PyTorch weight ``(out, in, ...)``: move the output axis
    first, reshape ``(out, -1)``, transpose when it has fewer rows than columns.
    """
    w = np.asarray(w, np.float64)
    view = np.moveaxis(w, -1, 0).reshape(w.shape[-1], -1)
    if view.shape[0] < view.shape[1]:
        view = view.T
    u, s, vt = np.linalg.svd(view, full_matrices=False)
    r = len(s) if rank is None else rank
    if tau is not None:
        r = max(1, int(np.sum(s > tau * s[0])))
    u, s, vt = u[:, :r], s[:r], vt[:r]
    if sigma == "split":
        return u * np.sqrt(s), np.sqrt(s)[:, None] * vt
    if sigma == "a":
        return u * s, vt
    return u, s[:, None] * vt
