"""The run-time shape and dtype checks (jaxtyping + beartype, installed by tests/conftest.py) refuse bad input.

Each case is input that the checks refuse before our own validation runs: without the hook, these calls raise our
ValueError/TypeError (or nothing), never ``jaxtyping.TypeCheckError``.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import jaxlab.sparse as jsparse
from jaxlab import krylov

pytestmark = pytest.mark.skipif(os.environ.get("JAXLAB_TYPECHECK", "1") == "0",
                                reason="run-time type checks turned off (JAXLAB_TYPECHECK=0)")

N = 9
A = jsparse.from_scipy(jsparse.poisson2d(3))
B = jnp.ones(N)


def test_spmv_refuses_rank_and_dtype_and_checks_the_result_shape():
    with pytest.raises(TypeCheckError, match="x"):
        jsparse.spmv(A, jnp.ones((N, 2, 2)))  # neither (n,) nor (n, k)
    with pytest.raises(TypeCheckError, match="x"):
        jsparse.spmv(A, jnp.ones(N, jnp.int32))  # not inexact
    with pytest.raises(TypeCheckError):
        jax.jit(lambda x: jsparse.spmv(A, x))(jnp.ones((N, 1, 1)))  # refused while tracing, too
    assert jsparse.spmv(A, jnp.ones((N, 3))).shape == (N, 3)  # (n, k) -> (m, k) passes
    assert jax.vmap(lambda x: jsparse.spmv(A, x))(jnp.ones((2, N))).shape == (2, N)


def test_solve_ties_x0_to_b_and_refuses_rank_and_dtype():
    with pytest.raises(TypeCheckError, match="x0"):
        krylov.solve(A, B, "cg", x0=jnp.ones(N - 1))  # n of x0 differs from n of b
    with pytest.raises(TypeCheckError, match="x0"):
        krylov.cg(A, jnp.ones((N, 2)), x0=jnp.ones((N, 3)))  # k differs
    with pytest.raises(TypeCheckError, match="b"):
        krylov.solve(A, jnp.ones((N, 2, 2)), "cg")
    with pytest.raises(TypeCheckError, match="b"):
        krylov.gmres(A, np.ones(N, np.int64))


def test_preconditioners_check_their_fields_and_their_result():
    with pytest.raises(TypeCheckError):
        krylov.Jacobi(jnp.ones((N, 1)))  # inv_diag must be (n,)
    with pytest.raises(TypeCheckError):
        krylov.DensePreconditioner(jnp.ones((N, N - 1)))  # matrix must be square
    with pytest.raises(TypeCheckError):
        krylov.jacobi(A)(jnp.ones((N, 2)))  # applied to one vector at a time
    bad = krylov.FunctionPreconditioner(lambda r: r[:-1])  # returns a vector of the wrong length
    with pytest.raises(TypeCheckError):
        bad(B)
    with pytest.raises(TypeCheckError):
        jax.jit(lambda b: krylov.solve(A, b, "cg", bad).x)(B)
