"""Baselines: split-conformal widths against a loop and their coverage, Gaussian quantiles against scipy,
linear quantile regression recovering known quantile lines, and the crossing count."""

import numpy as np
import pytest
from scipy import stats

from jaxlab.methods.autopq import (QUANTILES, conformal_half_width, conformal_half_width_reference,
                                   conformal_quantiles, fit_quantile_regression, gaussian_quantiles,
                                   predict_quantile_regression, quantile_crossings, residual_scale)


def test_conformal_width_matches_the_loop_and_covers():
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(199, 3)), rng.normal(size=(199, 3))
    for cov in (0.0, 0.5, 0.8, 0.98, 0.999):
        np.testing.assert_array_equal(conformal_half_width(f, y, cov), conformal_half_width_reference(f, y, cov))
    assert np.isinf(conformal_half_width(f, y, 0.999)).all()        # ceil(200 * 0.999) > 199
    # exchangeable calibration and test residuals: coverage at least nominal, and close to it
    cal, test = rng.standard_t(3, size=(2000, 2)), rng.standard_t(3, size=(20000, 2))
    w = conformal_half_width(np.zeros_like(cal), cal, 0.8)
    assert 0.79 <= np.mean(np.abs(test) <= w) <= 0.82
    q = conformal_quantiles(np.zeros((5, 2)), np.zeros_like(cal), cal, QUANTILES)
    np.testing.assert_array_equal(q[..., QUANTILES.index(0.5)], 0.0)
    np.testing.assert_allclose(q[..., QUANTILES.index(0.9)], -q[..., QUANTILES.index(0.1)])
    np.testing.assert_array_equal(q[0, :, QUANTILES.index(0.9)], w)


def test_gaussian_quantiles_are_scipys():
    f = np.array([[1.0, 2.0]])
    sigma = residual_scale(np.zeros((4, 2)), np.array([[1.0, 2], [-1, -2], [1, 2], [-1, -2]]))
    np.testing.assert_allclose(sigma, [1.0, 2.0])
    q = gaussian_quantiles(f, sigma, QUANTILES)
    np.testing.assert_allclose(q[0, 1], stats.norm(2.0, 2.0).ppf(QUANTILES))


def test_quantile_regression_recovers_linear_quantiles():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 2, size=(600, 2, 1))
    y = 1.0 + 2.0 * x[..., 0] + (0.5 + 0.5 * x[..., 0]) * rng.normal(size=(600, 2))   # heteroscedastic
    levels = (0.1, 0.5, 0.9)
    coef = fit_quantile_regression(x, y, levels)
    z = stats.norm.ppf(levels)
    for i, q in enumerate(levels):
        # the q-quantile line: 1 + 0.5 z_q + (2 + 0.5 z_q) x
        np.testing.assert_allclose(coef[:, i, 1], 1 + 0.5 * z[i], atol=0.2)
        np.testing.assert_allclose(coef[:, i, 0], 2 + 0.5 * z[i], atol=0.2)
    pred = predict_quantile_regression(coef, x)
    assert pred.shape == (600, 2, 3)
    assert np.mean(y <= pred[..., 2]) == pytest.approx(0.9, abs=0.03)


def test_crossings_count_decreasing_adjacent_levels():
    q = np.array([[[0.0, 1.0, 2.0], [0.0, 2.0, 1.0]], [[3.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])
    assert quantile_crossings(q) == {"crossings": 3, "crossing_share": 0.5}
