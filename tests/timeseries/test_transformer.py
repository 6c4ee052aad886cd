"""The vanilla Transformer forecaster: full attention against jax.nn, shapes, structured shrinking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import timeseries as ts
from jaxlab.core import tolerances

from .zoo_helpers import assert_identity_shrink, assert_residual_widths, assert_shrunk_equals_masked, half_keep
from .zoo_helpers import quick_jit, random_variables

CFG = ts.TransformerConfig(input_len=12, horizon=6, label_len=4, channels=3, d_model=8, n_heads=2, d_ff=8,
                           time_features=4)


@pytest.mark.parametrize("causal", [False, True])
def test_full_attention_matches_jax_nn(causal, draw):
    q, k, v = (draw((2, 7, 3, 4)) for _ in range(3))
    got, want = quick_jit(lambda q, k, v: (ts.full_attention(q, k, v, causal=causal),
                                           jax.nn.dot_product_attention(q, k, v, is_causal=causal)))(q, k, v)
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)


def test_transformer_shapes_and_structured_shrink(draw):
    x = draw((2, 12, 3))
    marks = draw((2, 12, 4))
    future = draw((2, 6, 4))
    model = CFG.module()
    variables = random_variables(model, x)
    apply = quick_jit(model.apply)
    y = apply(variables, x, marks, future)
    assert y.shape == (2, 6, 3)
    # the time features enter (zero features add nothing: the map has no bias)
    y_zero = apply(variables, x, jnp.zeros_like(marks), jnp.zeros_like(future))
    assert not np.allclose(y_zero, y)
    # decoder causality: the zeros after the label part are the only future input
    np.testing.assert_array_equal(ts._transformer.decoder_input(x, 4, 6)[:, :4], x[:, -4:])
    assert_identity_shrink(CFG, variables)
    keep = half_keep(CFG, seed=1)
    small_cfg, small_vars, _ = assert_shrunk_equals_masked(CFG, variables, (x, marks, future), keep,
                                                           apply_dense=apply)
    assert small_cfg.n_heads == (1, 1, 1, 1) and small_cfg.d_ff == (4, 4, 4) and small_cfg.head_dim == 4
    assert_residual_widths(small_vars, CFG.d_model)
    assert small_vars["params"]["encoder_0"]["attention"]["query"]["kernel"].shape == (8, 4)
    assert small_vars["params"]["decoder_0"]["ffn"]["conv2"]["kernel"].shape == (4, 8)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="n_heads has 2 entries"):
        ts.TransformerConfig(n_heads=(2, 2), head_dim=4).module()
    with pytest.raises(ValueError, match="not divisible"):
        ts.TransformerConfig(d_model=10, n_heads=4).module()
    with pytest.raises(ValueError, match="label_len"):
        ts.TransformerConfig(input_len=8, label_len=9).module()
