"""Shared small systems for the solver tests (float64, SciPy and dense references)."""

import numpy as np
import scipy.sparse as sp


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


def rhs(n: int, seed: int = 0, k: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) if k is None else (n, k))


def scipy_iterations(solver, A, b, **kw) -> int:
    count = [0]

    def cb(*_):
        count[0] += 1

    solver(A, b, callback=cb, **kw)
    return count[0]
