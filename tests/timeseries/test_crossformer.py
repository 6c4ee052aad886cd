"""Crossformer: two-stage attention against a NumPy oracle, router pruning, segment shapes, structured shrinking."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import prune
from jaxlab import timeseries as ts

from .zoo_helpers import assert_identity_shrink, assert_residual_widths, assert_shrunk_equals_masked, half_keep
from .zoo_helpers import quick_jit, random_variables

CFG = ts.CrossformerConfig(input_len=20, horizon=10, channels=3, d_model=8, n_heads=2, d_ff=8, seg_len=6, routers=3,
                           e_layers=1)


def test_crossformer_segments_shapes_and_structured_shrink(draw):
    assert CFG.encoder_segments() == (4,) and CFG.out_segments() == 2       # 20 steps padded to 24
    assert ts.CrossformerConfig(input_len=20, seg_len=6, e_layers=3).encoder_segments() == (4, 2, 1)
    x = draw((2, 20, 3))
    model = CFG.module()
    variables = random_variables(model, x)
    apply = quick_jit(model.apply)
    assert apply(variables, x).shape == (2, 10, 3)
    p = variables["params"]
    assert p["encoder_0"]["router"].shape == (4, 3, 8) and p["decoder_0"]["tsa"]["router"].shape == (2, 3, 8)
    assert p["enc_embedding"]["position"].shape == (1, 3, 4, 8)
    assert_identity_shrink(CFG, variables)
    # heads, FFN and MLP units: shrunk == masked (routers are not maskable by zeros: tested below)
    keep = half_keep(CFG, kinds=("attention", "dim_", "mlp"), seed=5)
    assert "decoder_1/mlp" in keep and "encoder_0/dim_sender" in keep
    small_cfg, small_vars, _ = assert_shrunk_equals_masked(CFG, variables, x, keep, apply_dense=apply)
    assert small_cfg.decoder_mlp == (4, 4) and len(small_cfg.n_heads) == 3 * 1 + 4 * 2
    assert_residual_widths(small_vars, 8)


def test_two_stage_attention_matches_the_oracle_and_prunes_routers(draw):
    tsa = ts.TwoStageAttention(8, 4, 3, (2, 2, 2), 4, (6, 6))
    x = draw((2, 3, 4, 8), jnp.float64)
    v = random_variables(tsa, x)
    v = jax.tree.map(lambda a: a.astype(np.float64), v)
    p = jax.tree.map(np.asarray, v["params"])
    got = quick_jit(tsa.apply)(v, x)
    np.testing.assert_allclose(got, ts.two_stage_attention_reference(p, x, heads=(2, 2, 2), head_dim=4),
                               rtol=1e-9, atol=1e-10)
    # removing routers 0 and 2 of 3: the shrunk layer routes through router 1 only
    cfg = ts.CrossformerConfig(input_len=24, horizon=6, channels=3, d_model=8, n_heads=2, d_ff=6, seg_len=6,
                               routers=3, e_layers=1)
    groups = {g.name: g for g in cfg.dependency_groups()}
    g = groups["encoder_0/routers"]
    full = {"params": {"encoder_0": v["params"]}}
    small_cfg, small = prune.shrink(cfg, full, {g.name: np.array([1])})
    assert small_cfg.routers == (1, 3, 3) and small["params"]["encoder_0"]["router"].shape == (4, 1, 8)
    small_tsa = ts.TwoStageAttention(8, 4, 1, (2, 2, 2), 4, (6, 6))
    got = quick_jit(small_tsa.apply)({"params": small["params"]["encoder_0"]}, x)
    want = ts.two_stage_attention_reference(p, x, heads=(2, 2, 2), head_dim=4, router_keep=[1])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)
    assert not np.allclose(want, ts.two_stage_attention_reference(p, x, heads=(2, 2, 2), head_dim=4), atol=1e-3)
    # router importance: the L2 mass of each router vector
    imp = prune.group_importance(full, g)
    np.testing.assert_allclose(imp, (np.asarray(p["router"]) ** 2).sum(axis=(0, 2)), rtol=1e-12)
