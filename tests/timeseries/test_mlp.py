"""The MLP forecaster against the same dense layers in NumPy, with and without horizon covariates."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import timeseries as ts
from jaxlab.core import tolerances

from .zoo_helpers import quick_jit, random_variables


@pytest.mark.parametrize("future_features", [0, 3])
def test_mlp_forecaster_matches_numpy(future_features, getkey, draw):
    cfg = ts.MLPForecasterConfig(input_len=8, horizon=4, channels=2, hidden=(5, 7), activation="tanh",
                                 future_features=future_features)
    model, variables = ts.make_forecaster(cfg, key=getkey())
    x = draw((3, 8, 2))
    kw = {}
    h = np.asarray(x).reshape(3, -1)
    if future_features:
        f = draw((3, 4, future_features))
        kw["future"] = f
        h = np.concatenate([h, np.asarray(f).reshape(3, -1)], -1)
    p = variables["params"]["MLP_0"]
    for i in range(3):
        h = h @ np.asarray(p[f"dense_{i}"]["kernel"]) + np.asarray(p[f"dense_{i}"]["bias"])
        if i < 2:
            h = np.tanh(h)
    atol, rtol = tolerances(jnp.float32)
    y = quick_jit(model.apply)(variables, x, **kw)
    assert y.shape == (3, 4, 2)
    np.testing.assert_allclose(y, h.reshape(3, 4, 2), atol=atol, rtol=rtol)


def test_mlp_forecaster_checks_the_covariates():
    cfg = ts.MLPForecasterConfig(input_len=8, horizon=4, future_features=2)
    model = cfg.module()
    variables = random_variables(model, jnp.ones((1, 8, 1)), future=jnp.ones((1, 4, 2)))
    with pytest.raises(ValueError, match=r"\(B, 4, 2\)"):
        model.apply(variables, jnp.ones((1, 8, 1)))
    plain = ts.MLPForecasterConfig(input_len=8, horizon=4).module()
    pv = random_variables(plain, jnp.ones((1, 8, 1)))
    with pytest.raises(ValueError, match="set future_features"):
        plain.apply(pv, jnp.ones((1, 8, 1)), future=jnp.ones((1, 4, 2)))
