"""Preconditioner setup and apply: ILU(0)/IC(0) against the dense textbook factorisation, level-scheduled
triangular solves against SciPy, ISAI's defining property, O(nnz) setup memory, unchanged iteration counts."""

import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from jaxlab import krylov
from jaxlab.core import tolerances
from jaxlab.krylov._structure import canonical_csr, dependency_levels
from jaxlab.krylov._triangular import level_schedule

from ..compile_helpers import quick_jit
from .cases import N, rhs, structure

NS = structure("nonsym", "float64")
SPD = structure("spd", "float64")


def _dense_apply(P):
    return np.asarray(quick_jit(jax.vmap(P))(jnp.eye(N))).T


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_ilu0_factors_match_the_dense_reference(dtype):
    S = structure("nonsym", dtype)
    A = S.toarray()
    P = krylov.ilu0(S)
    L, U = krylov.ilu0_reference(A)
    _, rtol = tolerances(dtype)
    x = rhs(N, seed=2, dtype=dtype)
    y, y_t = quick_jit(lambda P, x: (P(x), P.T(x)))(P, x)  # both applies in one program
    np.testing.assert_allclose(y, np.linalg.solve(U, np.linalg.solve(L, x)), rtol=1e3 * rtol)
    np.testing.assert_allclose(y_t, np.linalg.solve(L.T, np.linalg.solve(U.T, x)), rtol=1e3 * rtol)
    pattern = A != 0
    np.testing.assert_allclose((L @ U)[pattern], A[pattern], atol=1e-12 * np.abs(A).max())


def test_level_schedule_solves_match_scipy_triangular_solves():
    rng = np.random.default_rng(0)
    T = sp.random(40, 40, density=0.15, random_state=1, format="csr") + sp.diags(rng.uniform(1, 2, 40))
    T = canonical_csr(sp.tril(T).tocsr(), "test")
    diag = T.diagonal()
    sched = level_schedule(T.indptr, T.indices, T.data, diag, 40, upper=False)
    b = rng.standard_normal(40)
    np.testing.assert_allclose(sched.solve(jnp.asarray(b)), spla.spsolve_triangular(T, b, lower=True), rtol=1e-10)
    np.testing.assert_allclose(sched.solve_transposed(jnp.asarray(b)),
                               spla.spsolve_triangular(T.T.tocsr(), b, lower=False), rtol=1e-10)
    levels = dependency_levels(T.indptr, T.indices, 40, upper=False)
    rows, cols = T.nonzero()
    lower = cols < rows
    assert (levels[rows[lower]] > levels[cols[lower]]).all()  # every row waits for the rows it needs


def test_ic0_is_ilu0_of_a_symmetric_matrix_and_symmetric():
    P = krylov.ic0(SPD)
    M = _dense_apply(P)
    np.testing.assert_allclose(M, M.T, atol=1e-12 * np.abs(M).max())
    L, U = krylov.ilu0_reference(SPD.toarray())
    np.testing.assert_allclose(M, np.linalg.inv(L @ U), rtol=1e-9, atol=1e-12 * np.abs(M).max())


def test_isai_is_an_approximate_inverse_on_the_pattern():
    A = SPD.toarray()
    M = _dense_apply(krylov.isai(SPD))
    pattern = A != 0
    np.testing.assert_allclose((M @ A)[pattern], np.eye(N)[pattern], atol=1e-12)
    Mt = _dense_apply(krylov.isai(SPD).T)
    np.testing.assert_allclose(Mt, M.T, atol=1e-12)


def _arrow(n, corner):
    """One dense row and column (at ``corner`` 0 or n - 1) plus the diagonal: 3n entries, rows up to n long."""
    S = sp.diags(np.arange(1.0, n + 1) + n).tolil()
    S[corner, :] = 1.0
    S[:, corner] = 1.0
    S[corner, corner] = 2.0 * n
    return S.tocsr()


@pytest.mark.parametrize("kind", ["ilu0", "ic0", "isai"])
@pytest.mark.parametrize("corner", ["first", "last"])
def test_arrow_matrix_setup_memory_is_proportional_to_its_entries(kind, corner):
    """Padding rows to the longest (the first version) asked for 60 GiB here; O(nnz) needs a few MiB."""
    n = 2000
    S = _arrow(n, 0 if corner == "first" else n - 1)
    tracemalloc.start()
    P = krylov.make_preconditioner(S, kind)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"{kind} setup peaked at {peak / 2**20:.0f} MiB"
    x = rhs(n)
    y = np.asarray(quick_jit(lambda P, x: P(x))(P, jnp.asarray(x)))
    if corner == "last" and kind != "isai":  # an arrow into the last corner has no fill: ILU(0) is its LU
        np.testing.assert_allclose(S @ y, x, rtol=1e-9)
    else:
        assert np.isfinite(y).all() and np.linalg.norm(S @ y - x) < np.linalg.norm(x)


def test_iteration_counts_equal_those_of_the_textbook_factors():
    """Our ILU(0) and a SciPy preconditioner built from the dense reference factors give the same iterations."""
    S = structure("nonsym", "float64")
    b = rhs(N)
    L, U = krylov.ilu0_reference(S.toarray())
    ref = lambda r: np.linalg.solve(U, np.linalg.solve(L, r))
    sol = krylov.bicgstab(jnp.asarray(S.toarray()), jnp.asarray(b), "ilu0", rtol=1e-10)
    count = [0]
    spla.bicgstab(S, b, rtol=1e-10, M=spla.LinearOperator(S.shape, matvec=ref),
                  callback=lambda _: count.__setitem__(0, count[0] + 1))
    assert int(sol.iterations) == count[0]


def test_block_jacobi_inverts_the_diagonal_blocks():
    P = krylov.block_jacobi(NS, block_size=4)
    M = _dense_apply(P)
    A = NS.toarray()
    for k in range(0, N, 4):
        np.testing.assert_allclose(M[k:k + 4, k:k + 4] @ A[k:k + 4, k:k + 4], np.eye(4), atol=1e-10)
    assert np.abs(M[:4, 4:]).max() == 0
    np.testing.assert_allclose(_dense_apply(P.T), M.T)
