"""Baselines around the same point forecast: Gaussian residual quantiles, split-conformal intervals and
linear quantile regression (with the count of crossing quantiles).

All three are fitted on the validation windows, where the point forecast is out of sample (the cINN's
``lambda_q`` is tuned there too), and applied to the test windows. Every function works per horizon
step: a forecast ``(B, H)`` and ``Q`` levels give quantiles ``(B, H, Q)``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def residual_scale(forecast: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Root-mean-square residual per horizon step ``(H,)``: the Gaussian baseline's sigma."""
    r = np.asarray(forecast, np.float64) - np.asarray(target, np.float64)
    return np.sqrt(np.mean(r**2, axis=0))


def gaussian_quantiles(forecast: np.ndarray, sigma: np.ndarray, levels) -> np.ndarray:
    """Quantiles of ``N(forecast, sigma_h^2)``: ``forecast + sigma_h * Phi^-1(q)``."""
    z = stats.norm.ppf(np.asarray(levels, np.float64))
    return np.asarray(forecast, np.float64)[..., None] + np.asarray(sigma, np.float64)[:, None] * z


def conformal_half_width(forecast: np.ndarray, target: np.ndarray, coverage: float) -> np.ndarray:
    """Split-conformal half-width per step ``(H,)`` for a central interval of ``coverage``.

    The ``ceil((n + 1) * coverage)``-th smallest absolute residual of the ``n`` calibration windows
    (infinite when that exceeds ``n``), which covers a new exchangeable window with probability at
    least ``coverage``.
    """
    if not 0 <= coverage < 1:
        raise ValueError(f"coverage must lie in [0, 1), got {coverage}")
    r = np.sort(np.abs(np.asarray(forecast, np.float64) - np.asarray(target, np.float64)), axis=0)
    n = r.shape[0]
    k = int(np.ceil((n + 1) * coverage))
    if k < 1:
        return np.zeros(r.shape[1])
    return r[k - 1] if k <= n else np.full(r.shape[1], np.inf)


def conformal_half_width_reference(forecast, target, coverage: float) -> np.ndarray:
    """Loop oracle for :func:`conformal_half_width`: the smallest width covering enough calibration points."""
    f, y = np.asarray(forecast, np.float64), np.asarray(target, np.float64)
    n, h = f.shape
    out = np.empty(h)
    for j in range(h):
        scores = sorted(abs(f[i, j] - y[i, j]) for i in range(n))
        need = coverage * (n + 1)                # widths w with #{score <= w} >= need
        out[j] = next((s for c, s in enumerate(scores, 1) if c >= need), np.inf) if need > 0 else 0.0
    return out


def conformal_quantiles(forecast: np.ndarray, cal_forecast: np.ndarray, cal_target: np.ndarray,
                        levels) -> np.ndarray:
    """Symmetric split-conformal quantiles: level ``q`` is ``forecast +- w(|1 - 2q|)``.

    Levels ``q`` and ``1 - q`` bound the conformal interval of coverage ``|1 - 2q|``; the median is the
    point forecast.
    """
    f = np.asarray(forecast, np.float64)
    out = []
    for q in levels:
        w = conformal_half_width(cal_forecast, cal_target, abs(1 - 2 * q))
        out.append(f + np.sign(q - 0.5) * w)
    return np.stack(out, -1)


def qr_features(forecast: np.ndarray, lag: np.ndarray, future: np.ndarray) -> np.ndarray:
    """Per-step regressors ``(B, H, P)``: the point forecast, the lagged target and the horizon covariates."""
    return np.concatenate([np.asarray(forecast)[..., None], np.asarray(lag)[..., None], np.asarray(future)], -1)


def fit_quantile_regression(features: np.ndarray, target: np.ndarray, levels) -> np.ndarray:
    """Linear quantile regression per horizon step and level (sklearn ``QuantileRegressor``, HiGHS, no penalty).

    Args:
      features: ``(N, H, P)`` regressors (see :func:`qr_features`).
      target: ``(N, H)``.
      levels: the ``Q`` quantile levels.

    Returns:
      Coefficients ``(H, Q, P + 1)``, the intercept last.
    """
    from sklearn.linear_model import QuantileRegressor

    x = np.asarray(features, np.float64)
    y = np.asarray(target, np.float64)
    n, h, p = x.shape
    coef = np.zeros((h, len(levels), p + 1))
    for j in range(h):
        for i, q in enumerate(levels):
            m = QuantileRegressor(quantile=float(q), alpha=0.0, solver="highs").fit(x[:, j], y[:, j])
            coef[j, i, :p], coef[j, i, p] = m.coef_, m.intercept_
    return coef


def predict_quantile_regression(coef: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Quantiles ``(B, H, Q)`` of the fitted linear quantile regressions (levels in fitting order)."""
    x = np.asarray(features, np.float64)
    return np.einsum("bhp,hqp->bhq", x, coef[..., :-1]) + coef[None, ..., -1]


def quantile_crossings(quantiles: np.ndarray) -> dict[str, float]:
    """How often quantiles of increasing levels decrease.

    Returns:
      ``crossings``: adjacent pairs ``q_i > q_{i+1}`` over all forecasts; ``crossing_share``: the share of
      forecasts (window, step) with at least one such pair.
    """
    bad = np.diff(np.asarray(quantiles), axis=-1) < 0
    return {"crossings": int(bad.sum()), "crossing_share": float(bad.any(-1).mean())}
