"""DLinear against a plain NumPy computation of trend/remainder linear maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import timeseries as ts
from jaxlab.core import tolerances

from .zoo_helpers import quick_jit


@pytest.mark.parametrize("individual", [False, True])
def test_dlinear_matches_numpy(individual, getkey, draw):
    cfg = ts.DLinearConfig(input_len=12, horizon=4, channels=3, kernel=5, individual=individual)
    model, variables = ts.make_forecaster(cfg, key=getkey())
    x = draw((2, 12, 3))
    p = jax.tree.map(np.asarray, variables["params"])
    s = np.swapaxes(np.asarray(x), 1, 2)
    trend = ts.moving_average_reference(s, 5)
    if individual:
        ref = sum(np.einsum("bcl,clh->bch", part, p[f"{n}_kernel"]) + p[f"{n}_bias"]
                  for n, part in (("trend", trend), ("season", s - trend)))
    else:
        ref = sum(part @ p[n]["kernel"] + p[n]["bias"] for n, part in (("trend", trend), ("season", s - trend)))
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(quick_jit(model.apply)(variables, x), np.swapaxes(ref, 1, 2), atol=atol, rtol=rtol)


def test_moving_average_matches_loop_and_refuses_even_kernels(draw):
    x = draw((3, 20), jnp.float64)
    got = quick_jit(ts.moving_average, static_argnums=1)(x, 7)
    np.testing.assert_allclose(got, ts.moving_average_reference(np.asarray(x), 7), rtol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        ts.moving_average(x, 4)
