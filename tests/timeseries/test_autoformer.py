"""Autoformer: auto-correlation against a direct O(L^2) computation, decomposition against a moving average."""

from functools import partial

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d

from jaxlab import timeseries as ts

from .zoo_helpers import assert_identity_shrink, assert_residual_widths, assert_shrunk_equals_masked, half_keep
from .zoo_helpers import quick_jit, random_variables


def auto_correlation_reference(q, k, v, factor):
    """Direct O(L^2) loops: R(tau) = sum_t q[(t + tau) % L] k[t], per-head top delays, rolled values."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, length, h, e = q.shape
    s = k.shape[1]
    if length > s:
        k = np.concatenate([k, np.zeros((b, length - s, h, e))], 1)
        v = np.concatenate([v, np.zeros((b, length - s, h, e))], 1)
    else:
        k, v = k[:, :length], v[:, :length]
    top = ts.correlation_topk(length, factor)
    out = np.zeros_like(q)
    for bi in range(b):
        for hi in range(h):
            corr = np.array([sum(q[bi, (t + tau) % length, hi] @ k[bi, t, hi] for t in range(length)) / e
                             for tau in range(length)])
            delays = np.argsort(-corr, kind="stable")[:top]
            w = np.exp(corr[delays] - corr[delays].max())
            w /= w.sum()
            for wi, tau in zip(w, delays):
                out[bi, :, hi] += wi * np.roll(v[bi, :, hi], -tau, axis=0)
    return out


@pytest.mark.parametrize("s_len", [13, 9, 16])   # keys as long as, shorter than (padded), longer than (cut) the queries
def test_auto_correlation_matches_the_direct_computation(s_len, draw):
    q = draw((2, 13, 2, 3), jnp.float64)
    k, v = (draw((2, s_len, 2, 3), jnp.float64) for _ in range(2))
    got = quick_jit(partial(ts.auto_correlation, factor=2))(q, k, v)
    np.testing.assert_allclose(got, auto_correlation_reference(q, k, v, 2), rtol=1e-9, atol=1e-10)
    assert ts.correlation_topk(13, 2) == 5


def test_series_decomposition_is_a_replicated_moving_average(draw):
    x = draw((2, 30, 4), jnp.float64)
    # and DLinear's (cumulative-sum) moving average, in the same compilation
    (seasonal, trend), dlinear = quick_jit(lambda x: (ts.series_decomposition(x, 7), jnp.swapaxes(
        ts.moving_average(jnp.swapaxes(x, 1, 2), 7), 1, 2)))(x)
    np.testing.assert_allclose(trend, uniform_filter1d(np.asarray(x), 7, axis=1, mode="nearest"), rtol=1e-12)
    np.testing.assert_allclose(seasonal + trend, x, rtol=1e-12)
    np.testing.assert_allclose(trend, dlinear, rtol=1e-10)
    with pytest.raises(ValueError, match="odd"):
        ts.series_decomposition(x, 6)


def test_autoformer_shapes_and_structured_shrink(draw):
    cfg = ts.AutoformerConfig(input_len=16, horizon=8, label_len=8, channels=2, d_model=8, n_heads=2, d_ff=8,
                              moving_avg=5, factor=1)
    x = draw((2, 16, 2))
    model = cfg.module()
    variables = random_variables(model, x)
    apply = quick_jit(model.apply)
    assert apply(variables, x).shape == (2, 8, 2)
    # the decoder starts from the history's trend and mean
    seasonal, trend = ts._autoformer.decoder_init(x, 8, 8, 5)
    np.testing.assert_allclose(trend[:, 8:], jnp.broadcast_to(x.mean(1, keepdims=True), (2, 8, 2)), rtol=1e-6)
    np.testing.assert_array_equal(seasonal[:, 8:], 0.0)
    assert_identity_shrink(cfg, variables)
    keep = half_keep(cfg, seed=3)
    small_cfg, small_vars, _ = assert_shrunk_equals_masked(cfg, variables, x, keep, apply_dense=apply)
    assert small_cfg.n_heads == (1, 1, 1, 1) and small_cfg.d_ff == (4, 4, 4)
    assert_residual_widths(small_vars, 8)
