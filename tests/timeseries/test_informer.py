"""Informer: ProbSparse attention against full attention, the distilling layer, structured shrinking."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import prune
from jaxlab import timeseries as ts
from jaxlab.core import tolerances

from .zoo_helpers import assert_identity_shrink, assert_residual_widths, assert_shrunk_equals_masked, half_keep
from .zoo_helpers import quick_jit, random_variables


@pytest.mark.parametrize("causal", [False, True])
def test_probsparse_equals_full_attention_when_every_query_is_active(causal, getkey, draw):
    q, k, v = (draw((2, 9, 3, 4)) for _ in range(3))
    assert ts.prob_sizes(9, 9, 5) == (9, 9)                   # u = min(5 ceil(ln 9), 9) = L
    got = quick_jit(partial(ts.prob_attention, factor=5, causal=causal))(q, k, v, key=getkey())
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(got, ts.full_attention(q, k, v, causal=causal), atol=atol, rtol=rtol)


@pytest.mark.parametrize("causal", [False, True])
def test_probsparse_lazy_queries_get_the_mean_of_the_visible_values(causal, getkey, draw):
    q, k, v = (draw((2, 20, 2, 4)) for _ in range(3))
    u, big_u = ts.prob_sizes(20, 20, 1)
    assert (u, big_u) == (3, 3)
    attend = quick_jit(partial(ts.prob_attention, factor=1, causal=causal))
    got = np.asarray(attend(q, k, v, key=getkey()))
    full = np.asarray(ts.full_attention(q, k, v, causal=causal))
    vn = np.asarray(v)
    lazy = (np.cumsum(vn, 1) / np.arange(1, 21)[None, :, None, None]) if causal else np.broadcast_to(
        vn.mean(1, keepdims=True), vn.shape)
    active = np.all(np.isclose(got, full, atol=1e-5), axis=-1)   # (B, L, H)
    passive = np.all(np.isclose(got, lazy, atol=1e-5), axis=-1)
    assert np.all(active | passive)
    # exactly u active queries per batch entry and head (query 0 is both under the causal mask)
    counts = (active & ~passive).sum(axis=1)
    assert np.all(counts <= u) and np.all(counts >= u - (1 if causal else 0))
    # the sampled keys come from the key
    again = np.asarray(attend(q, k, v, key=jax.random.key(123)))
    other = [np.asarray(attend(q, k, v, key=jax.random.key(s))) for s in range(3)]
    assert any(not np.allclose(o, again) for o in other)


def test_informer_distils_and_shrinks_exactly(draw):
    cfg = ts.InformerConfig(input_len=16, horizon=6, label_len=6, channels=2, d_model=8, n_heads=2, d_ff=8,
                            e_layers=2, factor=1)
    assert cfg.encoder_lengths() == (16, 9)
    assert ts.InformerConfig(input_len=16, e_layers=3).encoder_lengths() == (16, 9, 6)
    x = draw((3, 16, 2))
    model = cfg.module()
    variables = random_variables(model, x)
    apply = quick_jit(model.apply)
    y = apply(variables, x)
    assert y.shape == (3, 6, 2)
    np.testing.assert_array_equal(y, apply(variables, x))          # no "sample" stream: a fixed key
    d = ts._informer.Distil(8)
    h = jax.ShapeDtypeStruct((2, 16, 8), jnp.float32)
    assert jax.eval_shape(d.apply, random_variables(d, h), h).shape == (2, ts._informer.distilled_length(16), 8)
    assert_identity_shrink(cfg, variables)
    keep = half_keep(cfg, seed=2)
    assert {"distil_0/channels", "encoder_1/heads", "decoder_0/ffn"} <= set(keep)
    small_cfg, small_vars, _ = assert_shrunk_equals_masked(cfg, variables, x, keep, apply_dense=apply)
    assert small_cfg.distil_index[0] == tuple(int(i) for i in keep["distil_0/channels"])
    assert small_vars["params"]["distil_0"]["conv"]["kernel"].shape == (3, 8, 4)
    assert small_vars["batch_stats"]["distil_0"]["norm"]["mean"].shape == (4,)
    assert_residual_widths(small_vars, 8)
    # shrinking a shrunk distilling layer composes the channel indices
    twice_cfg, _ = prune.shrink(small_cfg, small_vars, {"distil_0/channels": np.array([1, 3])})
    assert twice_cfg.distil_index[0] == tuple(int(i) for i in keep["distil_0/channels"][[1, 3]])
