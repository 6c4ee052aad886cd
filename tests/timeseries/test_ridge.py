"""The per-step residual ridge: NumPy least squares on the augmented system, and the features it reads."""

import numpy as np
import pytest

from jaxlab import timeseries as ts


def _case(seed=0, b=40, h=3, d=4, e=2):
    rng = np.random.default_rng(seed)
    meta = np.zeros((b, h, 12))
    meta[np.arange(b)[:, None], np.arange(h)[None, :], rng.integers(0, 7, size=(b, h))] = 1.0  # weekday one-hot
    meta[..., 9:] = rng.normal(size=(b, h, 3))      # columns past the day type: not features
    profile = rng.normal(size=(b, h, d))
    cov = rng.uniform(size=(b, h, d, e))
    return meta, profile, cov


def test_features_are_day_type_covariates_squares_profile_and_one():
    meta, profile, cov = _case()
    x = ts.residual_ridge_features(meta, profile, cov)
    assert x.shape == (40, 3, 4, 9 + 2 + 2 + 2)
    np.testing.assert_array_equal(x[:, :, 2, :9], meta[..., :9])
    np.testing.assert_array_equal(x[..., 9:11], cov)
    np.testing.assert_allclose(x[..., 11:13], cov**2)
    np.testing.assert_array_equal(x[..., 13], profile)
    np.testing.assert_array_equal(x[..., 14], 1.0)
    assert ts.residual_ridge_features(meta, profile, None).shape[-1] == 9 + 2
    with pytest.raises(ValueError, match="covariates"):
        ts.residual_ridge_features(meta, profile, cov[:, :, :2])
    with pytest.raises(ValueError, match="meta"):
        ts.residual_ridge_features(meta[..., :5], profile, cov)


@pytest.mark.parametrize("lam", [1e-6, 0.3, 5.0])
def test_fit_is_ridge_least_squares_per_step(lam):
    meta, profile, cov = _case(1)
    x = ts.residual_ridge_features(meta, profile, cov)
    rng = np.random.default_rng(2)
    true_w = rng.normal(size=(4, x.shape[-1]))       # each step of the cycle its own weights
    r = np.einsum("bhdf,df->bhd", x, true_w) + 0.01 * rng.normal(size=profile.shape)
    w = ts.fit_residual_ridge(x, r, lam)
    for d in range(4):  # the oracle: lstsq of [X_d; sqrt(lam) I] against [r_d; 0], pooled over windows and leads
        xd = x[:, :, d].reshape(-1, x.shape[-1])
        aug = np.concatenate([xd, np.sqrt(lam) * np.eye(x.shape[-1])])
        rhs = np.concatenate([r[:, :, d].ravel(), np.zeros(x.shape[-1])])
        # the conditioning is about 1 / lam at lam = 1e-6
        np.testing.assert_allclose(w[d], np.linalg.lstsq(aug, rhs, rcond=None)[0], rtol=1e-6, atol=1e-7)
    if lam < 1e-3:   # the one-hot day types and the constant are collinear: the weights differ, the fit not
        np.testing.assert_allclose(ts.residual_ridge_forecast(x, w), np.einsum("bhdf,df->bhd", x, true_w),
                                   atol=0.05)
    with pytest.raises(ValueError, match="must be"):
        ts.fit_residual_ridge(x, r[:, :2], lam)
    with pytest.raises(ValueError, match="lam"):
        ts.fit_residual_ridge(x, r, 0.0)
