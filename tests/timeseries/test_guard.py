"""The per-lead guard, the residual AR baseline and the conformal margins against brute-force oracles."""

import numpy as np
import pytest

from jaxlab import timeseries as ts


def _residuals(seed, b=40, h=3, d=5):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(b, h, d))
    # lead 0: f is half right, lead 1: f is noise, lead 2: f is exactly right
    r = np.stack([0.5 * f[:, 0] + 0.3 * rng.normal(size=(b, d)), rng.normal(size=(b, d)), f[:, 2]], axis=1)
    return f, r


@pytest.mark.parametrize("loss", ["mae", "mse"])
def test_lead_guard_matches_the_oracle_and_never_loses_to_the_profile(loss):
    f, r = _residuals(0)
    alpha = ts.fit_lead_guard(f, r, loss=loss)
    ref = ts.fit_lead_guard_reference(f, r, loss=loss)
    err = (lambda e: np.abs(e)) if loss == "mae" else np.square
    cost = lambda a: np.array([err(r[:, h] - a[h] * f[:, h]).sum() for h in range(3)])  # noqa: E731
    np.testing.assert_allclose(cost(alpha), cost(ref), rtol=1e-6)
    assert np.all((alpha >= 0) & (alpha <= 1))
    assert alpha[2] == pytest.approx(1.0) and alpha[1] < 0.5 and 0.2 < alpha[0] < 0.8
    # the guarded forecast is never worse than the profile (alpha = 0) nor than the raw model (alpha = 1)
    assert np.all(cost(alpha) <= cost(np.zeros(3)) + 1e-9) and np.all(cost(alpha) <= cost(np.ones(3)) + 1e-9)


def test_lead_guard_shrinks_a_forecast_with_quantile_axis():
    profile = np.zeros((2, 3, 4))
    fc = np.ones((2, 3, 4, 5))
    out = ts.apply_lead_guard(profile + 1.0, fc + 1.0, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(out[:, :, :, 0], np.broadcast_to([1.0, 1.5, 2.0], (2, 4, 3)).transpose(0, 2, 1))
    with pytest.raises(ValueError, match="same shape"):
        ts.fit_lead_guard(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="'mae' or 'mse'"):
        ts.fit_lead_guard(fc[..., 0], fc[..., 0], loss="huber")


def test_residual_ar_is_least_squares_per_lead():
    rng = np.random.default_rng(1)
    last = rng.normal(size=(50, 6))
    target = np.stack([0.7 * last + 0.1, -0.2 * last, rng.normal(size=(50, 6))], axis=1)
    target = target + 0.05 * rng.normal(size=target.shape)
    a, b = ts.fit_residual_ar(last, target)
    for h in range(3):  # the oracle: numpy's least squares on the pooled (last, target) pairs
        design = np.stack([np.ones(last.size), last.ravel()], axis=1)
        coef = np.linalg.lstsq(design, target[:, h].ravel(), rcond=None)[0]
        np.testing.assert_allclose([a[h], b[h]], coef, atol=1e-10)
    assert b[0] == pytest.approx(0.7, abs=0.05)
    pred = ts.residual_ar_forecast(last, a, b)
    np.testing.assert_allclose(pred[:, 1], a[1] + b[1] * last)
    with pytest.raises(ValueError, match="must be"):
        ts.fit_residual_ar(last[:10], target)


def test_conformal_margins_reach_the_coverage():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(200, 2, 3)) * np.array([1.0, 3.0])[None, :, None]
    lo, hi = -np.ones_like(y), np.ones_like(y)
    m = ts.conformal_margins(lo, hi, y, 0.8)
    covered = ((y >= lo - m[None, :, None]) & (y <= hi + m[None, :, None])).mean(axis=(0, 2))
    n = y.shape[0] * y.shape[2]
    assert np.all(covered >= 0.8) and np.all(covered <= 0.8 + 2.0 / n)
    assert m[0] < 0.5 < m[1]  # the wide lead needs a wider interval; the unit one is narrowed (|z|<1.28 at 80%)
    # the oracle: the smallest margin covering ceil((n + 1) 0.8) of the n entries
    score = np.sort(np.abs(y[:, 1]).ravel() - 1.0)
    assert m[1] == score[int(np.ceil((n + 1) * 0.8)) - 1]
    with pytest.raises(ValueError, match="coverage"):
        ts.conformal_margins(lo, hi, y, 1.0)
