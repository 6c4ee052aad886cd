"""Forecast metrics against closed forms and loop oracles."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxlab import timeseries as ts


def test_pinball_matches_the_loop_oracle_and_half_mae(getkey):
    f = jax.random.normal(getkey(), (4, 6, 3))
    y = jax.random.normal(getkey(), (4, 6))
    qs = [0.1, 0.5, 0.9]
    np.testing.assert_allclose(ts.pinball(f, y, qs), ts.pinball_reference(f, y, qs), rtol=1e-12)
    np.testing.assert_allclose(ts.pinball(f[..., 1:2], y, [0.5]), 0.5 * ts.mae(f[..., 1], y), rtol=1e-12)


def test_crps_of_normal_samples_approaches_the_closed_form(getkey):
    mu, sigma = 0.7, 1.3
    y = jnp.array([-1.0, 0.2, 0.9, 3.0])
    samples = mu + sigma * jax.random.normal(getkey(), (4, 20000))
    closed = scipy.stats.norm  # CRPS(N(mu, s), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]
    z = (np.asarray(y) - mu) / sigma
    expect = np.mean(sigma * (z * (2 * closed.cdf(z) - 1) + 2 * closed.pdf(z) - 1 / np.sqrt(np.pi)))
    assert abs(float(ts.crps(samples, y)) - expect) < 0.01
    # a point mass is the absolute error
    np.testing.assert_allclose(ts.crps(jnp.repeat(y[:, None] + 0.5, 5, axis=1), y), 0.5, rtol=1e-12)


def test_crps_quantile_is_twice_the_mean_pinball(getkey):
    qs = jnp.array([0.1, 0.3, 0.5, 0.7, 0.9])
    f = jnp.sort(jax.random.normal(getkey(), (10, 5)), axis=-1)
    y = jax.random.normal(getkey(), (10,))
    np.testing.assert_allclose(ts.crps_quantile(f, y, qs), 2 * ts.pinball(f, y, qs), rtol=1e-10)


def test_point_errors_and_intervals():
    f, y = jnp.array([1.0, 2.0, 4.0]), jnp.array([2.0, 2.0, 2.0])
    assert float(ts.mae(f, y)) == 1.0 and float(ts.mse(f, y)) == pytest.approx(5 / 3)
    assert float(ts.mape(f, y)) == pytest.approx(50.0)
    assert float(ts.mase(f, y, jnp.array([4.0, 4.0, 4.0]))) == pytest.approx(0.5)
    assert float(ts.interval_coverage(f - 1, f + 1, y)) == pytest.approx(2 / 3)
    assert float(ts.interval_width(f - 1, f + 1)) == 2.0


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


def test_make_forecaster_gives_the_interface_shapes(getkey):
    model, params = ts.make_forecaster(_Linear(), key=getkey())
    assert model.apply(params, jnp.zeros((5, 8, 2))).shape == (5, 3, 2)
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        ts.make_forecaster(_Linear(horizon=0), key=getkey())
