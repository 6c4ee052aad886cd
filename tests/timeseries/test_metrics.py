"""Forecast metrics against closed forms and loop oracles."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxlab import timeseries as ts

from .zoo_helpers import quick_jit


def test_pinball_matches_the_loop_oracle_and_half_mae(draw):
    f = draw((4, 6, 3), jnp.float64)
    y = draw((4, 6), jnp.float64)
    qs = [0.1, 0.5, 0.9]
    # the metrics run inside jit (one compilation each here; eagerly, every jnp op compiles on its own)
    pinball = quick_jit(ts.pinball, static_argnums=2)
    np.testing.assert_allclose(pinball(f, y, (0.1, 0.5, 0.9)), ts.pinball_reference(f, y, qs), rtol=1e-12)
    np.testing.assert_allclose(pinball(f[..., 1:2], y, (0.5,)), 0.5 * quick_jit(ts.mae)(f[..., 1], y), rtol=1e-12)


def test_crps_of_normal_samples_approaches_the_closed_form(draw):
    mu, sigma = 0.7, 1.3
    y = jnp.array([-1.0, 0.2, 0.9, 3.0])
    samples = mu + sigma * draw((4, 20000), jnp.float64)
    closed = scipy.stats.norm  # CRPS(N(mu, s), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]
    z = (np.asarray(y) - mu) / sigma
    expect = np.mean(sigma * (z * (2 * closed.cdf(z) - 1) + 2 * closed.pdf(z) - 1 / np.sqrt(np.pi)))
    crps = quick_jit(ts.crps)
    assert abs(float(crps(samples, y)) - expect) < 0.01
    # a point mass is the absolute error
    np.testing.assert_allclose(crps(np.repeat(np.asarray(y)[:, None] + 0.5, 5, axis=1), y), 0.5, rtol=1e-12)


def test_crps_quantile_is_twice_the_mean_pinball(draw):
    qs = jnp.array([0.1, 0.3, 0.5, 0.7, 0.9])
    f = jnp.sort(draw((10, 5), jnp.float64), axis=-1)
    y = draw((10,), jnp.float64)
    # crps_quantile runs eagerly (scoringrules checks the levels in Python); pinball inside jit
    np.testing.assert_allclose(ts.crps_quantile(f, y, qs), 2 * quick_jit(ts.pinball)(f, y, qs), rtol=1e-10)


def test_point_errors_and_intervals():
    f, y = jnp.array([1.0, 2.0, 4.0]), jnp.array([2.0, 2.0, 2.0])

    @quick_jit
    def metrics(f, y):
        return (ts.mae(f, y), ts.mse(f, y), ts.mape(f, y), ts.mase(f, y, jnp.full_like(y, 4.0)),
                ts.interval_coverage(f - 1, f + 1, y), ts.interval_width(f - 1, f + 1))

    mae, mse, mape, mase, coverage, width = (float(m) for m in metrics(f, y))
    assert mae == 1.0 and mse == pytest.approx(5 / 3)
    assert mape == pytest.approx(50.0)
    assert mase == pytest.approx(0.5)
    assert coverage == pytest.approx(2 / 3)
    assert width == 2.0


@dataclasses.dataclass(frozen=True)
class _Linear:
    input_len: int = 8
    horizon: int = 3
    channels: int = 2

    def module(self):
        h = self.horizon

        class M(nn.Module):
            @nn.compact
            def __call__(self, x):
                return nn.Dense(h)(x.transpose(0, 2, 1)).transpose(0, 2, 1)

        return M()


@dataclasses.dataclass(frozen=True)
class _Counted(_Linear):
    """``_Linear`` that counts the modules it builds and the traces of their forward pass."""

    def module(self):
        _COUNTS["modules"] += 1
        h = self.horizon

        class Counted(nn.Module):
            @nn.compact
            def __call__(self, x):
                _COUNTS["traces"] += 1
                return nn.Dense(h)(x.transpose(0, 2, 1)).transpose(0, 2, 1)

        return Counted()


_COUNTS = {"modules": 0, "traces": 0}


def test_make_forecaster_builds_and_compiles_once_per_config(getkey):
    # a fresh jax.jit(model.init) per call traced and compiled again each time (tsprune: one per cell)
    cfg = _Counted(channels=3)
    k1, k2 = getkey(), getkey()
    model, v1 = ts.make_forecaster(cfg, key=k1)
    model_again, v2 = ts.make_forecaster(_Counted(channels=3), key=k2)   # an equal config
    assert model_again is model and _COUNTS == {"modules": 1, "traces": 1}
    for key, got in ((k1, v1), (k2, v2)):   # the same variables as flax's own init, per key
        want = model.init(key, jnp.zeros((1, 8, 3)))
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v2)))  # keys matter


def test_make_forecaster_gives_the_interface_shapes(getkey):
    model, params = ts.make_forecaster(_Linear(), key=getkey())
    assert quick_jit(model.apply)(params, jnp.zeros((5, 8, 2))).shape == (5, 3, 2)
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        ts.make_forecaster(_Linear(horizon=0), key=getkey())
