"""Every way of passing a preconditioner (a function, a Partial, an object, a matrix, an operator) in every method,
eager and in jit. (Its own file, apart from test_solvers.py, so that two pytest-xdist workers share the
solver compilations.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import jaxlab.sparse as jsparse
from jaxlab import krylov

from ..compile_helpers import quick_jit
from .cases import N, rhs, structure

_METHODS = ["cg", "fcg", "bicgstab", "cgs", "gmres", "ir"]
KINDS = ("function", "partial", "operator")


def _scale(d, r):
    return d * r


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("method", _METHODS)
def test_callable_preconditioners_in_every_method(method, mode):
    """A plain function, a Partial and a preconditioner object do what the named Jacobi does, eager and in jit.

    In jit the three kinds are solved in one jitted program: one compilation instead of three (a solver's
    compilation has a large fixed part: three GMRES loops compile in 1.5x the time of one); each kind is
    still a solve of its own and is checked on its own."""
    S = structure("spd" if method in ("cg", "fcg") else "nonsym", "float64")
    A, b = jnp.asarray(S.toarray()), jnp.asarray(rhs(N))
    d = jnp.asarray(1 / S.diagonal())
    fn = lambda r: d * r  # noqa: E731
    P, J = Partial(_scale, d), krylov.Jacobi(d)
    opts = {"rtol": 1e-10, "inner": "bicgstab", "inner_rtol": 1e-2} if method == "ir" else {"rtol": 1e-10}
    if mode == "eager":
        sols = [krylov.solve(A, b, method, M, **opts) for M in (fn, P, J)]
    else:  # a plain function is no jit argument: it is closed over; the Partial and the object are arguments
        sols = quick_jit(lambda A, b, P, J: [krylov.solve(A, b, method, M, **opts) for M in (fn, P, J)])(A, b, P, J)
    want = np.linalg.solve(S.toarray(), np.asarray(b))
    ref = krylov.solve(A, b, method, "jacobi", **opts) if method != "ir" else None
    for kind, sol in zip(KINDS, sols):
        assert bool(sol.converged), kind
        np.testing.assert_allclose(np.asarray(sol.x), want, rtol=1e-7, err_msg=kind)
        if ref is not None:  # the preconditioner is used: the iteration count is Jacobi's, not the plain one's
            assert int(sol.iterations) == int(ref.iterations), kind


def test_preconditioner_as_a_matrix_and_operator():
    S = structure("spd", "float64")
    A, b = jnp.asarray(S.toarray()), jnp.asarray(rhs(N))
    exact = krylov.cg(A, b, preconditioner=jnp.asarray(np.linalg.inv(S.toarray())), rtol=1e-12)
    assert int(exact.iterations) == 1  # M = A^-1: one iteration
    ref = krylov.cg(A, b, preconditioner="jacobi", rtol=1e-10)
    sparse_m = krylov.cg(A, b, preconditioner=jsparse.from_scipy(np.diag(1 / S.diagonal()), "csr"), rtol=1e-10)
    assert int(sparse_m.iterations) == int(ref.iterations)
    op = krylov.cg(A, b, preconditioner=krylov.operator(lambda r: r / jnp.asarray(S.diagonal())), rtol=1e-10)
    assert int(op.iterations) == int(ref.iterations)
