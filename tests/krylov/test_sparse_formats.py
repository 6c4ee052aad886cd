"""The solvers on every jaxlab.sparse format: same answers, gradients through the values, batched values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab.sparse as jsparse
from jaxlab import krylov

from ..compile_helpers import quick_jit
from .cases import N, rhs, structure

NS = structure("nonsym", "float64")
SPD = structure("spd", "float64")
B = jnp.asarray(rhs(N))


@pytest.mark.parametrize("fmt", ["csr", "coo", "ell", "sellp", "hybrid", "dense"])
def test_every_format_solves(fmt):
    A = jsparse.from_scipy(NS, format=fmt)
    sol = quick_jit(lambda A, b: krylov.bicgstab(A, b, preconditioner="jacobi", rtol=1e-12))(A, B)
    np.testing.assert_allclose(sol.x, np.linalg.solve(NS.toarray(), np.asarray(B)), rtol=1e-9)


def test_gradient_through_sparse_values_hybrid():
    A = jsparse.from_scipy(NS, format="hybrid", ell_width=2)
    g = jax.grad(lambda d: jnp.sum(krylov.bicgstab(A.with_data(d), B, rtol=1e-12).x ** 2))(A.data)
    G = A.with_data(g).to_scipy().toarray()
    ref = quick_jit(jax.grad(lambda M: jnp.sum(jnp.linalg.solve(M, B) ** 2)))(NS.toarray())  # one program
    mask = NS.toarray() != 0
    np.testing.assert_allclose(G[mask], np.asarray(ref)[mask], rtol=1e-7, atol=1e-12)


def test_scipy_input_is_converted():
    sol = krylov.cg(SPD, B, preconditioner="ic0", rtol=1e-12)
    np.testing.assert_allclose(sol.x, np.linalg.solve(SPD.toarray(), np.asarray(B)), rtol=1e-9)


def test_batched_values_sharing_a_pattern():
    A = jsparse.from_scipy(SPD, format="csr")
    vals = jnp.stack([A.data, 3.0 * A.data])
    sol = quick_jit(jax.vmap(lambda d: krylov.cg(A.with_data(d), B, preconditioner="jacobi", rtol=1e-12)))(vals)
    assert sol.converged.tolist() == [True, True]
    np.testing.assert_allclose(sol.x[1], sol.x[0] / 3.0, rtol=1e-9)
