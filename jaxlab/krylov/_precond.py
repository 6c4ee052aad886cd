"""Preconditioners ``M r ~ A^-1 r``: Jacobi, block Jacobi, wrappers for user callables and matrices, and the
builder ``make_preconditioner`` (ILU(0), IC(0) and ISAI live in ``_ilu``).

Every preconditioner is an :class:`AbstractPreconditioner`: a pytree (so it can be a ``jit`` argument) with
``__call__`` and a transpose ``.T``, which the adjoint solve of a gradient uses when ``A`` is not tagged
symmetric. A user's plain function or ``jax.tree_util.Partial`` becomes a :class:`FunctionPreconditioner`,
whose transpose is ``jax.linear_transpose`` of the function (so it must be linear); a matrix approximating
``A^-1`` becomes a :class:`SparsePreconditioner` or :class:`DensePreconditioner`.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.core import Tracer
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jaxtyping import Array, Inexact

import jaxlab.sparse as jsparse

from ._operator import Operator
from ._structure import canonical_csr

_HI = jax.lax.Precision.HIGHEST


class AbstractPreconditioner(abc.ABC):
    """``M r ~ A^-1 r`` with a transpose; subclasses are frozen dataclasses registered as pytrees."""

    @abc.abstractmethod
    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        """``M x``."""

    @property
    @abc.abstractmethod
    def T(self) -> "AbstractPreconditioner":
        """The transpose ``M^T`` (plain, not conjugated, for complex values)."""

    def astype(self, dtype: Any) -> "AbstractPreconditioner":
        """The preconditioner with its floating point leaves cast to ``dtype`` (for IR's inner solves)."""

        def cast(leaf):
            if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jnp.inexact):
                return leaf.astype(dtype)
            return leaf

        return jax.tree.map(cast, self)


@functools.partial(jax.tree_util.register_dataclass, data_fields=[], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Identity(AbstractPreconditioner):
    """No preconditioning."""

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        return x

    @property
    def T(self):
        return self


@functools.partial(jax.tree_util.register_dataclass, data_fields=["inv_diag"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Jacobi(AbstractPreconditioner):
    """Scalar Jacobi: multiply by the inverse of the diagonal."""

    inv_diag: Inexact[Array, " n"]

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        return self.inv_diag.astype(x.dtype) * x

    @property
    def T(self):
        return self


@functools.partial(jax.tree_util.register_dataclass, data_fields=["inv_blocks"], meta_fields=["n"])
@dataclasses.dataclass(frozen=True)
class BlockJacobi(AbstractPreconditioner):
    """Block Jacobi: the inverses of the diagonal blocks of size ``bs`` (the last block padded with identity)."""

    inv_blocks: Inexact[Array, "nb bs bs"]
    n: int

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        nb, bs, _ = self.inv_blocks.shape
        xp = jnp.zeros((nb * bs,), x.dtype).at[: self.n].set(x)
        y = jnp.einsum("bij,bj->bi", self.inv_blocks.astype(x.dtype), xp.reshape(nb, bs), precision=_HI)
        return y.reshape(-1)[: self.n]

    @property
    def T(self):
        return BlockJacobi(jnp.swapaxes(self.inv_blocks, 1, 2), self.n)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["matrix"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class SparsePreconditioner(AbstractPreconditioner):
    """A ``jaxlab.sparse`` matrix approximating ``A^-1`` (e.g. an ISAI), applied as ``M @ x``."""

    matrix: Any

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        return self.matrix @ x

    @property
    def T(self):
        return SparsePreconditioner(self.matrix.T)

    def astype(self, dtype):
        return SparsePreconditioner(self.matrix.astype(dtype))


@functools.partial(jax.tree_util.register_dataclass, data_fields=["matrix"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class DensePreconditioner(AbstractPreconditioner):
    """A dense ``(n, n)`` array approximating ``A^-1``."""

    matrix: Inexact[Array, "n n"]

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        return jnp.matmul(self.matrix.astype(x.dtype), x, precision=_HI)

    @property
    def T(self):
        return DensePreconditioner(self.matrix.T)


def _linear_transpose_apply(fn: Callable, x: jax.Array) -> jax.Array:
    (y,) = jax.linear_transpose(fn, x)(x)
    return y


@functools.partial(jax.tree_util.register_dataclass, data_fields=["fn", "transpose"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class FunctionPreconditioner(AbstractPreconditioner):
    """A callable ``r -> M r`` (plain function, ``jax.tree_util.Partial``, any callable pytree).

    ``transpose`` is a callable for ``M^T``, or None: then ``M^T`` is ``jax.linear_transpose(fn)``, which needs
    ``fn`` to be linear (a nonlinear one makes the adjoint solve run without preconditioner, see ``solve``).
    """

    fn: Any
    transpose: Any = None

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        return self.fn(x)

    @property
    def T(self):
        if self.transpose is not None:
            return FunctionPreconditioner(self.transpose, self.fn)
        return _LinearTransposed(self.fn)



@functools.partial(jax.tree_util.register_dataclass, data_fields=["fn"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class _LinearTransposed(AbstractPreconditioner):
    fn: Any

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        return _linear_transpose_apply(self.fn, x)

    @property
    def T(self):
        return FunctionPreconditioner(self.fn)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["first", "second"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Composed(AbstractPreconditioner):
    """``second(first(x))``, e.g. the two ISAI factors of an ILU preconditioner."""

    first: Any
    second: Any

    def __call__(self, x: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        return self.second(self.first(x))

    @property
    def T(self):
        return Composed(self.second.T, self.first.T)


def _check_finite_diag(d: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(d) | (d == 0))
    if bad.size:
        raise ValueError(
            f"{what}: zero or non-finite diagonal entry at row {int(bad[0])} ({bad.size} rows in all); "
            "reorder the matrix, use another preconditioner (e.g. 'block_jacobi' or None) or shift the diagonal"
        )


def jacobi(A: Any) -> Jacobi:
    """Scalar Jacobi from ``A``'s diagonal; works on traced matrices (then a zero diagonal gives NaN/Inf).

    Raises:
      ValueError: a zero or non-finite diagonal entry (concrete ``A`` only).
      TypeError: ``A`` is a function (no diagonal to read).
    """
    if isinstance(A, Operator):
        if A.kind == "function":
            raise TypeError("jacobi needs the matrix's diagonal, but A is a callable: pass A as a matrix, or give a "
                            "callable preconditioner")
        A = A.value
    if sp.issparse(A):
        A = jsparse.CSR.from_scipy(A)
    if isinstance(A, (jsparse.AbstractSparseMatrix, jsparse.Transposed)):
        d = A.matrix.diagonal() if isinstance(A, jsparse.Transposed) else A.diagonal()
    elif isinstance(A, (jax.Array, np.ndarray)):
        d = jnp.diagonal(jnp.asarray(A))
    else:
        raise TypeError("jacobi needs the matrix's diagonal, but A is a callable: pass A as a matrix, or give a "
                        "callable preconditioner")
    if not isinstance(d, Tracer):
        _check_finite_diag(np.asarray(d), "jacobi")
    return Jacobi(1 / d)


def block_jacobi(A: Any, block_size: int = 4) -> BlockJacobi:
    """Block Jacobi with dense inverses of the ``block_size`` x ``block_size`` diagonal blocks.

    Raises:
      ValueError: ``block_size < 1``, or a singular or non-finite diagonal block.
    """
    if not isinstance(block_size, (int, np.integer)) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    S: Any = canonical_csr(A, "block_jacobi").tocoo()
    rows, cols, vals, n = S.row, S.col, S.data, S.shape[0]
    nb = -(-n // block_size)
    blocks = np.zeros((nb, block_size, block_size), vals.dtype)
    same = rows // block_size == cols // block_size
    blocks[rows[same] // block_size, rows[same] % block_size, cols[same] % block_size] = vals[same]
    pad = np.arange(n, nb * block_size)
    blocks[pad // block_size, pad % block_size, pad % block_size] = 1
    det_ok = np.isfinite(blocks).all(axis=(1, 2))
    if not det_ok.all():
        raise ValueError(f"block_jacobi: non-finite entries in diagonal block {int(np.flatnonzero(~det_ok)[0])}")
    cond = np.linalg.cond(blocks) if nb else np.zeros(0)
    bad = np.flatnonzero(~np.isfinite(cond) | (cond > 1 / np.finfo(vals.dtype).eps))
    if bad.size:
        raise ValueError(f"block_jacobi: diagonal block {int(bad[0])} (rows {int(bad[0]) * block_size}...) is "
                         "singular; try another block_size or preconditioner")
    return BlockJacobi(jnp.asarray(np.linalg.inv(blocks)), n)


def _builders() -> dict[str, Callable[..., AbstractPreconditioner]]:
    from ._ilu import ic0, ilu0, isai

    return {"jacobi": jacobi, "block_jacobi": block_jacobi, "ilu0": ilu0, "ic0": ic0, "isai": isai}


PRECONDITIONER_NAMES = ("jacobi", "block_jacobi", "ilu0", "ic0", "isai")
_WHAT = (f"None, one of {list(PRECONDITIONER_NAMES)}, a krylov preconditioner (make_preconditioner), a matrix "
         "approximating A^-1 (a jaxlab.sparse matrix or a 2-D array), a krylov.Operator, or a callable r -> M r "
         "(a function or jax.tree_util.Partial)")


def as_preconditioner(M: Any) -> AbstractPreconditioner:
    """Wraps anything ``solve`` accepts as an already-built preconditioner (not a name).

    Raises:
      TypeError: ``M`` is none of the accepted kinds.
    """
    if M is None:
        return Identity()
    if isinstance(M, AbstractPreconditioner):
        return M
    if isinstance(M, Operator):
        if M.kind == "function":
            return FunctionPreconditioner(M.value)
        M = M.value
    if sp.issparse(M):
        M = jsparse.from_scipy(M)
    if isinstance(M, (jsparse.AbstractSparseMatrix, jsparse.Transposed)):
        return SparsePreconditioner(M)
    if isinstance(M, (jax.Array, np.ndarray)):
        M = jnp.asarray(M)
        if M.ndim != 2 or M.shape[0] != M.shape[1]:
            raise TypeError(f"a matrix preconditioner must be square (n, n), got shape {M.shape}")
        return DensePreconditioner(M)
    if callable(M):
        return FunctionPreconditioner(M)
    raise TypeError(f"preconditioner must be {_WHAT}; got {type(M).__name__} {M!r:.80}")


def make_preconditioner(A: Any, kind: Any, **options: Any) -> AbstractPreconditioner:
    """Builds a preconditioner for ``A`` from a name, or wraps one that is already built.

    Args:
      A: the matrix (a jaxlab format, SciPy sparse, dense array or matrix :class:`Operator`); named kinds other
        than ``"jacobi"`` need it concrete (outside jit).
      kind: None, ``"jacobi"``, ``"block_jacobi"``, ``"ilu0"``, ``"ic0"``, ``"isai"``, or any object
        :func:`as_preconditioner` accepts (returned wrapped; ``A`` is then not read).
      **options: builder options (``block_size`` for block_jacobi, ``triangular`` for ilu0/ic0).

    Raises:
      ValueError: an unknown name, or a setup that fails (zero diagonal, singular block, ...).
      TypeError: ``kind`` is none of the accepted kinds, or options are given with a built preconditioner.
    """
    if isinstance(kind, str):
        builders = _builders()
        if kind not in builders:
            raise ValueError(f"unknown preconditioner {kind!r}; choose one of {sorted(builders)}, None or a "
                             "callable")
        return builders[kind](A, **options)
    if options:
        raise TypeError(f"preconditioner options {sorted(options)} apply to named preconditioners only, not to "
                        f"{type(kind).__name__}")
    return as_preconditioner(kind)


def transpose_preconditioner(M: AbstractPreconditioner, x: jax.Array) -> AbstractPreconditioner:
    """``M.T``, or :class:`Identity` when the transpose cannot be traced (a nonlinear user function)."""
    Mt = M.T
    try:
        jax.eval_shape(Mt, x)
    except Exception:  # noqa: BLE001  (linear_transpose refuses nonlinear functions at trace time)
        return Identity()
    return Mt


def cast_preconditioner(M: AbstractPreconditioner, dtype: Any, work_dtype: Any) -> Callable[[jax.Array], jax.Array]:
    """``M`` applied in ``dtype`` (IR's inner solves): our preconditioners cast their values; a user function,
    whose constants cannot be cast, runs in ``work_dtype`` between casts."""
    if isinstance(M, (FunctionPreconditioner, _LinearTransposed)):
        return lambda r: M(r.astype(work_dtype)).astype(dtype)
    return M.astype(dtype)
