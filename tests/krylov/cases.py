"""The shared, readably named case list of the solver tests: structure x dtype x solver x preconditioner.

As in lineax's ``tests/helpers.py``, every solver test draws from one list, so a new solver, structure or
preconditioner is exercised everywhere at once. Systems are tiny (n = 16) so each solve takes milliseconds;
the cost is the compilation, so the list is chosen to cover every solver, every preconditioner kind, real
and complex dtypes, x64 on and off, and every way of passing ``A`` (dense, sparse, function) with few cases.

Every matrix is ``D A0 D`` with a diagonal ``D`` that varies over two orders of magnitude, so Jacobi is not
a plain scaling and changes the iteration count.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

import jaxlab.sparse as jsparse

GRID = 4
N = GRID * GRID
SCALE = np.logspace(-1, 1, N)  # the varying diagonal D


def poisson2d(m: int, shift: float = 0.0) -> sp.csr_matrix:
    """5-point Laplacian on an m x m grid (SPD), plus ``shift`` on the diagonal."""
    T = sp.diags([-1.0, 4.0 + shift, -1.0], [-1, 0, 1], shape=(m, m))
    S = sp.diags([-1.0, -1.0], [-1, 1], shape=(m, m))
    return (sp.kron(sp.eye(m), T) + sp.kron(S, sp.eye(m))).tocsr()


def convection_diffusion(m: int, peclet: float = 0.5) -> sp.csr_matrix:
    """Upwinded convection-diffusion on an m x m grid: nonsymmetric, nonsingular."""
    T = sp.diags([-1.0 - peclet, 4.0, -1.0 + peclet], [-1, 0, 1], shape=(m, m))
    S = sp.diags([-1.0 - peclet, -1.0 + peclet], [-1, 1], shape=(m, m))
    return (sp.kron(sp.eye(m), T) + sp.kron(S, sp.eye(m))).tocsr()


def scaled(A: sp.spmatrix, d: np.ndarray = SCALE) -> sp.csr_matrix:
    """``D A D`` with ``D = diag(d)``."""
    D = sp.diags(d)
    return (D @ A @ D).tocsr()


def structure(name: str, dtype: str) -> sp.csr_matrix:
    """The test matrices by structure: ``spd`` (Hermitian positive definite for complex dtypes) or ``nonsym``.

    Single precision gets a milder scaling (one decade), which CGS's recursive residual survives in float32.
    """
    complex_ = np.dtype(dtype).kind == "c"
    d = SCALE if np.dtype(dtype) in (np.float64, np.complex128) else np.logspace(-0.5, 0.5, N)
    if name == "spd":
        A = poisson2d(GRID, shift=0.3).astype(np.complex128 if complex_ else np.float64)
        if complex_:  # Hermitian: an imaginary antisymmetric part on the off-diagonals
            U = sp.triu(A, 1) * 0.3j
            A = A + U - U.T
        return scaled(A, d).astype(dtype)
    if name == "nonsym":
        A = convection_diffusion(GRID).astype(np.complex128 if complex_ else np.float64)
        if complex_:
            A = A + 0.4j * sp.diags(np.linspace(-1, 1, N))
        return scaled(A, d).astype(dtype)
    raise ValueError(name)


def rhs(n: int, seed: int = 0, k: int | None = None, dtype: str = "float64") -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n,) if k is None else (n, k)
    b = rng.normal(size=shape)
    if np.dtype(dtype).kind == "c":
        b = b + 1j * rng.normal(size=shape)
    return b.astype(dtype)


def scipy_iterations(solver, A, b, **kw) -> int:
    count = [0]

    def cb(*_):
        count[0] += 1

    solver(A, b, callback=cb, **kw)
    return count[0]


@dataclasses.dataclass(frozen=True)
class Case:
    """One system and how to solve it."""

    method: str
    structure: str
    dtype: str
    kind: str = "dense"  # how A is passed: dense array, "csr" (jaxlab.sparse), "function" (matrix-free)
    preconditioner: str | None = None
    x64: bool = True

    @property
    def id(self) -> str:
        pre = self.preconditioner or "none"
        return f"{self.method}-{self.structure}-{self.dtype}-{self.kind}-{pre}" + ("" if self.x64 else "-x64off")

    @property
    def options(self) -> dict:
        if self.method == "ir":
            return {"inner": "bicgstab" if self.structure == "nonsym" else "cg", "inner_rtol": 1e-2,
                    "inner_dtype": "float32" if self.x64 else None}
        return {}


def _spd_method(m: str) -> bool:
    return m in ("cg", "fcg")


# Every solver on both dtype kinds, the preconditioners spread over them, every A kind, x64 off for each solver.
CASES: list[Case] = []
_PRECONDS = {"cg": "ic0", "fcg": "jacobi", "bicgstab": "ilu0", "cgs": "block_jacobi", "gmres": "isai", "ir": None}
_KINDS = {"cg": "csr", "fcg": "dense", "bicgstab": "csr", "cgs": "dense", "gmres": "csr", "ir": "function"}
for _m in ("cg", "fcg", "bicgstab", "cgs", "gmres", "ir"):
    _s = "spd" if _spd_method(_m) else "nonsym"
    CASES.append(Case(_m, _s, "float64", _KINDS[_m], _PRECONDS[_m]))
    CASES.append(Case(_m, _s, "complex128", "dense", {"cg": "ic0", "bicgstab": "ilu0", "ir": None}.get(_m, "jacobi")))
    CASES.append(Case(_m, _s, "float32", "csr" if _m != "ir" else "dense", None, x64=False))
CASES.append(Case("gmres", "spd", "complex64", "dense", None, x64=False))
CASES.append(Case("bicgstab", "nonsym", "float64", "function", None))


def matrix_of(case: Case):
    """``(S, A)``: the SciPy matrix and ``A`` as the case passes it (dense/sparse arrays built by the caller's
    jax, so x64 settings apply)."""
    import jax.numpy as jnp

    S = structure(case.structure, case.dtype)
    if case.kind == "dense":
        return S, jnp.asarray(S.toarray())
    if case.kind == "csr":
        return S, jsparse.CSR.from_scipy(S, dtype=case.dtype)
    D = jnp.asarray(S.toarray())
    return S, lambda v: D @ v


def tolerance(dtype: str) -> tuple[float, float]:
    """(solver rtol, comparison rtol) for a dtype."""
    single = np.dtype(dtype) in (np.float32, np.complex64)
    return (1e-5, 2e-3) if single else (1e-11, 1e-7)
