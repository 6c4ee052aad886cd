"""The public sparse matrix-vector product ``spmv`` and its dense oracle ``spmv_reference``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact

from ._base import AbstractSparseMatrix, Transposed
from ._matvec import bind_matvec


def spmv(A: AbstractSparseMatrix | Transposed, x: Inexact[ArrayLike, " n"] | Inexact[ArrayLike, "n k"], *,
         transpose: bool = False, impl: str = "auto") -> Inexact[Array, " m"] | Inexact[Array, "m k"]:
    """Sparse matrix times vector (or matrix): ``A @ x``, or ``A.T @ x`` with ``transpose=True``.

    Works under ``jit``, ``vmap`` (over ``x``, and over the values of matrices sharing a pattern,
    e.g. ``jax.vmap(lambda d: spmv(A.with_data(d), x))(values)``) and ``grad``/``jvp`` (with
    respect to ``x`` and to ``A.data``), and is cheap to call inside ``lax.while_loop``.

    Args:
      A: a ``jaxlab.sparse`` matrix (CSR, COO, ELL, SELLP, Hybrid, Dense) or its ``.T``.
      x: array of shape ``(n,)`` or ``(n, k)`` with ``n = A.shape[1]`` and ``A``'s dtype.
      transpose: multiply by the transpose of ``A`` instead.
      impl: ``"auto"`` (XLA on CPU, the format's Pallas kernel on GPU), ``"xla"``, ``"pallas"``
        (GPU only) or ``"pallas_interpret"`` (the Pallas kernel in interpret mode, for tests).

    Returns:
      ``A @ x`` with shape ``(m,)`` or ``(m, k)``.

    Raises:
      TypeError: ``A`` is not a sparse matrix or ``x``'s dtype differs from ``A``'s.
      ValueError: ``x``'s shape does not fit ``A``, or ``impl`` is unknown.

    Examples:
      >>> import numpy as np, scipy.sparse as sp, jaxlab.sparse as jsparse
      >>> A = jsparse.CSR.from_scipy(sp.diags([1.0, 2.0, 3.0]).tocsr())
      >>> print(jsparse.spmv(A, np.ones(3)))
      [1. 2. 3.]
    """
    if isinstance(A, Transposed):
        A, transpose = A.matrix, not transpose
    if not isinstance(A, AbstractSparseMatrix):
        raise TypeError(
            f"spmv expects a jaxlab.sparse matrix (CSR, COO, ELL, SELLP, Hybrid, Dense), got "
            f"{type(A).__name__}; build one with jaxlab.sparse.from_scipy(S, format=...)."
        )
    return bind_matvec(A, x, transpose=transpose, impl=impl)


def spmv_reference(A: AbstractSparseMatrix | Transposed, x: Inexact[ArrayLike, " n"] | Inexact[ArrayLike, "n k"], *,
                   transpose: bool = False) -> Inexact[Array, " m"] | Inexact[Array, "m k"]:
    """Dense oracle for :func:`spmv`: ``A.todense() @ x`` (or its transpose), in ``A``'s dtype."""
    if isinstance(A, Transposed):
        A, transpose = A.matrix, not transpose
    d = A.todense()
    if transpose:
        d = d.T
    return jnp.matmul(d, jnp.asarray(x), precision=jax.lax.Precision.HIGHEST)
