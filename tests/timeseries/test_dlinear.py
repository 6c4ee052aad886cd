"""DLinear against a plain NumPy computation of trend/remainder linear maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import timeseries as ts
from jaxlab.core import tolerances


@pytest.mark.parametrize("individual", [False, True])
def test_dlinear_matches_numpy(individual, getkey):
    cfg = ts.DLinearConfig(input_len=12, horizon=4, channels=3, kernel=5, individual=individual)
    model, variables = ts.make_forecaster(cfg, key=getkey())
    x = jax.random.normal(getkey(), (2, 12, 3), jnp.float32)
    p = jax.tree.map(np.asarray, variables["params"])
    s = np.swapaxes(np.asarray(x), 1, 2)
    trend = ts.moving_average_reference(s, 5)
    if individual:
        ref = sum(np.einsum("bcl,clh->bch", part, p[f"{n}_kernel"]) + p[f"{n}_bias"]
                  for n, part in (("trend", trend), ("season", s - trend)))
    else:
        ref = sum(part @ p[n]["kernel"] + p[n]["bias"] for n, part in (("trend", trend), ("season", s - trend)))
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(jax.jit(model.apply)(variables, x), np.swapaxes(ref, 1, 2), atol=atol, rtol=rtol)


def test_moving_average_matches_loop_and_refuses_even_kernels(getkey):
    x = jax.random.normal(getkey(), (3, 20))
    np.testing.assert_allclose(ts.moving_average(x, 7), ts.moving_average_reference(np.asarray(x), 7), rtol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        ts.moving_average(x, 4)
