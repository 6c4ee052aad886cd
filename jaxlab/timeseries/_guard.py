"""Keeping a profile forecaster's fallback promise: a per-lead guard, a residual AR baseline, interval calibration.

ReCycle (Weyrauch et al., arXiv 2405.03429) forecasts a recent historic profile (RHP) plus a learned
residual ``f``. Nothing in training stops ``f`` from making the forecast worse than the profile it
refines; these post-hoc pieces, fitted on held-out windows, do:

* :func:`fit_lead_guard` / :func:`apply_lead_guard`: the forecast ``profile + alpha_h f`` with one
  ``alpha_h`` in ``[0, 1]`` per lead cycle ``h``, fitted in closed form on validation windows. For the
  MAE ``alpha_h`` is the weighted median of the ratios ``r / f`` (weights ``|f|``) clipped to ``[0, 1]``,
  the exact minimiser of ``sum |r - alpha f|`` over the interval (the objective is convex and piecewise
  linear); for the MSE it is the clipped least-squares ratio. ``alpha_h = 0`` is always feasible, so on
  the windows it was fitted on the guarded forecast is never worse than the profile.
* :func:`fit_residual_ar` / :func:`residual_ar_forecast`: a baseline, the residual of lead ``h`` as
  ``a_h + b_h r_last`` from the last history cycle's residual (AR(1) per lead, least squares pooled
  over the cycle's steps).
* :func:`conformal_margins`: split-conformal widening of a quantile interval per lead (conformalised
  quantile regression, Romano et al., NeurIPS 2019), so that the interval covers the wanted fraction
  of the calibration targets.

All are NumPy: they run once, on the host, after training.
"""

from __future__ import annotations

import math

import numpy as np


def _per_lead(a: np.ndarray) -> np.ndarray:
    """``(B, H, ...)`` -> ``(H, B * prod(...))``."""
    a = np.asarray(a, np.float64)
    if a.ndim < 2:
        raise ValueError(f"expected windows of shape (B, H, ...), got {a.shape}")
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


def _weighted_median_alpha(f: np.ndarray, r: np.ndarray) -> float:
    keep = f != 0
    if not keep.any():
        return 0.0
    z, w = r[keep] / f[keep], np.abs(f[keep])
    order = np.argsort(z)
    z, cw = z[order], np.cumsum(w[order])
    alpha = z[np.searchsorted(cw, 0.5 * cw[-1])]
    return float(np.clip(alpha, 0.0, 1.0))


def fit_lead_guard(residual_forecast: np.ndarray, residual_target: np.ndarray, *, loss: str = "mae") -> np.ndarray:
    """Per-lead shrinkage ``alpha_h in [0, 1]`` of a residual forecast towards the profile.

    Args:
      residual_forecast: ``(B, H, ...)`` the model's forecast minus the profile, ``f``.
      residual_target: ``(B, H, ...)`` the target minus the profile, ``r``.
      loss: ``"mae"`` (weighted median) or ``"mse"`` (least squares).

    Returns:
      ``(H,)`` the ``alpha_h`` minimising ``sum |r - alpha f|`` (or the squares) over lead ``h``'s entries.

    Examples:
      >>> import numpy as np
      >>> f = np.array([[[1.0, 1.0]], [[1.0, 2.0]]])        # B = 2, H = 1, D = 2
      >>> fit_lead_guard(f, 0.5 * f).tolist(), fit_lead_guard(f, -f).tolist()
      ([0.5], [0.0])
    """
    f, r = _per_lead(residual_forecast), _per_lead(residual_target)
    if f.shape != r.shape:
        raise ValueError(f"residual_forecast {np.shape(residual_forecast)} and residual_target "
                         f"{np.shape(residual_target)} must have the same shape")
    if loss == "mae":
        return np.array([_weighted_median_alpha(f[h], r[h]) for h in range(f.shape[0])])
    if loss == "mse":
        ff = np.sum(f * f, axis=1)
        return np.clip(np.sum(f * r, axis=1) / np.where(ff > 0, ff, 1.0), 0.0, 1.0) * (ff > 0)
    raise ValueError(f"loss must be 'mae' or 'mse', got {loss!r}")


def fit_lead_guard_reference(residual_forecast, residual_target, *, loss: str = "mae") -> np.ndarray:
    """Oracle for :func:`fit_lead_guard`: the objective at every breakpoint in ``[0, 1]`` (and a fine grid for MSE)."""
    f, r = _per_lead(residual_forecast), _per_lead(residual_target)
    out = []
    for h in range(f.shape[0]):
        if loss == "mae":
            nz = f[h] != 0
            cand = np.concatenate([[0.0, 1.0], (r[h][nz] / f[h][nz])])
            cand = cand[(cand >= 0) & (cand <= 1)]
            cost = [np.abs(r[h] - a * f[h]).sum() for a in cand]
        else:
            cand = np.linspace(0.0, 1.0, 100001)
            cost = [np.square(r[h] - a * f[h]).sum() for a in cand]
        out.append(cand[int(np.argmin(cost))])
    return np.array(out)


def apply_lead_guard(profile: np.ndarray, forecast: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``profile + alpha_h (forecast - profile)`` for windows ``(B, H, ...)``; ``forecast`` may carry extra trailing axes."""
    profile, forecast, alpha = np.asarray(profile), np.asarray(forecast), np.asarray(alpha)
    extra = forecast.ndim - profile.ndim
    p = profile.reshape(profile.shape + (1,) * extra)
    a = alpha.reshape((1, -1) + (1,) * (forecast.ndim - 2))
    return p + a * (forecast - p)


def fit_residual_ar(last_residual: np.ndarray, target_residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``r_h = a_h + b_h r_last`` per lead.

    Args:
      last_residual: ``(B, D)`` the last history cycle minus its profile.
      target_residual: ``(B, H, D)`` the forecast cycles minus their profile.

    Returns:
      ``(a, b)``, each ``(H,)``.
    """
    x = np.asarray(last_residual, np.float64).reshape(last_residual.shape[0], -1)
    y = np.asarray(target_residual, np.float64)
    if y.shape[0] != x.shape[0] or y.reshape(y.shape[0], y.shape[1], -1).shape[2] != x.shape[1]:
        raise ValueError(f"last_residual {np.shape(last_residual)} and target_residual "
                         f"{np.shape(target_residual)} must be (B, D) and (B, H, D)")
    y = y.reshape(y.shape[0], y.shape[1], -1)
    xc = x - x.mean()
    var = float(np.sum(xc * xc))
    b = np.array([np.sum(xc * (y[:, h] - y[:, h].mean())) / var if var > 0 else 0.0 for h in range(y.shape[1])])
    a = np.array([y[:, h].mean() for h in range(y.shape[1])]) - b * x.mean()
    return a, b


def residual_ar_forecast(last_residual: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(B, H, D)`` residual forecasts ``a_h + b_h r_last`` of :func:`fit_residual_ar`."""
    x = np.asarray(last_residual, np.float64)
    return np.asarray(a)[None, :, None] + np.asarray(b)[None, :, None] * x[:, None, :]


def conformal_margins(lower: np.ndarray, upper: np.ndarray, target: np.ndarray, coverage: float) -> np.ndarray:
    """Per-lead margins ``m_h`` so that ``[lower - m_h, upper + m_h]`` covers ``coverage`` of the calibration targets.

    The conformity score of an entry is ``max(lower - y, y - upper)``; ``m_h`` is its
    ``ceil((n + 1) coverage) / n`` empirical quantile over lead ``h``'s ``n`` entries (negative
    margins narrow an interval that was too wide). Arrays are ``(B, H, ...)``.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    lo, hi, y = _per_lead(lower), _per_lead(upper), _per_lead(target)
    scores = np.sort(np.maximum(lo - y, y - hi), axis=1)
    n = scores.shape[1]
    k = min(max(math.ceil((n + 1) * coverage), 1), n)
    return scores[:, k - 1]
