"""PCC + RHP around a forecaster: the in-window profile against the NumPy tables, the fallback, the wrapping."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab.data as jd
from jaxlab import timeseries as ts
from jaxlab.core import tolerances

from .zoo_helpers import quick_jit, random_variables

D, LC, HC = 4, 7, 2  # steps per cycle, history and horizon cycles


def _calendar(num_days, holidays=(3,)):
    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + np.timedelta64(num_days, "D"))
    hol = np.isin(np.arange(num_days), holidays)
    return jd.cycle_metadata(dates, hol), jd.day_types(dates, hol)


def test_window_rhp_matches_profile_windows(draw):
    """Every day type occurs in the 14-day history, so the in-window profile is the series-wide last_rhp."""
    n = 16
    x = np.asarray(draw((n, D), jnp.float64), np.float64)
    meta, types = _calendar(n, holidays=(3, 9))
    hist_ref, fc_ref = ts.profile_windows(x, types, np.array([14]), history=14, horizon=2, n=3)
    onehot = np.asarray(quick_jit(ts.day_type_onehot)(meta))
    np.testing.assert_array_equal(np.argmax(onehot, -1), types)
    rhp = quick_jit(ts.window_rhp, static_argnums=3)     # one compilation for both windows below
    tokens = x[None, :14].astype(np.float32)
    hist, fc = rhp(tokens, onehot[None, :14], onehot[None, 14:], 3)
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(hist, hist_ref, atol=atol, rtol=rtol)
    np.testing.assert_allclose(fc, fc_ref, atol=atol, rtol=rtol)
    # a type absent from the history falls back to the mean of the last 3 cycles
    only_workdays = np.zeros((1, 14, 3), onehot.dtype)
    only_workdays[..., 0] = 1.0
    saturday = np.zeros((1, 2, 3), onehot.dtype)
    saturday[..., 1] = 1.0
    _, fc = rhp(tokens, only_workdays, saturday, 3)
    np.testing.assert_allclose(fc[0, 0], x[11:14].mean(0), atol=atol, rtol=rtol)
    with pytest.raises(ValueError, match="8 features"):
        ts.day_type_onehot(jnp.zeros((2, 7)))


@pytest.fixture(scope="module")
def recycle_model():
    cfg = ts.recycle_config(history_cycles=LC, horizon_cycles=HC, cycle_len=D, mark_features=9, d_model=8, d_ff=8)
    model = cfg.module()
    # make_forecaster's initialisation, compiled through quick_jit (the head is zero whatever the compiler)
    params = quick_jit(model.init)(jax.random.key(0), jnp.zeros((1, cfg.input_len, cfg.channels), jnp.float32))
    return cfg, model, params


def _window(draw):
    """A window and its per-cycle marks, as NumPy arrays (eager jnp slicing compiles each op on its own)."""
    meta, _ = _calendar(LC + HC)
    x = np.asarray(draw((2, LC * D, 1), jnp.float64))
    marks = np.broadcast_to(np.asarray(meta, np.float32), (2, LC + HC, 9))
    return x, marks[:, :LC], marks[:, LC:]


@functools.partial(quick_jit, static_argnums=3)
def _window_profiles(x, hist_marks, fc_marks, n):
    """The window's own ``last_rhp`` profiles of its history and forecast cycles (one compilation)."""
    tokens = x.reshape(x.shape[0], LC, D)
    return ts.window_rhp(tokens, ts.day_type_onehot(hist_marks), ts.day_type_onehot(fc_marks), n)


def _perturbed(params, seed):
    """The parameters with every leaf moved (the zero head among them), so that the backbone's output matters.

    NumPy draws and adds the moves: eager ``jax.random`` would compile a sampler for every leaf shape, and an
    eager add an adder.
    """
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: np.asarray(p) + (0.3 * rng.normal(size=p.shape)).astype(p.dtype), params)


def test_zero_head_forecasts_the_profile_and_training_moves_it(recycle_model, draw):
    cfg, model, params = recycle_model
    x, hm, fm = _window(draw)
    _, fp = _window_profiles(x, hm, fm, cfg.rhp_days)
    apply = quick_jit(model.apply)
    y = apply(params, x, hm, fm)
    assert y.shape == (2, HC * D, 1)
    np.testing.assert_array_equal(y, np.asarray(fp).reshape(2, HC * D, 1))  # the fallback, exactly
    # per-step marks give the same forecast as per-cycle marks (the wrapper reads each cycle's first step)
    np.testing.assert_array_equal(apply(params, x, np.repeat(hm, D, 1), np.repeat(fm, D, 1)), y)
    moved = _perturbed(params, 1)
    assert not np.allclose(apply(moved, x, hm, fm), y)


def test_no_positional_encoding_history_order_is_irrelevant(recycle_model, draw):
    """Permuting whole history cycles together with their marks, and passing their profiles, changes nothing."""
    cfg, model, params = recycle_model
    x, hm, fm = _window(draw)
    moved = _perturbed(params, 2)
    tokens = x.reshape(2, LC, D)
    hp, fp = (np.asarray(a) for a in _window_profiles(x, hm, fm, cfg.rhp_days))
    perm = np.array([3, 0, 6, 1, 5, 2, 4])
    apply = quick_jit(model.apply)                    # one compilation: both calls have the same shapes
    y = apply(moved, x, hm, fm, hist_profile=hp.reshape(2, -1, 1), fc_profile=fp.reshape(2, -1, 1))
    yp = apply(moved, tokens[:, perm].reshape(2, -1, 1), hm[:, perm], fm,
               hist_profile=hp[:, perm].reshape(2, -1, 1), fc_profile=fp.reshape(2, -1, 1))
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(yp, y, atol=10 * atol, rtol=10 * rtol)


def test_wrapper_around_dlinear_is_fold_residual_unfold(draw):
    """Around DLinear (no marks), the wrapper is: fold into cycles, subtract the profile, DLinear, add it back."""
    bb = ts.DLinearConfig(kernel=3)
    cfg = ts.PCCRHPConfig(backbone=bb, history_cycles=LC, horizon_cycles=HC, cycle_len=D, calendar=False,
                          profile_marks=False)
    x = np.asarray(draw((3, LC * D, 1), jnp.float64))
    model = cfg.module()
    params = _perturbed(random_variables(model, x), 3)   # init's tree (every value is moved anyway)
    inner = cfg.backbone_config().module()
    tokens = x.reshape(3, LC, D)
    prof = tokens[:, -3:].mean(1, keepdims=True)           # one day type: the last 3 cycles
    want = quick_jit(inner.apply)({"params": params["params"]["DLinear_0"]}, tokens - prof) + prof
    atol, rtol = tolerances(jnp.float32)
    y = quick_jit(model.apply)(params, x)
    np.testing.assert_allclose(y, want.reshape(3, HC * D, 1), atol=atol, rtol=rtol)
    raw = dataclasses.replace(cfg, residual=False).module()
    assert not np.allclose(quick_jit(raw.apply)(params, x), y, atol=1e-3)
    with pytest.raises(ValueError, match="reads no marks"):
        dataclasses.replace(cfg, profile_marks=True).module()
    with pytest.raises(ValueError, match="num_outputs"):
        dataclasses.replace(cfg, quantiles=(0.1, 0.9)).module()


def test_quantile_heads_and_zoo_backbone_shapes():
    q = ts.recycle_config(history_cycles=LC, horizon_cycles=HC, cycle_len=D, quantiles=(0.1, 0.5, 0.9),
                          d_model=8, d_ff=8)
    x = jnp.zeros((2, LC * D, 1))
    out = jax.eval_shape(lambda k: q.module().apply(q.module().init(k, x), x), jax.random.key(0))
    assert out.shape == (2, HC * D, 1, 3)
    # the zoo's Transformer over cycle tokens; its label_len of 48 steps becomes history_cycles // 2
    tcfg = ts.PCCRHPConfig(backbone=ts.TransformerConfig(d_model=8, n_heads=2, d_ff=8, e_layers=1),
                           history_cycles=LC, horizon_cycles=HC, cycle_len=D, calendar=False)
    assert tcfg.backbone_config().label_len == LC // 2
    assert tcfg.backbone_config().time_features == D  # the profile of each cycle as marks
    out = jax.eval_shape(lambda k: tcfg.module().apply(tcfg.module().init(k, x), x), jax.random.key(0))
    assert out.shape == (2, HC * D, 1)
    with pytest.raises(ValueError, match="quantiles must lie"):
        dataclasses.replace(q, quantiles=(0.0, 0.5)).module()
