"""The projection's choice of n of k > n tangents: ``selection="pivoted"`` against a SciPy least-squares oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import fwdgrad
from jaxlab.fwdgrad._pivoted import pivoted_cholesky, projection_reference

from ..compile_helpers import quick_jit

pytestmark = pytest.mark.usefixtures("quick_compiles")


def _projection(V, g, selection):
    """The global projection of ``g`` from tangents ``V`` (k, n): ``sum_i c_i v_i`` with ``d = V g``."""
    return fwdgrad.aggregate({"w": V}, V @ g, "projection", selection=selection)["w"]


def _nearly_dependent(rng, samples, n=4, k=10, gap=3e-4):
    """Tangents (samples, k, n) whose first n are nearly dependent (v_n = v_1 + gap * noise), the rest random."""
    V = rng.standard_normal((samples, k, n))
    V[:, n - 1] = V[:, 0] + gap * rng.standard_normal((samples, n))
    return V


def _rel_err(est, ref):
    return np.linalg.norm(np.asarray(est, np.float64) - ref, axis=-1) / np.linalg.norm(ref, axis=-1)


def test_pivoted_selection_matches_lstsq_on_nearly_dependent_float32_tangents_where_first_n_does_not():
    rng = np.random.default_rng(0)
    V, g = _nearly_dependent(rng, 8), rng.standard_normal((8, 4))
    ref = np.stack([projection_reference(v, v @ x) for v, x in zip(V, g)])  # = g: the k tangents span R^n
    np.testing.assert_allclose(ref, g, rtol=1e-10)
    V32, g32 = V.astype(np.float32), g.astype(np.float32)
    est = {s: quick_jit(jax.vmap(lambda v, x, s=s: _projection(v, x, s)))(V32, g32) for s in ("first_n", "pivoted")}
    err_first, err_pivoted = _rel_err(est["first_n"], ref), _rel_err(est["pivoted"], ref)
    assert err_pivoted.max() < 1e-4, err_pivoted
    # The first n are kept (and shortened by the ridge): errors of several percent.
    assert np.median(err_first) > 1e-2 and np.all(err_first > 100 * err_pivoted), (err_first, err_pivoted)


def test_pivoted_selection_under_jit_vmap_and_lax_map_in_float32_and_float64():
    rng = np.random.default_rng(1)
    V, g = _nearly_dependent(rng, 3), rng.standard_normal((3, 4))
    ref = np.stack([projection_reference(v, v @ x) for v, x in zip(V, g)])
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        Vd, gd = V.astype(dtype), g.astype(dtype)

        @quick_jit
        def both(Vd, gd):
            f = lambda vx: _projection(vx[0], vx[1], "pivoted")  # noqa: E731
            return jax.vmap(f)((Vd, gd)), jax.lax.map(f, (Vd, gd))

        by_vmap, by_map = both(Vd, gd)
        assert by_vmap.dtype == dtype and by_map.dtype == dtype
        np.testing.assert_allclose(by_vmap, ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(by_map, by_vmap, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pivoted_factorisation_stops_cleanly_on_a_rank_deficient_gram(dtype):
    # k = 10 tangents in R^6 that span only 3 dimensions: the projection onto that span, no NaN.
    rng = np.random.default_rng(2)
    V = rng.standard_normal((10, 3)) @ rng.standard_normal((3, 6))
    g = rng.standard_normal(6)
    ref = projection_reference(V, V @ g)  # the minimum-norm least-squares fit: P_span(V) g, not g
    assert np.linalg.norm(ref - g) > 0.1 * np.linalg.norm(g)
    Vd, gd = V.astype(dtype), g.astype(dtype)
    idx, factor, valid = quick_jit(pivoted_cholesky, static_argnums=1)(Vd @ Vd.T, 6)
    assert valid.tolist() == [True] * 3 + [False] * 3 and len(set(idx.tolist())) == 6
    assert np.all(np.isfinite(factor)) and np.all(np.asarray(factor)[3:] == 0)
    np.testing.assert_allclose(factor[:3] @ factor[:3].T, (Vd @ Vd.T)[np.ix_(idx[:3], idx[:3])], rtol=1e-5)
    zero = np.zeros_like(Vd)  # no independent tangent at all: zero coefficients
    both = quick_jit(lambda v, x, z: (_projection(v, x, "pivoted"), _projection(z, x, "pivoted")))
    est, est_zero = both(Vd, gd, zero)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(est, ref, rtol=tol, atol=tol)
    np.testing.assert_array_equal(est_zero, np.zeros(6))


def test_default_projection_per_sample_cosine_is_never_below_the_means_at_n2_k16():
    # The approximation experiment's cell (n = 2, k = 16, float32, normal tangents): with the first n tangents
    # kept, a few of these samples have a projection worse than the plain mean (nearly parallel first two).
    n, k, g = 2, 16, jnp.ones(2, jnp.float32)

    def cosines(key):
        out = []
        for aggregation, selection in (("mean", None), ("projection", "first_n"), ("projection", None)):
            est, _ = fwdgrad.forward_gradient(lambda w: jnp.dot(g, w), jnp.zeros(n, jnp.float32), key=key,
                                              num_tangents=k, aggregation=aggregation, selection=selection,
                                              mode="simulated")
            out.append(jnp.dot(est, g) / (jnp.linalg.norm(est) * jnp.linalg.norm(g)))
        return jnp.stack(out)

    cos = np.asarray(quick_jit(jax.vmap(cosines))(jax.random.split(jax.random.key(0), 2000)))
    mean, first_n, default = cos.T
    assert np.any(first_n < mean - 1e-3)  # the hard samples are in the set
    assert np.all(default >= mean - 1e-6) and default.min() > 1 - 1e-5


def test_unknown_selection_is_named():
    with pytest.raises(ValueError, match="'pivot'.*pivoted"):
        fwdgrad.aggregate({"w": jnp.eye(2)}, jnp.ones(2), "projection", selection="pivot")


def test_pivoted_projection_makes_no_lapack_call_that_could_run_beside_another():
    # Batched LAPACK kernels side by side deadlock XLA CPU's 2-thread pool (jaxlib 0.10.2, tests/two_cpus.py):
    # the pivoted path is loops of vector operations, while the first_n path's solve is a LAPACK custom call.
    V, g = np.ones((4, 10, 3), np.float32), np.ones((4, 3), np.float32)
    text = {s: jax.jit(jax.vmap(lambda v, x, s=s: _projection(v, x, s))).lower(V, g).as_text()
            for s in ("first_n", "pivoted")}
    assert "custom_call" in text["first_n"] and "custom_call" not in text["pivoted"]
