"""decompose / compose / truncate against NumPy, and the truncation rule s_i > tau s_1."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxlab.core import tolerances
from jaxlab.methods import abtrain
from jaxlab.methods.abtrain import _factors
from jaxlab.parallel import shard_map

SHAPES = [(48, 64), (3, 3, 8, 16)]  # a dense view kept as is, a conv view transposed (rows >= columns)


def _weight(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("shape", SHAPES)
def test_decompose_compose_against_numpy(shape):
    w = _weight(shape)

    @jax.jit
    def run(w):
        fs = [abtrain.decompose(w, sigma=sigma) for sigma in ("split", "a", "b")]
        outs = [abtrain.compose(f, shape) for f in fs]
        rel = jnp.stack([jnp.linalg.norm(b - w) / jnp.linalg.norm(w) for b in outs])
        return rel, outs[0], fs[0], abtrain.to_matrix(w)

    rel, back, f, view_jax = run(w)
    assert back.shape == w.shape and back.dtype == jnp.float32
    assert float(jnp.max(rel)) <= 1e-5, rel  # compose(decompose(W)) = W for every split of S
    m, n, _ = abtrain.matrix_shape(shape)
    view = np.moveaxis(np.asarray(w), -1, 0).reshape(shape[-1], -1)  # PyTorch's (out, -1)
    view = view.T if view.shape[0] < view.shape[1] else view
    np.testing.assert_array_equal(np.asarray(view_jax), view)
    assert view.shape == (m, n) and m >= n
    a_ref, b_ref = abtrain.decompose_reference(np.asarray(w))
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(np.asarray(f.a @ f.b), a_ref @ b_ref, atol=atol, rtol=rtol)
    # A = U S^1/2, B = S^1/2 V^T: A^T A = B B^T = S (whatever the SVD's signs)
    s = np.linalg.svd(view.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(np.diag(np.asarray(f.a.T @ f.a)), s, rtol=1e-4)
    np.testing.assert_allclose(np.diag(np.asarray(f.b @ f.b.T)), s, rtol=1e-4)
    assert f.a.shape == (m, n) and f.b.shape == (n, n)


def _with_spectrum(s, m=40, n=24, seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(m, len(s))))
    v, _ = np.linalg.qr(rng.normal(size=(n, len(s))))
    return (u * np.asarray(s)) @ v.T


def test_truncation_keeps_exactly_the_values_above_tau_s1():
    thr = np.float32(0.15) * np.float32(8.0)  # tau s_1 as computed in float32
    above, below = np.nextafter(thr, np.float32(2)), np.nextafter(thr, np.float32(0))
    s = jnp.asarray(np.asarray([8.0, 5.0, 2.0, above, thr, below, 0.3], np.float32))
    # the neighbours of tau s_1: only the one above it is kept; tau s_1 itself is cut
    assert int(abtrain.truncation_rank(s, 0.15)) == 4
    assert int(abtrain.truncation_rank(s, 0.0)) == 7
    assert int(abtrain.truncation_rank(jnp.zeros(5), 0.15)) == 1  # never below rank 1
    spectrum = [10.0, 7.0, 4.0, 2.2, 1.6, 1.4, 0.9, 0.2, 0.05]
    w = jnp.asarray(_with_spectrum(spectrum), jnp.float32)
    for tau in (0.15, 0.5):
        kept = abtrain.truncate(abtrain.svd(w), tau).s
        expect = [x for x in spectrum if x > tau * spectrum[0]]
        assert kept.shape == (len(expect),)
        np.testing.assert_allclose(np.asarray(kept), expect, rtol=1e-4)
        f = abtrain.decompose(w, tau=tau)
        assert f.rank == len(expect)
        a_ref, b_ref = abtrain.decompose_reference(np.asarray(w), tau=tau)
        np.testing.assert_allclose(np.asarray(f.a @ f.b), a_ref @ b_ref, atol=1e-4)


def test_truncation_rank_is_max_reduced_across_workers():
    mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
    # worker d keeps d + 1 values: the agreed rank is 8 everywhere
    s = np.stack([np.concatenate([np.full(d + 1, 10.0), np.full(9 - d, 0.1)]) for d in range(8)]).astype(np.float32)

    def local(s_block):
        return abtrain.truncation_rank(s_block[0], 0.15, axis_name="data")[None]

    out = jax.jit(shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=P("data")))(jnp.asarray(s))
    np.testing.assert_array_equal(np.asarray(out), np.full(8, 8))
    assert int(abtrain.truncation_rank(jnp.asarray(s[2]), 0.15)) == 3


def test_truncate_needs_a_rank_under_jit():
    w = _weight((16, 12))
    with pytest.raises(ValueError, match="pass rank="):
        jax.jit(lambda w: abtrain.truncate(abtrain.svd(w), 0.15).s)(w)
    out = jax.jit(lambda w: abtrain.truncate(abtrain.svd(w), rank=3).s)(w)
    assert out.shape == (3,)
    with pytest.raises(ValueError, match="tau must be in"):
        abtrain.truncation_rank(jnp.ones(3), 1.5)


def test_compression_counts_both_factors():
    assert abtrain.compression((784, 1024), 784) == pytest.approx(784 * (1024 + 784) / (1024 * 784))
    assert abtrain.compression((25088, 4096), 100) == pytest.approx(100 * (25088 + 4096) / (25088 * 4096))
    assert abtrain.compression((3, 3, 64, 128), 10) == pytest.approx(10 * (576 + 128) / (576 * 128))


def test_factors_work_under_jit_vmap_and_grad():
    w = jnp.stack([_weight((12, 10), i) for i in range(3)])
    f = jax.vmap(lambda x: abtrain.decompose(x, rank=4))(w)
    assert f.a.shape == (3, 12, 4)
    g = jax.grad(lambda a: jnp.sum(abtrain.compose(abtrain.Factors(a, f.b[0]), (12, 10)) ** 2))(f.a[0])
    np.testing.assert_allclose(np.asarray(g), np.asarray(2 * (f.a[0] @ f.b[0]) @ f.b[0].T), rtol=1e-4, atol=1e-5)


def test_docstring_examples():
    assert doctest.testmod(_factors, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0
