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


def _ar1_noise(rng, b, h, d, rho=0.6):
    """``(B, H, D)`` noise with AR(1) correlation over the windows (time order), as neighbouring days have."""
    e = rng.normal(size=(b, h, d))
    for t in range(1, b):
        e[t] = rho * e[t - 1] + np.sqrt(1 - rho**2) * e[t]
    return e


def test_guard_gain_test_matches_the_loop_oracle_and_detects_a_gain():
    rng = np.random.default_rng(3)
    base = np.abs(_ar1_noise(rng, 60, 3, 4)) + 1.0
    model = base - np.array([0.5, 0.0, -0.3])[None, :, None] + 0.2 * _ar1_noise(rng, 60, 3, 4)
    for lags in (None, 0, 5):
        stat, p = ts.guard_gain_test(model, base, lags=lags)
        ref_s, ref_p = ts.guard_gain_test_reference(model, base, lags=lags)
        np.testing.assert_allclose(stat, ref_s, rtol=1e-10)
        np.testing.assert_allclose(p, ref_p, rtol=1e-10, atol=1e-300)
    assert p[0] < 1e-3 and 0.001 < p[1] < 0.999 and p[2] > 0.999
    # the lags matter: with serially correlated differentials the Newey-West variance is larger than lag 0's
    assert abs(ts.guard_gain_test(model, base, lags=5)[0][1]) < abs(ts.guard_gain_test(model, base, lags=0)[0][1])
    s, p = ts.guard_gain_test(base - 1.0, base)  # a constant gain: certain
    assert np.all(np.isneginf(s)) and np.all(p == 0)
    with pytest.raises(ValueError, match="lags"):
        ts.guard_gain_test(model, base, lags=60)


def test_cross_fit_leaves_out_the_block_and_its_gap():
    f, r = _residuals(4, b=30)
    alphas, oof = ts.cross_fit_lead_guard(f, r, folds=3, gap=2)
    assert alphas.shape == (3, 3) and oof.shape == f.shape
    np.testing.assert_allclose(oof[:10], alphas[0][None, :, None] * f[:10])
    # fold 0 is windows 0-9: windows 10-11 are its gap, so changing them leaves its alpha alone ...
    r2 = r.copy()
    r2[10:12] = -5 * f[10:12]
    assert np.array_equal(ts.cross_fit_lead_guard(f, r2, folds=3, gap=2)[0][0], alphas[0])
    # ... but not without the gap
    assert not np.array_equal(ts.cross_fit_lead_guard(f, r2, folds=3, gap=0)[0][0],
                              ts.cross_fit_lead_guard(f, r, folds=3, gap=0)[0][0])
    with pytest.raises(ValueError, match="folds"):
        ts.cross_fit_lead_guard(f, r, folds=31)
    with pytest.raises(ValueError, match="no fitting windows"):
        ts.cross_fit_lead_guard(f, r, folds=2, gap=15)


@pytest.mark.parametrize("rule", ["val", "cv", "dm", "shrink"])
def test_guard_rules_match_the_brute_force_oracle(rule):
    f, r = _residuals(5, b=30)
    r = r + 0.3 * _ar1_noise(np.random.default_rng(6), *r.shape)
    alpha, info = ts.fit_guard_rule(f, r, rule, folds=3)
    np.testing.assert_allclose(alpha, ts.fit_guard_rule_reference(f, r, rule, folds=3), atol=1e-9)
    assert np.all((alpha >= 0) & (alpha <= info["alpha_val"] + 1e-12))
    # lead 1 (noise) is dropped by every out-of-sample rule, lead 2 (exact) kept by all
    assert alpha[2] > 0.5 and (rule == "val" or alpha[1] == 0.0)
    with pytest.raises(ValueError, match="rule"):
        ts.fit_guard_rule(f, r, "oracle")


def test_guard_rule_options_change_the_result():
    rng = np.random.default_rng(7)
    f = rng.normal(size=(40, 2, 3))
    r = 0.15 * f + rng.normal(size=f.shape)  # a weak signal: significant only at a loose level
    _, info = ts.fit_guard_rule(f, r, "dm")
    p = info["dm_pvalue"]
    results = set()
    for level in (0.5 * p.min(), 2.02 * p.min(), 0.99):
        a, _ = ts.fit_guard_rule(f, r, "dm", level=level)
        np.testing.assert_array_equal(a, np.where(p < level / 2, info["alpha_val"], 0.0))  # Bonferroni, H = 2
        results.add(tuple(a))
    assert len(results) >= 2 and (0.0, 0.0) in results
    _, i3 = ts.fit_guard_rule(f, r, "shrink", folds=3)
    _, i8 = ts.fit_guard_rule(f, r, "shrink", folds=8)
    assert not np.allclose(i3["oof_ratio"], i8["oof_ratio"])


def test_choose_alternative_matches_the_oracle_and_respects_leads():
    rng = np.random.default_rng(8)
    base = np.abs(rng.normal(size=(50, 3, 4))) + 1.0
    guard = base.copy()
    alt = base - 0.4 + 0.1 * rng.normal(size=base.shape)  # better than both everywhere
    for leads in (0, 1, 3):
        got = ts.choose_alternative(guard, alt, base, leads=leads)
        np.testing.assert_array_equal(got, ts.choose_alternative_reference(guard, alt, base, leads=leads))
        assert got.tolist() == [j < leads for j in range(3)]
    # an alternative worse than the guarded forecast is never chosen, however significant against the base
    assert not ts.choose_alternative(alt - 0.1, alt, base, leads=3).any()
    with pytest.raises(ValueError, match="same shape"):
        ts.choose_alternative(guard[:, :2], alt, base)


def test_rolling_conformal_margins_match_the_oracle_and_follow_a_shift():
    rng = np.random.default_rng(9)
    cal = rng.normal(size=(30, 2, 3))
    y = rng.normal(size=(40, 2, 3)) * 3.0  # the test period is three times as noisy
    lo, hi = -np.ones_like(y), np.ones_like(y)
    clo, chi = -np.ones_like(cal), np.ones_like(cal)
    kw = dict(calib_lower=clo, calib_upper=chi, calib_target=cal)
    m = ts.rolling_conformal_margins(lo, hi, y, 0.8, **kw)
    np.testing.assert_allclose(m, ts.rolling_conformal_margins_reference(lo, hi, y, 0.8, **kw))
    # the first windows (nothing of the test period known yet) get the calibration margin ...
    np.testing.assert_allclose(m[:2], np.broadcast_to(ts.conformal_margins(clo, chi, cal, 0.8), (2, 2)))
    # ... and the margins grow as the noisier windows become known; coverage beats the static margins'
    assert m[-1].min() > m[0].max()
    cov = lambda mm: float(((y >= lo - mm[..., None]) & (y <= hi + mm[..., None])).mean())  # noqa: E731
    static = np.broadcast_to(ts.conformal_margins(clo, chi, cal, 0.8), m.shape)
    assert cov(m) > cov(static) + 0.1
    # the delay matters: a longer one knows fewer windows
    assert not np.allclose(ts.rolling_conformal_margins(lo, hi, y, 0.8, delay=10, **kw), m)
    with pytest.raises(ValueError, match="delay"):
        ts.rolling_conformal_margins(lo, hi, y, 0.8, delay=0, **kw)


def _shifted(seed, b=400, n0=60, h=2, d=4):
    """Intervals right for unit noise; the calibration windows and the first half of the test have it, the
    second half of the test three times as much."""
    rng = np.random.default_rng(seed)
    cal = rng.normal(size=(n0, h, d))
    y = rng.normal(size=(b, h, d)) * np.where(np.arange(b) < b // 2, 1.0, 3.0)[:, None, None]
    q = 1.2815515655446004  # the 90% normal quantile: [-q, q] covers 80% of unit noise
    lo, hi = -q * np.ones_like(y), q * np.ones_like(y)
    kw = dict(calib_lower=-q * np.ones_like(cal), calib_upper=q * np.ones_like(cal), calib_target=cal)
    return lo, hi, y, kw


def _cov(lo, hi, y, m):
    return float(((y >= lo - m[..., None]) & (y <= hi + m[..., None])).mean())


@pytest.mark.parametrize("gamma,delay,saturate", [(0.05, None, "inf"), (0.3, 1, "inf"), (2.0, 3, "inf"), (2.0, 3, "max")])
def test_adaptive_conformal_margins_match_the_oracle(gamma, delay, saturate):
    lo, hi, y, kw = _shifted(1, b=40, n0=10)
    m, alpha = ts.adaptive_conformal_margins(lo, hi, y, 0.8, gamma=gamma, delay=delay, saturate=saturate,
                                             return_alpha=True, **kw)
    ref = ts.adaptive_conformal_margins_reference(lo, hi, y, 0.8, gamma=gamma, delay=delay, saturate=saturate, **kw)
    np.testing.assert_allclose(m, ref)
    if gamma == 2.0:  # large steps reach both edges of the level: coverage 1 asked, and coverage 0
        assert (alpha <= 0).any() and (alpha >= 1).any()
        assert np.isinf(m).any() == (saturate == "inf")


def test_adaptive_conformal_margins_recover_nominal_coverage_after_a_jump():
    lo, hi, y, kw = _shifted(2)
    static = np.broadcast_to(ts.conformal_margins(kw["calib_lower"], kw["calib_upper"], kw["calib_target"], 0.8),
                             y.shape[:2])
    rolling = ts.rolling_conformal_margins(lo, hi, y, 0.8, **kw)
    aci = ts.adaptive_conformal_margins(lo, hi, y, 0.8, gamma=0.05, **kw)
    # gamma = 0 is the rolling margins exactly: the adaptation is all in the level's update
    np.testing.assert_array_equal(ts.adaptive_conformal_margins(lo, hi, y, 0.8, gamma=0.0, **kw), rolling)
    assert _cov(lo, hi, y, static) < 0.7 and _cov(lo, hi, y, rolling) < 0.75
    assert abs(_cov(lo, hi, y, aci) - 0.8) <= 0.03
    # the paper's gamma = 0.005 barely moves the level in 400 windows: the same test would fail with it
    assert abs(_cov(lo, hi, y, ts.adaptive_conformal_margins(lo, hi, y, 0.8, **kw)) - 0.8) > 0.03


def test_adaptive_conformal_margins_reject_bad_inputs():
    lo, hi, y, kw = _shifted(3, b=10, n0=5)
    for bad in (-0.1, float("nan"), float("inf"), "0.1x"):
        with pytest.raises(ValueError, match="gamma"):
            ts.adaptive_conformal_margins(lo, hi, y, 0.8, gamma=bad, **kw)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="coverage"):
            ts.adaptive_conformal_margins(lo, hi, y, bad, **kw)
    with pytest.raises(ValueError, match="delay"):
        ts.adaptive_conformal_margins(lo, hi, y, 0.8, delay=0, **kw)
    with pytest.raises(ValueError, match="saturate"):
        ts.adaptive_conformal_margins(lo, hi, y, 0.8, saturate="big", **kw)
