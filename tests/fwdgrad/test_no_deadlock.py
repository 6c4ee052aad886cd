"""Batched LAPACK calls run one after another, not side by side (see tests/two_cpus.py): one solve per leaf in
projection_per_leaf, one QR per group of the orthonormal sampler (both under vmap), and the batches of the
approximation experiment's sample loop (jaxlab/methods/fwdgrad/_serial.py). The three scripts run in one process
(one interpreter and JAX start)."""

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


_APPROXIMATION_CELL = """
    import jax, numpy as np
    from jaxlab.methods.fwdgrad import ApproximationConfig
    from jaxlab.methods.fwdgrad._approximation import _metrics_fn
    # n = 128, k = 64, 1000 samples: batches of 512 (+ a remainder of 488 with jax.lax.map): the cell where
    # `jaxlab run configs/fwdgrad/approximation.py` hung.
    f = _metrics_fn(128, 64, ApproximationConfig(samples=1000))
    keys = jax.random.split(jax.random.key(0), 1000)
    for _ in range(3):
        m = np.asarray(f(keys)["projection"])
    assert m.shape == (1000, 3) and np.isfinite(m).all()
    print("done")
"""


@needs_two_cpus
def test_forward_gradients_do_not_deadlock_on_two_cpus():
    """On 2 CPUs XLA's intra-op pool has 2 threads; two batched LAPACK kernels side by side block both for good.

    Without the ordering, the three leaves' batched LU kernels of projection_per_leaf ran side by side and hung,
    and so did the QRs of the k > n orthonormal tangents' groups; the approximation experiment's old
    ``jax.lax.map(one, keys, batch_size=512)`` over 1000 samples hung on its first call (0 CPU). All with
    jaxlib 0.10.2; with the ordering, ``map_in_batches`` and ``key_after`` the three scripts take a few seconds.
    """
    out = run_each_on_two_cpus({"vmap of projection_per_leaf (3 leaves, batch 512, k = n = 64)":
                                _PER_LEAF.replace("ROUNDS", "10"),
                                "vmap of the orthonormal sampler (3 QR groups, batch 512)": _ORTHONORMAL,
                                "the approximation cell (n=128, k=64, 1000 samples)": _APPROXIMATION_CELL},
                               timeout=180)
    assert all("done" in o for o in out.values()), out
