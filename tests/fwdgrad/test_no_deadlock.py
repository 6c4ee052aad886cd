"""projection_per_leaf under vmap: one batched solve per leaf, run one after another (see tests/two_cpus.py)."""

from tests.two_cpus import needs_two_cpus, run_on_two_cpus

_PER_LEAF = """
    import jax, numpy as np
    from jaxlab.fwdgrad._aggregations import aggregation_coefficients
    k, n = 64, 64

    def coefficients(v, d):  # three leaves' Gram matrices, one set of directional derivatives
        return aggregation_coefficients(d, "projection_per_leaf", leaf_grams=[x @ x.T for x in v],
                                        leaf_sizes=[n, n, n])

    rng = np.random.default_rng(0)
    v = rng.standard_normal((512, 3, k, n)).astype(np.float32)
    d = rng.standard_normal((512, k)).astype(np.float32)
    f = jax.jit(jax.vmap(coefficients))
    for _ in range(ROUNDS):
        c = np.asarray(f(v, d))
    # each leaf's coefficients solve its own Gram system: G c = d
    g = np.einsum("bkn,bjn->bkj", v[:4, 1].astype(np.float64), v[:4, 1].astype(np.float64))
    np.testing.assert_allclose(np.einsum("bkj,bj->bk", g, c[:4, 1]), d[:4], rtol=2e-2, atol=2e-2)
    print("done")
"""


@needs_two_cpus
def test_per_leaf_projection_under_vmap_does_not_deadlock_on_two_cpus():
    """Without the ordering, the three leaves' batched LU kernels ran side by side and hung (jaxlib 0.10.2)."""
    out = run_on_two_cpus(_PER_LEAF.replace("ROUNDS", "10"), timeout=60,
                          what="vmap of projection_per_leaf (3 leaves, batch 512, k = n = 64)")
    assert "done" in out
