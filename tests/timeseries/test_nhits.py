"""N-HiTS against a NumPy forward pass; its interpolation against np.interp; pytorch-forecasting's defaults."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import timeseries as ts
from jaxlab.core import tolerances

from .zoo_helpers import quick_jit, random_variables


def test_interpolation_matches_np_interp(draw):
    knots = draw((2, 3, 5), jnp.float64)
    np.testing.assert_allclose(ts.interpolate_linear(knots, 17), ts.interpolate_linear_reference(knots, 17),
                               atol=1e-12)
    np.testing.assert_allclose(ts.interpolate_linear(knots, 5), knots, atol=1e-12)
    with pytest.raises(ValueError, match="upsamples only"):
        ts.interpolate_linear(knots, 3)


def test_default_pooling_is_pytorch_forecastings():
    # pytorch-forecasting NHiTS, prediction_length 24, 3 stacks: pooling [16, 4, 1], frequencies [24, 8, 1]
    assert ts.default_pooling(24, 3) == ((16, 4, 1), (24, 8, 1))
    assert ts.NHiTSConfig(input_len=48, horizon=24).resolved_pooling() == ((16, 4, 1), (24, 8, 1))


@pytest.mark.parametrize("future_features", [0, 2])
def test_nhits_matches_numpy(future_features, draw):
    cfg = ts.NHiTSConfig(input_len=14, horizon=6, channels=2, hidden=9, layers=2, pooling=(3, 2, 1),
                         frequencies=(3, 2, 1), future_features=future_features)
    model = cfg.module()
    x = draw((3, 14, 2))
    f = draw((3, 6, 2)) if future_features else None
    variables = random_variables(model, x, future=f)      # init's tree without compiling init
    y = quick_jit(model.apply)(variables, x, future=f)
    ref = ts.nhits_reference(variables["params"], x, horizon=6, pooling=(3, 2, 1), frequencies=(3, 2, 1),
                             layers=2, future=f)
    atol, rtol = tolerances(jnp.float32)
    assert y.shape == (3, 6, 2)
    np.testing.assert_allclose(y, ref, atol=10 * atol, rtol=rtol)


def test_nhits_dropout_needs_a_key_only_in_training(getkey):
    cfg = ts.NHiTSConfig(input_len=12, horizon=4, hidden=8, dropout=0.5, pooling=(2, 1), frequencies=(2, 1),
                         stacks=2)
    model = cfg.module()
    x = jnp.ones((2, 12, 1))
    variables = random_variables(model, x)
    apply = quick_jit(model.apply, static_argnames="deterministic")   # one compilation per mode
    a = apply(variables, x, deterministic=False, rngs={"dropout": getkey()})
    b = apply(variables, x, deterministic=False, rngs={"dropout": getkey()})
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(apply(variables, x), apply(variables, x))
