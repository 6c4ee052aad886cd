"""The operator ``A`` of a solve: a matrix or a function, tagged with its structure.

Every solve turns what the user passes as ``A`` into one :class:`Operator`: a pytree holding the matrix
(a ``jaxlab.sparse`` format or a dense array) or the function ``x -> A x``, its kind, and its structure
tags. The tags, not the method's name, decide how the gradient's adjoint system ``A^T lam = g`` is solved
(as lineax does with its operator tags):

* ``symmetric``: ``A^T = A`` (for complex matrices the plain transpose, not the conjugate one): the adjoint
  reuses ``A`` and the preconditioner itself;
* ``positive_definite``: ``A`` is Hermitian positive definite: the adjoint system, whose matrix ``A^T``
  is then Hermitian positive definite too, is solved by CG whatever the forward method.

Without tags the adjoint multiplies by ``A^T`` (the transposed sparse product, or ``jax.linear_transpose``
of a function) and uses the preconditioner's transpose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Inexact

import jaxlab.sparse as jsparse

KINDS = ("sparse", "dense", "function")
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class Operator:
    """``A`` of ``A x = b`` with its structure: build it with :func:`operator`.

    Attributes:
      value: the matrix (a ``jaxlab.sparse`` matrix or a dense ``(n, n)`` array) or a callable ``x -> A x``.
      kind: ``"sparse"``, ``"dense"`` or ``"function"`` (static).
      symmetric: ``A^T = A`` (static).
      positive_definite: ``A`` is Hermitian positive definite (static).
    """

    value: Any
    kind: str = "dense"
    symmetric: bool = False
    positive_definite: bool = False

    def mv(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        """``A x``."""
        if self.kind == "function":
            return self.value(x)
        if self.kind == "dense":
            return jnp.matmul(self.value, x, precision=_HI)
        return self.value @ x

    @property
    def is_matrix(self) -> bool:
        return self.kind != "function"

    @property
    def dtype(self) -> Any:
        """The matrix's dtype; None for a function (it takes b's)."""
        return None if self.kind == "function" else jnp.dtype(self.value.dtype)

    def shape_for(self, b: jax.Array) -> tuple[int, int]:
        """``A``'s shape (a function is taken to be square, of ``b``'s length)."""
        if self.kind == "function":
            return (b.shape[0], b.shape[0])
        shape = tuple(int(s) for s in self.value.shape)
        if len(shape) != 2:
            raise ValueError(f"A must be a matrix (2-D), got shape {shape}")
        return shape[0], shape[1]

    def astype(self, dtype: Any, work_dtype: Any) -> "Operator":
        """The operator with values in ``dtype``; a function runs in ``work_dtype`` with casts around it."""
        if self.kind == "function":
            fn = self.value
            return dataclasses.replace(self, value=lambda v: fn(v.astype(work_dtype)).astype(dtype))
        return dataclasses.replace(self, value=self.value.astype(dtype))

    def transpose_matrix(self) -> "Operator":
        """``A^T`` of a matrix operator (tags kept: the transpose of an SPD/symmetric matrix is one too)."""
        if self.kind == "function":
            raise TypeError("transpose_matrix: a function operator has no matrix to transpose")
        return dataclasses.replace(self, value=self.value.T)


jax.tree_util.register_dataclass(Operator, data_fields=["value"],
                                 meta_fields=["kind", "symmetric", "positive_definite"])


def _kind_of(A: Any) -> str | None:
    if isinstance(A, (jsparse.AbstractSparseMatrix, jsparse.Transposed)):
        return "sparse"
    if isinstance(A, (jax.Array, np.ndarray)):
        return "dense"
    if callable(A):
        return "function"
    return None


def operator(A: Any, *, symmetric: bool = False, positive_definite: bool = False) -> Operator:
    """Wraps ``A`` as an :class:`Operator` with structure tags.

    Args:
      A: a ``jaxlab.sparse`` matrix, a SciPy sparse matrix (converted to the default format), a dense
        ``(n, n)`` array, a callable ``x -> A x`` (a function, a ``jax.tree_util.Partial``, any callable
        pytree), or an :class:`Operator` (its tags are combined with the new ones).
      symmetric: declare ``A^T = A`` (the plain transpose, also for complex matrices).
      positive_definite: declare ``A`` Hermitian positive definite.

    Raises:
      TypeError: ``A`` is none of the above.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxlab import krylov
      >>> op = krylov.operator(jnp.array([[4.0, 1.0], [1.0, 3.0]]), symmetric=True, positive_definite=True)
      >>> op.kind, op.symmetric
      ('dense', True)
    """
    if isinstance(A, Operator):
        return dataclasses.replace(A, symmetric=A.symmetric or bool(symmetric),
                                   positive_definite=A.positive_definite or bool(positive_definite))
    if sp.issparse(A):
        A = jsparse.from_scipy(A)
    elif isinstance(A, np.ndarray):
        A = jnp.asarray(A)
    kind = _kind_of(A)
    if kind is None:
        raise TypeError(
            f"A must be a jaxlab.sparse matrix, a SciPy sparse matrix, a 2-D array, a callable x -> A x or a "
            f"krylov.Operator; got {type(A).__name__}"
        )
    return Operator(A, kind, bool(symmetric), bool(positive_definite))


def check_system(op: Operator, b: Any) -> None:
    """Validates shapes and dtypes at trace time, with messages that say what to change."""
    if not isinstance(b, jax.Array) or b.ndim not in (1, 2):
        raise ValueError(f"b must have shape (n,) or (n, k), got {getattr(b, 'shape', type(b).__name__)}")
    if not jnp.issubdtype(b.dtype, jnp.inexact):
        raise TypeError(f"b must be a floating point or complex array, got dtype {b.dtype}; cast it with "
                        "b.astype(...)")
    m, n = op.shape_for(b)
    if m != n:
        raise ValueError(f"A must be square for a Krylov solve, got shape {(m, n)}")
    if b.shape[0] != n:
        raise ValueError(f"b has {b.shape[0]} rows but A is {n} x {n}; b must have shape ({n},) or ({n}, k)")
    if op.dtype is not None and op.dtype != b.dtype:
        raise TypeError(f"A has dtype {op.dtype} but b has {b.dtype}; cast one of them so they agree")


Matvec = Callable[[jax.Array], jax.Array]
