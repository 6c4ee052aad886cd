"""Batched LAPACK calls under vmap run one after another, not side by side (see tests/two_cpus.py): one solve per
leaf in projection_per_leaf, one QR per group of the orthonormal sampler. Both scripts run in one process."""

from tests.two_cpus import needs_two_cpus, run_each_on_two_cpus

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


_ORTHONORMAL = """
    import jax, jax.numpy as jnp, numpy as np
    from jaxlab.fwdgrad import sample_tangents
    params = {"w": jnp.zeros((32,)), "b": jnp.zeros((32,))}  # n = 64: k = 192 tangents are 3 QR groups
    f = jax.jit(jax.vmap(lambda key: sample_tangents(key, params, 192, sampler="orthonormal")))
    keys = jax.random.split(jax.random.key(0), 512)
    for _ in range(10):
        t = f(keys)
    flat = np.concatenate([np.asarray(t["b"][0]), np.asarray(t["w"][0])], axis=1)  # (192, 64) of one sample
    for g in range(3):  # each group orthonormal
        np.testing.assert_allclose(flat[64 * g:64 * (g + 1)] @ flat[64 * g:64 * (g + 1)].T, np.eye(64), atol=1e-4)
    print("done")
"""


@needs_two_cpus
def test_per_leaf_projection_and_orthonormal_groups_under_vmap_do_not_deadlock_on_two_cpus():
    """Without the ordering, the three leaves' batched LU kernels ran side by side and hung, and so did the QRs of
    the k > n orthonormal tangents' groups (jaxlib 0.10.2)."""
    out = run_each_on_two_cpus({"vmap of projection_per_leaf (3 leaves, batch 512, k = n = 64)":
                                _PER_LEAF.replace("ROUNDS", "10"),
                                "vmap of the orthonormal sampler (3 QR groups, batch 512)": _ORTHONORMAL}, timeout=90)
    assert all("done" in o for o in out.values()), out
