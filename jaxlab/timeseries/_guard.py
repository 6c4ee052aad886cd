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
* :func:`cross_fit_lead_guard`, :func:`guard_gain_test` and :func:`fit_guard_rule`: rules that ask
  more of the validation windows before trusting ``f``. One ``alpha_h`` fitted on all validation
  windows is optimistic (its validation gain is in-sample); these measure the gain out of fold
  (blocked cross-fitting over contiguous blocks of windows, with a gap) and keep ``f`` only when
  that gain is positive (``"cv"``), significant under a one-sided Diebold-Mariano test with a
  Newey-West variance (``"dm"``), or shrink ``alpha_h`` by the out-of-fold share of the in-sample
  gain (``"shrink"``). ``"val"`` is the plain fit.
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
from scipy import stats

GUARD_RULES: tuple[str, ...] = ("val", "cv", "dm", "shrink")


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


def _conformal_rank(n: int, level: float) -> int:
    """The 1-based rank of the split-conformal quantile at ``level`` among ``n`` sorted scores,
    ``ceil((n + 1) level)``, clipped to ``1..n``."""
    return min(max(math.ceil((n + 1) * level), 1), n)


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
    k = _conformal_rank(n, coverage)
    return scores[:, k - 1]


def _fold_slices(n: int, folds: int) -> list[tuple[int, int]]:
    """``folds`` contiguous blocks covering ``range(n)`` (sizes differ by at most one)."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be in [2, {n}] (the number of windows), got {folds}")
    edges = np.linspace(0, n, folds + 1).round().astype(int)
    return [(int(edges[k]), int(edges[k + 1])) for k in range(folds)]


def cross_fit_lead_guard(residual_forecast: np.ndarray, residual_target: np.ndarray, *, folds: int = 5,
                         gap: int | None = None, loss: str = "mae") -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold guarded residuals: each block of windows shrunk with the ``alpha`` fitted on the others.

    The windows (axis 0, in time order) are cut into ``folds`` contiguous blocks. For block ``k``,
    :func:`fit_lead_guard` is fitted on the windows more than ``gap`` windows away from the block (a
    buffer against the serial correlation of neighbouring days; default: the number of leads ``H``,
    so that no fitting window shares a forecast day with the block) and applied to the block.

    Returns:
      ``(alpha_folds, oof)``: ``(folds, H)`` the per-fold ``alpha`` and ``(B, H, ...)`` the
      out-of-fold residual forecasts ``alpha^(-k)_h f``.

    Examples:
      >>> import numpy as np
      >>> f = np.ones((10, 1, 1)); r = 0.5 * f
      >>> a, oof = cross_fit_lead_guard(f, r, folds=2, gap=0)
      >>> a.tolist(), float(oof.mean())
      ([[0.5], [0.5]], 0.5)
    """
    f, r = np.asarray(residual_forecast, np.float64), np.asarray(residual_target, np.float64)
    if f.shape != r.shape or f.ndim < 2:
        raise ValueError(f"residual_forecast {f.shape} and residual_target {r.shape} must be the same (B, H, ...)")
    b, h = f.shape[:2]
    gap = h if gap is None else gap
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    alphas, oof = [], np.zeros_like(f)
    for s, e in _fold_slices(b, folds):
        keep = np.r_[0:max(s - gap, 0), min(e + gap, b):b]
        if keep.size == 0:
            raise ValueError(f"fold [{s}, {e}) leaves no fitting windows with gap {gap}; use fewer folds or a "
                             "smaller gap")
        a = fit_lead_guard(f[keep], r[keep], loss=loss)
        alphas.append(a)
        oof[s:e] = apply_lead_guard(np.zeros_like(f[s:e]), f[s:e], a)
    return np.stack(alphas), oof


def guard_gain_test(loss_model: np.ndarray, loss_base: np.ndarray, *, lags: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Diebold-Mariano test, per lead, that the model's loss is below the base's.

    Args:
      loss_model, loss_base: ``(B, H, ...)`` losses per entry (e.g. absolute errors) of windows in
        time order; each window's entries are averaged into one loss differential
        ``d_t = mean(loss_model - loss_base)`` per lead.
      lags: Newey-West (Bartlett) lags of the long-run variance; default ``floor(B ** (1/3))``.

    Returns:
      ``(stat, pvalue)``, each ``(H,)``: ``stat = mean(d) / sqrt(lrv / B)`` and the normal
      ``P(Z <= stat)`` (small when the model's loss is significantly lower). A lead whose
      differentials are all equal (up to rounding) gets ``stat = -inf``, ``pvalue = 0`` when they are
      negative, ``inf``/1 when positive and 0/0.5 when zero.
    """
    d = _per_window(loss_model) - _per_window(loss_base)  # (H, B)
    n = d.shape[1]
    lags = int(n ** (1.0 / 3.0)) if lags is None else lags
    if not 0 <= lags < n:
        raise ValueError(f"lags must be in [0, {n - 1}] (windows - 1), got {lags}")
    mean = d.mean(axis=1)
    dc = d - mean[:, None]
    lrv = np.sum(dc * dc, axis=1) / n
    for k in range(1, lags + 1):
        lrv = lrv + 2.0 * (1.0 - k / (lags + 1.0)) * np.sum(dc[:, k:] * dc[:, :-k], axis=1) / n
    se = np.sqrt(np.maximum(lrv, 0.0) / n)
    flat = se <= 1e-12 * np.abs(d).max(axis=1)  # equal differentials, up to rounding
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(flat, np.sign(mean) * np.inf, mean / np.where(flat, 1.0, se))
    stat = np.where(flat & (np.abs(mean) <= 1e-12 * np.abs(d).max(axis=1)), 0.0, stat)
    return stat, stats.norm.cdf(stat)


def guard_gain_test_reference(loss_model, loss_base, *, lags: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loop oracle for :func:`guard_gain_test` (autocovariances one by one; requires a positive variance)."""
    lm, lb = np.asarray(loss_model, np.float64), np.asarray(loss_base, np.float64)
    out_s, out_p = [], []
    for h in range(lm.shape[1]):
        d = [float(np.mean(lm[t, h]) - np.mean(lb[t, h])) for t in range(lm.shape[0])]
        n = len(d)
        lag = int(n ** (1.0 / 3.0)) if lags is None else lags
        m = sum(d) / n
        gam = [sum((d[t] - m) * (d[t - k] - m) for t in range(k, n)) / n for k in range(lag + 1)]
        lrv = gam[0] + 2.0 * sum((1.0 - k / (lag + 1.0)) * gam[k] for k in range(1, lag + 1))
        z = m / math.sqrt(lrv / n)
        out_s.append(z)
        out_p.append(0.5 * math.erfc(-z / math.sqrt(2.0)))
    return np.array(out_s), np.array(out_p)


def _per_window(a: np.ndarray) -> np.ndarray:
    """``(B, H, ...)`` -> ``(H, B)`` means over the trailing axes."""
    a = np.asarray(a, np.float64)
    if a.ndim < 2:
        raise ValueError(f"expected windows of shape (B, H, ...), got {a.shape}")
    return a.reshape(a.shape[0], a.shape[1], -1).mean(axis=2).T


def fit_guard_rule(residual_forecast: np.ndarray, residual_target: np.ndarray, rule: str = "val", *,
                   folds: int = 5, gap: int | None = None, level: float = 0.05) -> tuple[np.ndarray, dict]:
    """``alpha_h`` of one guard rule (MAE), fitted on validation windows in time order.

    Rules (``a`` is :func:`fit_lead_guard` on all windows, ``oof`` the out-of-fold residual
    forecasts of :func:`cross_fit_lead_guard`, losses are absolute errors, the profile's is ``|r|``):

    * ``"val"``: ``a``.
    * ``"cv"``: ``a_h`` where the out-of-fold loss ``sum |r - oof|`` is below the profile's, else 0.
    * ``"dm"``: ``a_h`` where the out-of-fold gain is significant at the family-wise ``level`` over
      the ``H`` leads (Bonferroni: :func:`guard_gain_test` p-value ``< level / H``), else 0.
    * ``"shrink"``: ``a_h`` times ``clip(G_oof / G_in, 0, 1)``, the out-of-fold gain over the in-sample
      gain ``G_in = sum |r| - sum |r - a_h f|`` (0 where ``G_in = 0``): the optimism of the in-sample
      fit is taken out of ``alpha``.

    Returns:
      ``(alpha, info)``; ``info`` holds the per-lead ``alpha_val``, out-of-fold and in-sample losses
      relative to the profile's (``oof_ratio``, ``val_ratio``) and the test's ``dm_stat``/``dm_pvalue``.
    """
    if rule not in GUARD_RULES:
        raise ValueError(f"rule must be one of {GUARD_RULES}, got {rule!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    f, r = np.asarray(residual_forecast, np.float64), np.asarray(residual_target, np.float64)
    a = fit_lead_guard(f, r)
    _, oof = cross_fit_lead_guard(f, r, folds=folds, gap=gap)
    base = np.abs(r)
    l_base, l_oof = _per_lead(base).sum(1), _per_lead(np.abs(r - oof)).sum(1)
    l_in = _per_lead(np.abs(r - apply_lead_guard(np.zeros_like(f), f, a))).sum(1)
    stat, p = guard_gain_test(np.abs(r - oof), base)
    g_in, g_oof = l_base - l_in, l_base - l_oof
    info = {"alpha_val": a, "oof_ratio": l_oof / l_base, "val_ratio": l_in / l_base, "dm_stat": stat,
            "dm_pvalue": p}
    if rule == "val":
        return a, info
    if rule == "cv":
        return np.where(l_oof < l_base, a, 0.0), info
    if rule == "dm":
        return np.where(p < level / f.shape[1], a, 0.0), info
    share = np.clip(np.divide(g_oof, g_in, out=np.zeros_like(g_in), where=g_in > 0), 0.0, 1.0)
    return a * share, info


def fit_guard_rule_reference(residual_forecast, residual_target, rule: str = "val", *, folds: int = 5,
                             gap: int | None = None, level: float = 0.05) -> np.ndarray:
    """Brute-force oracle for :func:`fit_guard_rule`: every ``alpha`` by :func:`fit_lead_guard_reference`,
    the folds and losses by explicit loops over windows, the test by :func:`guard_gain_test_reference`."""
    f, r = np.asarray(residual_forecast, np.float64), np.asarray(residual_target, np.float64)
    b, h = f.shape[:2]
    gap = h if gap is None else gap
    a = fit_lead_guard_reference(f, r)
    oof = np.zeros_like(f)
    edges = [round(k * b / folds) for k in range(folds + 1)]
    for k in range(folds):
        s, e = edges[k], edges[k + 1]
        fit_idx = [t for t in range(b) if t < s - gap or t >= e + gap]
        ak = fit_lead_guard_reference(f[fit_idx], r[fit_idx])
        for t in range(s, e):
            for j in range(h):
                oof[t, j] = ak[j] * f[t, j]
    out = []
    _, p = guard_gain_test_reference(np.abs(r - oof), np.abs(r))
    for j in range(h):
        lb = sum(float(np.abs(r[t, j]).sum()) for t in range(b))
        lo = sum(float(np.abs(r[t, j] - oof[t, j]).sum()) for t in range(b))
        li = sum(float(np.abs(r[t, j] - a[j] * f[t, j]).sum()) for t in range(b))
        if rule == "val":
            out.append(a[j])
        elif rule == "cv":
            out.append(a[j] if lo < lb else 0.0)
        elif rule == "dm":
            out.append(a[j] if p[j] < level / h else 0.0)
        else:
            out.append(a[j] * min(max((lb - lo) / (lb - li), 0.0), 1.0) if lb - li > 0 else 0.0)
    return np.array(out)


def choose_alternative(guard_loss: np.ndarray, alternative_loss: np.ndarray, base_loss: np.ndarray, *,
                       leads: int = 1, level: float = 0.05) -> np.ndarray:
    """Per lead, whether an alternative forecast (e.g. the residual AR) replaces the guarded one.

    Lead ``h < leads`` switches to the alternative when, on the validation windows, its summed loss is
    below the guarded forecast's (pass the guard's out-of-fold losses, so that both are out of sample)
    and its gain over the base (the profile) is significant at the family-wise ``level`` over the
    ``H`` leads (:func:`guard_gain_test` p-value ``< level / H``). Arrays are ``(B, H, ...)`` losses.

    Returns:
      ``(H,)`` booleans.
    """
    g, alt, base = _per_lead(guard_loss), _per_lead(alternative_loss), _per_lead(base_loss)
    if not (g.shape == alt.shape == base.shape):
        raise ValueError(f"guard_loss {np.shape(guard_loss)}, alternative_loss {np.shape(alternative_loss)} and "
                         f"base_loss {np.shape(base_loss)} must have the same shape")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _, p = guard_gain_test(alternative_loss, base_loss)
    h = g.shape[0]
    return (np.arange(h) < leads) & (alt.sum(1) < g.sum(1)) & (p < level / h)


def choose_alternative_reference(guard_loss, alternative_loss, base_loss, *, leads: int = 1,
                                 level: float = 0.05) -> np.ndarray:
    """Loop oracle for :func:`choose_alternative`."""
    g, alt, base = (np.asarray(x, np.float64) for x in (guard_loss, alternative_loss, base_loss))
    _, p = guard_gain_test_reference(alt, base)
    h = g.shape[1]
    return np.array([j < leads and float(alt[:, j].sum()) < float(g[:, j].sum()) and p[j] < level / h
                     for j in range(h)])


def _online_scores(lower, upper, target, coverage, calib_lower, calib_upper, calib_target,
                   delay) -> tuple[np.ndarray, np.ndarray, int]:
    """The checked inputs of the online margins: window scores ``(H, B, D')``, calibration scores ``(H, n0)``
    (unsorted) and the delay (default ``H``)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    lo, hi, y = (np.asarray(a, np.float64) for a in (lower, upper, target))
    clo, chi, cy = (np.asarray(a, np.float64) for a in (calib_lower, calib_upper, calib_target))
    if not (lo.shape == hi.shape == y.shape) or not (clo.shape == chi.shape == cy.shape) or lo.shape[1:] != clo.shape[1:]:
        raise ValueError(f"windows {lo.shape} and calibration windows {clo.shape} must be (B, H, ...) alike")
    b, h = lo.shape[:2]
    lag = h if delay is None else int(delay)
    if lag < 1:
        raise ValueError(f"delay must be >= 1 (a window's own targets are unknown at its origin), got {delay}")
    score = _per_lead(np.maximum(lo - y, y - hi)).reshape(h, b, -1)       # (H, B, D')
    return score, _per_lead(np.maximum(clo - cy, cy - chi)), lag


def rolling_conformal_margins(lower: np.ndarray, upper: np.ndarray, target: np.ndarray, coverage: float, *,
                              calib_lower: np.ndarray, calib_upper: np.ndarray, calib_target: np.ndarray,
                              delay: int | None = None) -> np.ndarray:
    """Online split-conformal margins: each forecast window calibrated on everything known at its origin.

    Window ``t`` (axis 0, consecutive origins one cycle apart) gets, per lead, the margin of
    :func:`conformal_margins` over the calibration windows plus the earlier windows ``s <= t - delay``
    of the same set, whose forecast cycles have all been observed by ``t``'s origin (``delay``:
    default the number of leads ``H``). So the calibration set grows through the test period and
    follows a shift of the season, without using any target that is not yet known.

    Returns:
      ``(B, H)`` margins for ``[lower - m, upper + m]``.
    """
    score, calib, delay = _online_scores(lower, upper, target, coverage, calib_lower, calib_upper, calib_target,
                                         delay)
    h, b = score.shape[:2]
    calib = np.sort(calib, axis=1)
    out = np.empty((b, h))
    for t in range(b):
        known = score[:, : max(t - delay + 1, 0)].reshape(h, -1)
        pool = np.sort(np.concatenate([calib, known], axis=1), axis=1)
        n = pool.shape[1]
        k = _conformal_rank(n, coverage)
        out[t] = pool[:, k - 1]
    return out


def rolling_conformal_margins_reference(lower, upper, target, coverage, *, calib_lower, calib_upper,
                                        calib_target, delay=None) -> np.ndarray:
    """Oracle for :func:`rolling_conformal_margins`: :func:`conformal_margins` on the concatenated windows."""
    b, h = np.shape(lower)[:2]
    delay = h if delay is None else delay
    out = []
    for t in range(b):
        s = max(t - delay + 1, 0)
        cat = lambda c, x: np.concatenate([np.asarray(c, np.float64), np.asarray(x, np.float64)[:s]])  # noqa: E731
        out.append(conformal_margins(cat(calib_lower, lower), cat(calib_upper, upper), cat(calib_target, target),
                                     coverage))
    return np.stack(out)


def _aci_margin(pool: np.ndarray, alpha_t: float, saturate: str) -> float:
    """The conformal quantile of sorted ``pool`` at level ``1 - alpha_t`` (edges: :func:`adaptive_conformal_margins`)."""
    if alpha_t <= 0:
        return math.inf if saturate == "inf" else float(pool[-1])
    n = pool.shape[0]
    k = _conformal_rank(n, 1.0 - alpha_t)  # alpha_t >= 1: k = 1, the smallest score
    return float(pool[k - 1])


def adaptive_conformal_margins(lower: np.ndarray, upper: np.ndarray, target: np.ndarray, coverage: float, *,
                               calib_lower: np.ndarray, calib_upper: np.ndarray, calib_target: np.ndarray,
                               gamma: float = 0.005, delay: int | None = None, saturate: str = "inf",
                               return_alpha: bool = False):
    """Adaptive conformal inference (ACI; Gibbs & Candes, NeurIPS 2021): rolling margins at a level that learns.

    Split conformal assumes the calibration and test scores exchangeable; a shift of the test period
    breaks that, and even :func:`rolling_conformal_margins` (whose pool grows with the test windows
    already observed) follows a jump only as fast as the new scores outweigh the old. ACI instead
    moves the miscoverage level itself, per lead ``h``:
    ``alpha_{t+1} = alpha_t + gamma (alpha - err_t)``, with ``alpha = 1 - coverage``. ``err_t`` is the
    share of window ``t``'s lead-``h`` entries outside its interval (an indicator when there is one
    entry per lead, as in the paper); it is known only once ``t``'s targets are observed, so, as in
    :func:`rolling_conformal_margins`, window ``t``'s level uses the errors of windows
    ``s <= t - delay``: ``alpha_t = alpha + gamma sum_{s <= t - delay} (alpha - err_s)``. Window
    ``t``'s margin is the conformal quantile (``ceil((n + 1)(1 - alpha_t)) / n``, clipped to the pool
    as in :func:`conformal_margins`) of the same pool the rolling margins use: the calibration
    windows plus the windows ``s <= t - delay``. ``gamma = 0`` gives the rolling margins exactly.

    Edges of the level: ``alpha_t <= 0`` asks for coverage 1, which no finite quantile promises; the
    paper's interval is then the whole line (``saturate="inf"``: margin ``+inf``, ``err_t = 0``), which
    keeps its long-run guarantee ``|mean(err) - alpha| <= (max(alpha, 1 - alpha) + gamma) / (gamma T)``.
    ``saturate="max"`` takes the largest known score instead (finite widths; the guarantee then holds
    only while the largest score covers). ``alpha_t >= 1`` gives the smallest known score (the
    level-0 quantile, the narrowest interval the pool supports; the paper's empty set has no interval
    form), so the margin is monotone in ``alpha_t``.

    Hand-written rather than taken from MAPIE: the update is a few lines on our ``(B, H, ...)``
    arrays, while MAPIE's ACI (``MapieTimeSeriesRegressor``, ``method="aci"``) wraps a scikit-learn
    estimator and refits/partially fits it, which the post-hoc interval of a trained JAX model has no
    use for. The default ``gamma = 0.005`` is the paper's.

    Args:
      lower, upper, target: ``(B, H, ...)`` the forecast windows (consecutive origins, in time order).
      coverage: the wanted coverage in ``(0, 1)``.
      calib_lower, calib_upper, calib_target: ``(n0, H, ...)`` calibration windows (e.g. validation).
      gamma: the step size, ``>= 0``.
      delay: windows until a window's targets are all observed; default the number of leads ``H``.
      saturate: ``"inf"`` or ``"max"``, the margin where ``alpha_t <= 0``.
      return_alpha: also return the ``(B, H)`` levels ``alpha_t``.

    Returns:
      ``(B, H)`` margins for ``[lower - m, upper + m]`` (and the levels if ``return_alpha``).
    """
    try:
        ok = math.isfinite(float(gamma)) and float(gamma) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    gamma = float(gamma)
    if saturate not in ("inf", "max"):
        raise ValueError(f"saturate must be 'inf' or 'max', got {saturate!r}")
    score, calib, lag = _online_scores(lower, upper, target, coverage, calib_lower, calib_upper, calib_target,
                                       delay)
    h, b = score.shape[:2]
    a0 = 1.0 - coverage
    out, alphas = np.empty((b, h)), np.empty((b, h))
    err = np.empty((b, h))
    for t in range(b):
        s = max(t - lag + 1, 0)                                            # windows 0..s-1 are known
        alpha_t = a0 + gamma * (s * a0 - err[:s].sum(axis=0))
        pool = np.sort(np.concatenate([calib, score[:, :s].reshape(h, -1)], axis=1), axis=1)
        out[t] = [_aci_margin(pool[j], float(alpha_t[j]), saturate) for j in range(h)]
        alphas[t] = alpha_t
        err[t] = (score[:, t] > out[t][:, None]).mean(axis=1)
    return (out, alphas) if return_alpha else out


def adaptive_conformal_margins_reference(lower, upper, target, coverage, *, calib_lower, calib_upper,
                                         calib_target, gamma: float = 0.005, delay: int | None = None,
                                         saturate: str = "inf") -> np.ndarray:
    """Loop oracle for :func:`adaptive_conformal_margins`: the level updated one known window at a time, each
    margin by :func:`conformal_margins` on the concatenated windows of one lead."""
    lo, hi, y = (np.asarray(a, np.float64) for a in (lower, upper, target))
    b, h = lo.shape[:2]
    lag = h if delay is None else delay
    a0 = 1.0 - coverage
    out = np.empty((b, h))
    for j in range(h):
        alpha, errs = a0, []
        for t in range(b):
            s = max(t - lag + 1, 0)
            alpha = a0
            for e in errs[:s]:
                alpha = alpha + gamma * (a0 - e)
            cat = lambda c, x: np.concatenate([np.asarray(c, np.float64)[:, j:j + 1], x[:s, j:j + 1]])  # noqa: E731
            pool_lo, pool_hi, pool_y = cat(calib_lower, lo), cat(calib_upper, hi), cat(calib_target, y)
            scores = np.maximum(pool_lo - pool_y, pool_y - pool_hi).ravel()
            if alpha <= 0:
                m = math.inf if saturate == "inf" else float(scores.max())
            elif alpha >= 1:
                m = float(scores.min())
            else:
                m = float(conformal_margins(pool_lo, pool_hi, pool_y, 1.0 - alpha)[0])
            out[t, j] = m
            inside = (y[t, j] >= lo[t, j] - m) & (y[t, j] <= hi[t, j] + m)
            errs.append(1.0 - float(np.mean(inside)))
    return out
