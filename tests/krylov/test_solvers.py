"""Solvers against dense solves and SciPy on the shared case list (the preconditioner kinds:
test_preconditioner_kinds.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from jaxlab import krylov

from ..compile_helpers import quick_jit
from .cases import (CASES, N, Case, convection_diffusion, matrix_of, poisson2d, rhs, scipy_iterations, structure,
                    tolerance)


def _relres(S, x, b):
    return np.linalg.norm(S @ np.asarray(x) - b) / np.linalg.norm(b)


# Set up on the host from the matrix's values (a traced matrix is refused): their cases solve eagerly.
_HOST_SETUP = ("ilu0", "ic0", "isai", "block_jacobi")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_list_matches_dense_solve(case: Case):
    """The other cases solve inside one quick_jit program: the same solver, compiled 2.5-3x cheaper than
    the eager call's own jit (the older fusion emitters); eager solves of every method are checked in
    test_preconditioner_kinds.py and below."""
    with jax.enable_x64(case.x64):
        S, A = matrix_of(case)
        b = rhs(N, dtype=case.dtype)
        rtol, cmp = tolerance(case.dtype)
        run = lambda A, b: krylov.solve(A, b, method=case.method, preconditioner=case.preconditioner,  # noqa: E731
                                        rtol=rtol, **case.options)
        if case.preconditioner in _HOST_SETUP:
            sol = run(A, jnp.asarray(b))
        elif callable(A):  # matrix-free: the function is closed over
            sol = quick_jit(lambda b: run(A, b))(b)
        else:
            sol = quick_jit(run)(A, b)
        assert sol.x.dtype == np.dtype(case.dtype)
        assert int(sol.status) == krylov.Status.CONVERGED, krylov.status_name(sol.status)
        assert _relres(S, sol.x, b) < 10 * rtol
        ref = np.linalg.solve(S.toarray().astype(np.complex128 if "complex" in case.dtype else np.float64), b)
        np.testing.assert_allclose(np.asarray(sol.x), ref, rtol=cmp, atol=cmp * np.abs(ref).max())


# Iteration counts are compared on well-conditioned systems (n = 64, unscaled), where rounding cannot make
# two correct implementations take different paths.
_WELL = {"spd": poisson2d(8, shift=0.3), "nonsym": convection_diffusion(8)}


@pytest.mark.parametrize("method, peer", [("cg", spla.cg), ("bicgstab", spla.bicgstab), ("cgs", spla.cgs)])
def test_iterations_match_scipy(method, peer):
    S = _WELL["spd" if method == "cg" else "nonsym"]
    b = rhs(S.shape[0])
    sol = quick_jit(lambda A, b: krylov.solve(A, b, method=method, rtol=1e-10))(S.toarray(), b)
    assert int(sol.iterations) == scipy_iterations(peer, S, b, rtol=1e-10)


def test_gmres_iterations_match_scipy_inner_count():
    S = _WELL["nonsym"]
    b = rhs(S.shape[0])
    sol = quick_jit(lambda A, b: krylov.gmres(A, b, rtol=1e-8, restart=5))(S.toarray(), b)
    ref = scipy_iterations(spla.gmres, S, b, rtol=1e-8, restart=5, callback_type="pr_norm")
    assert bool(sol.converged)
    assert abs(int(sol.iterations) - ref) <= max(1, 0.05 * ref)


@pytest.mark.slow  # two GMRES compilations for an option only scripts/bench_gmres_parts.py uses
def test_gmres_row_blocks_give_the_whole_basis_iterates():
    """gmres_loop(row_block=4) reads only the leading blocks of the basis (bench_gmres_parts.py times it): the
    same iterates as reading the whole basis, over two restart cycles."""
    from jaxlab.krylov._common import tolerance
    from jaxlab.krylov._gmres import gmres_loop

    S = _WELL["nonsym"]
    A, b = jnp.asarray(S.toarray()), jnp.asarray(rhs(S.shape[0]))
    loop = lambda blk: gmres_loop(lambda v: A @ v, b, jnp.zeros_like(b), lambda v: v,  # noqa: E731
                                  tolerance(b, 0.0, 0.0), 20, False, 10, blk)[:2]
    # The blocked loop has one switch per product (three branches: 4, 8 and 11 rows), the whole one none.
    assert str(jax.make_jaxpr(lambda: loop(4))()).count("cond[") == str(jax.make_jaxpr(lambda: loop(None))()).count(
        "cond[") + 2
    run = quick_jit(loop, static_argnums=0)
    (x_whole, k_whole), (x_block, k_block) = run(None), run(4)
    assert int(k_whole) == int(k_block) == 20
    np.testing.assert_allclose(x_block, x_whole, rtol=1e-12, atol=1e-12)


def test_gmres_column_blocks_give_the_one_block_iterates():
    """gmres_loop(column_block=...) keeps the basis as column blocks (three here, widths 21, 21 and 22 of
    n = 64 with column_block=30) and sums the projections over them: the same iterates and count as the
    basis in one block, over two restart cycles, and one product per block and pass in the program."""
    from jaxlab.krylov._common import tolerance
    from jaxlab.krylov._gmres import column_edges, gmres_loop

    A = jnp.asarray(_WELL["nonsym"].toarray())
    n = A.shape[0]
    b = jnp.asarray(rhs(n))
    loop = lambda cols: gmres_loop(lambda v: A @ v, b, jnp.zeros_like(b), lambda v: v,  # noqa: E731
                                   tolerance(b, 0.0, 0.0), 20, False, 10, None, cols, False)[:2]
    blocks = len(column_edges(n, b.dtype, 30)) - 1
    assert blocks == -(-n // 30) > 1
    # Per column block: the projection, the update, the norm of the new vector and the x update.
    dots = lambda cols: str(jax.make_jaxpr(lambda: loop(cols))()).count("dot_general[")  # noqa: E731
    assert dots(30) == dots(None) + 4 * (blocks - 1)
    run = quick_jit(loop, static_argnums=0)
    (x_one, k_one), (x_cols, k_cols) = run(None), run(30)
    assert int(k_one) == int(k_cols) == 20
    np.testing.assert_allclose(x_cols, x_one, rtol=1e-12, atol=1e-12)


def test_gmres_split_products_give_the_two_column_iterates():
    """split_products=True multiplies the two projected (and the two updated) vectors as separate
    matrix-vector products: two more products per pass in the program, the same iterates and count."""
    from jaxlab.krylov._common import tolerance
    from jaxlab.krylov._gmres import gmres_loop

    A = jnp.asarray(_WELL["nonsym"].toarray())
    b = jnp.asarray(rhs(A.shape[0]))
    loop = lambda split: gmres_loop(lambda v: A @ v, b, jnp.zeros_like(b), lambda v: v,  # noqa: E731
                                    tolerance(b, 0.0, 0.0), 20, False, 10, None, None, split)[:2]
    dots = lambda split: str(jax.make_jaxpr(lambda: loop(split))()).count("dot_general[")  # noqa: E731
    assert dots(True) == dots(False) + 2
    run = quick_jit(loop, static_argnums=0)
    (x_two, k_two), (x_split, k_split) = run(False), run(True)
    assert int(k_two) == int(k_split) == 20
    np.testing.assert_allclose(x_split, x_two, rtol=1e-12, atol=1e-12)


def test_gmres_auto_layout_only_for_a_basis_beyond_the_cache():
    """"auto" picks the CPU layout (leading row blocks, split products) on the CPU backend only once the basis
    outgrows 2 MiB; a small basis keeps one product over it (fewer branches to compile)."""
    from jaxlab.krylov._common import tolerance
    from jaxlab.krylov._gmres import gmres_loop

    if jax.default_backend() != "cpu":
        pytest.skip("the auto layout differs only on the CPU backend")

    def dots(n, **layout):
        b = jnp.ones(n, jnp.float32)
        loop = lambda: gmres_loop(lambda v: 2 * v, b, jnp.zeros_like(b), lambda v: v,  # noqa: E731
                                  tolerance(b, 0.0, 0.0), 30, False, 30, **layout)[:2]
        return str(jax.make_jaxpr(loop)()).count("dot_general[")

    plain = dict(row_block=None, column_block=None, split_products=False)
    assert dots(64) == dots(64, **plain)                                    # 31 x 64 floats: far below 2 MiB
    big = (1 << 21) // (31 * 4) + 1                                         # just over 2 MiB of float32
    assert dots(big) == dots(big, row_block=8, split_products=True) > dots(big, **plain)


def test_gmres_layout_options_refuse_unknown_strings():
    from jaxlab.krylov._gmres import gmres_loop

    b = jnp.ones(4)
    for kw in ({"row_block": "big"}, {"split_products": "yes"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            gmres_loop(lambda v: v, b, b, lambda v: v, 0.0, 2, False, 2, **kw)


def test_gmres_column_edges():
    from jaxlab.krylov._gmres import column_edges

    assert column_edges(10, jnp.float64, None) == (0, 10)
    assert column_edges(10, jnp.float64, 0) == (0, 10)
    assert column_edges(10, jnp.float64, 4) == (0, 3, 6, 10)
    assert column_edges(3, jnp.float64, 1) == (0, 1, 2, 3)
    # "auto" on the CPU: 256 KiB for the two vectors' slice, so float32 blocks are twice as wide as float64's.
    if jax.default_backend() == "cpu":
        assert column_edges(100_000, jnp.float64) == column_edges(100_000, jnp.float64, 16384)
        assert column_edges(100_000, jnp.float32) == column_edges(100_000, jnp.float32, 32768)
    else:
        assert column_edges(100_000, jnp.float64) == (0, 100_000)
    with pytest.raises(ValueError, match="column_block"):
        column_edges(10, jnp.float64, "big")
    with pytest.raises(ValueError, match="column_block"):
        column_edges(10, jnp.float64, -1)


def test_jacobi_on_a_varying_diagonal_cuts_iterations_as_scipys():
    """D A D with D over two decades: the right diagonal helps, the reversed one does not, and the count is
    SciPy's with the same preconditioner."""
    S = structure("spd", "float64")
    A, b = S.toarray(), rhs(N)
    # The three solves in one program.
    plain, jac, wrong = quick_jit(lambda A, b, reversed_: [
        krylov.cg(A, b, preconditioner=M, rtol=1e-10) for M in (None, "jacobi", krylov.Jacobi(reversed_))])(
        A, b, 1 / S.diagonal()[::-1])
    assert int(jac.iterations) < int(plain.iterations) < int(wrong.iterations)
    M = spla.LinearOperator(S.shape, matvec=lambda r: r / S.diagonal())
    assert int(jac.iterations) == scipy_iterations(spla.cg, S, np.asarray(b), rtol=1e-10, M=M)


def test_multiple_right_hand_sides_each_converge():
    S = structure("spd", "float64")
    B = rhs(N, k=3)
    B[:, 2] *= 1e-3  # different scales: each column has its own stopping point
    sol = quick_jit(lambda A, B: krylov.cg(A, B, rtol=1e-10))(S.toarray(), B)
    assert sol.x.shape == (N, 3) and sol.iterations.shape == (3,)
    assert bool(sol.converged.all())
    np.testing.assert_allclose(sol.x, np.linalg.solve(S.toarray(), B), rtol=1e-7, atol=1e-12)


def test_batched_systems_by_vmap_over_values_have_their_own_flags():
    A = structure("spd", "float64").toarray()
    scales = jnp.asarray([1.0, 2.0, -1.0])  # the last system is negative definite: CG must not claim success
    As = jnp.asarray(A)[None] * scales[:, None, None]
    b = jnp.asarray(rhs(N))
    sol = quick_jit(jax.vmap(lambda M: krylov.cg(M, b, rtol=1e-10, maxiter=200)))(As)
    assert sol.converged.tolist() == [True, True, False]
    assert int(sol.status[2]) == krylov.Status.BREAKDOWN
    np.testing.assert_allclose(sol.x[1], np.linalg.solve(2 * A, np.asarray(b)), rtol=1e-7)


def test_inside_jit_with_history():
    A = jnp.asarray(structure("spd", "float64").toarray())
    b = jnp.asarray(rhs(N))
    sol = quick_jit(lambda A, b: krylov.cg(A, b, rtol=1e-8, maxiter=100, history=True))(A, b)
    k = int(sol.iterations)
    assert sol.history.shape == (101,)
    assert np.isfinite(sol.history[: k + 1]).all() and np.isnan(sol.history[k + 1:]).all()
    assert float(sol.history[k]) == pytest.approx(float(sol.residual_norm))
    assert float(sol.history[0]) == pytest.approx(float(jnp.linalg.norm(b)))


def test_maxiter_reached_status():
    sol = krylov.cg(jnp.asarray(structure("spd", "float64").toarray()), jnp.asarray(rhs(N)), rtol=1e-12,
                    maxiter=3)
    assert int(sol.iterations) == 3 and int(sol.status) == krylov.Status.MAXITER and not bool(sol.converged)


def test_zero_rhs_converges_immediately():
    sol = krylov.bicgstab(jnp.asarray(structure("nonsym", "float64").toarray()), jnp.asarray(np.zeros(N)))
    assert bool(sol.converged) and int(sol.iterations) == 0 and float(jnp.abs(sol.x).max()) == 0


def test_ir_reaches_float64_accuracy_with_float32_inner_solves():
    S = structure("nonsym", "float64")
    b = rhs(N)
    sol = quick_jit(lambda A, b: krylov.ir(A, b, rtol=1e-12, inner="bicgstab", inner_dtype=jnp.float32,
                                           inner_rtol=1e-3))(S.toarray(), b)
    assert bool(sol.converged) and sol.x.dtype == jnp.float64
    assert _relres(S, sol.x, b) < 1e-11


def test_gmres_happy_breakdown_stops_with_the_exact_solution():
    # b lies in a 3-dimensional invariant subspace: the fourth Krylov vector is zero.
    b = np.zeros(N)
    b[:3] = 1.0
    sol = quick_jit(lambda A, b: krylov.gmres(A, b, rtol=1e-14, restart=10))(np.diag(np.arange(1.0, N + 1)), b)
    assert bool(sol.converged) and int(sol.iterations) == 3
    np.testing.assert_allclose(sol.x[:3], [1.0, 0.5, 1 / 3], rtol=1e-12)
