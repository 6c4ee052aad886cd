"""ReCycle's model and baselines: the profile fallback, token-order invariance, shapes, a smoke run."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab.data as jd
from jaxlab.core import tolerances
from jaxlab.methods.recycle import (RecycleConfig, ReCycleTransformer, energy_label,
                                    energy_total_j, forecast_metrics, run)
from jaxlab.timeseries import DLinear, moving_average, moving_average_reference

B, L, H, D, M = 3, 5, 2, 6, 9


def _inputs(key):
    ks = jax.random.split(key, 5)
    shapes = [(B, L, D), (B, L, D), (B, L, M), (B, H, D), (B, H, M)]
    return [jax.random.normal(k, s, jnp.float32) for k, s in zip(ks, shapes)]


@pytest.fixture(scope="module")
def recycle_model():
    """One compiled init and apply for all model tests (compilation dominates their run time)."""
    key = jax.random.key(1)
    args = _inputs(key)
    model = ReCycleTransformer(cycle_len=D, d_model=8, d_ff=8)
    params = jax.jit(model.init)(jax.random.fold_in(key, 1), *args)
    head = params["params"]["head"]
    trained = {"params": {**params["params"], "head": {
        "kernel": jax.random.normal(jax.random.fold_in(key, 2), head["kernel"].shape, head["kernel"].dtype),
        "bias": jnp.ones_like(head["bias"])}}}
    return args, params, trained, jax.jit(model.apply)


def test_zero_weights_give_the_profile(recycle_model):
    args, init_params, trained, apply = recycle_model
    zeros = jax.tree.map(jnp.zeros_like, trained)
    np.testing.assert_array_equal(apply(zeros, *args), args[3])  # the paper's fallback, exactly
    assert np.any(np.asarray(apply(trained, *args)) != np.asarray(args[3]))
    # a zero output layer alone suffices, whatever the trunk; it is the default initialisation
    assert not np.any(np.asarray(init_params["params"]["head"]["kernel"]))
    np.testing.assert_array_equal(apply(init_params, *args), args[3])


def test_no_positional_encoding_history_order_is_irrelevant(recycle_model):
    args, _, trained, apply = recycle_model
    perm = np.array([3, 0, 4, 1, 2])
    permuted = [args[0][:, perm], args[1][:, perm], args[2][:, perm], args[3], args[4]]
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(apply(trained, *permuted), apply(trained, *args), atol=atol, rtol=rtol)


def test_model_refuses_wrong_cycle_length(getkey):
    args = _inputs(getkey())
    with pytest.raises(ValueError, match="model expects 7"):
        ReCycleTransformer(cycle_len=7).init(getkey(), *args)


def test_baselines_shapes_and_moving_average(getkey):
    x = jax.random.normal(getkey(), (B, L * D), jnp.float32)
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(jax.jit(moving_average, static_argnums=1)(x, 5), moving_average_reference(np.asarray(x), 5), atol=atol, rtol=rtol)
    with pytest.raises(ValueError, match="odd"):
        moving_average(x, 4)
    dl = DLinear(horizon=H * D, kernel=5)
    assert jax.eval_shape(dl.init, getkey(), x[..., None])["params"]["trend"]["kernel"].shape == (L * D, H * D)
    # the per-step VanillaTransformer moved to jaxlab.timeseries: tests/timeseries/test_step_transformer.py


def test_energy_readings_of_both_meter_kinds():
    assert energy_total_j({"energy_j": {"cpu": 2.0, "gpu": 3.0}, "total_energy_j": 5.0}) == 5.0
    assert energy_total_j({"energy_j": 1.5}) == 1.5
    assert energy_label({"source": {"cpu": "cpu_time_tdp"}, "estimated": True}) == "cpu: cpu_time_tdp (estimated)"


def test_forecast_metrics():
    m = forecast_metrics(np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    assert m == {"mae": 1.0, "mse": 1.0, "mape_pct": 50.0}


def test_smoke_run_on_a_synthetic_series(tmp_path):
    n_days = 70
    t = np.arange(n_days * 24)
    rng = np.random.default_rng(0)
    weekday = ((t // 24) % 7 < 5).astype(float)
    y = 10 + np.sin(2 * np.pi * t / 24) + weekday + 0.1 * rng.normal(size=t.size)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    series = jd.time_series(stamps, y, columns=["load"], name="synthetic")
    config = RecycleConfig(history=3, horizon=2, num_steps=4, vanilla_steps=2, eval_every=2, d_model=8, d_ff=8,
                           vanilla_d_model=8, vanilla_d_ff=8, batch_size=8, dlinear_kernel=5, learning_rate=0.05,
                           inference_repeats=1, rhp_days=1, quantiles=(0.1, 0.5, 0.9), dropout=0.1,
                           models=("recycle", "recycle_guarded", "profile", "residual_ar", "persistence", "dlinear"))
    summary = run(config, tmp_path, series=series, progress=False)
    models = [r["model"] for r in summary["table"]]
    assert models == ["recycle", "recycle_guarded", "profile", "residual_ar", "persistence", "dlinear"]
    assert (tmp_path / "forecast.png").is_file() and (tmp_path / "metrics_recycle.jsonl").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"
    assert all(np.isfinite(r["mae"]) and r["infer_s"] >= 0 for r in summary["table"])
    assert "estimated" in summary["energy_source"] or "measured" in summary["energy_source"]
    assert all(r["train_energy_j"] >= 0 and r["infer_energy_j"] >= 0 for r in summary["table"])
    by = {r["model"]: r for r in summary["table"]}
    # model selection starts from step 0, where ReCycle (zero head) is the profile: never worse on val
    assert by["recycle"]["val_mae"] <= by["profile"]["val_mae"] + 1e-9
    assert by["recycle"]["best_step"] > 0 or by["recycle"]["val_mae"] == pytest.approx(by["profile"]["val_mae"])
    # the plain guard is fitted on val per lead: never worse there than the profile (alpha 0) or ReCycle
    # (alpha 1); every rule, with or without the AR candidate, is never worse there than the profile
    g = by["recycle_guarded"]
    rules = {(r["rule"], r["ar_leads"]): r for r in summary["guard_rules"]}
    assert set(rules) == {(rule, k) for rule in ("val", "cv", "dm", "shrink") for k in (0, 1)}
    assert rules[("val", 0)]["val_mae"] <= min(by["profile"]["val_mae"], by["recycle"]["val_mae"]) + 1e-9
    assert all(r["val_mae"] <= by["profile"]["val_mae"] + 1e-9 for r in rules.values())
    assert all(r["use_ar"] == [False, False] for (_, k), r in rules.items() if k == 0)
    # the row is the configured rule (default: dm with the AR candidate at lead 1)
    assert g["mae"] == pytest.approx(rules[("dm", 1)]["test_mae"]) and summary["guard_rule"] == "dm"
    assert g["coverage"] == pytest.approx(rules[("dm", 1)]["test_coverage"])
    assert len(summary["guard_alpha"]) == 2 and all(0 <= a <= 1 for a in summary["guard_alpha"])
    # quantile heads: pinball and the 80% interval's coverage, raw and conformalised on val
    for r in (by["recycle"], g):
        assert r["interval_level"] == pytest.approx(0.8) and 0 <= r["coverage"] <= 1 and r["pinball"] > 0
        assert 0 <= r["coverage_rolling"] <= 1 and r["interval_width_rolling"] > 0
        # ACI (the rolling pool at an online level, saturating at the largest score): finite widths
        assert 0 <= r["coverage_aci"] <= 1 and 0 < r["interval_width_aci"] < np.inf and r["aci_gamma"] == 0.05
        assert 0 <= r["aci_saturated_share"] <= 1 and 0 <= r["coverage_aci_paper_gamma"] <= 1
    assert g["coverage_aci"] == pytest.approx(rules[("dm", 1)]["test_coverage_aci"])
    assert summary["residual_ar_mae_lead1"] == by["residual_ar"]["mae_lead1"]
    # the chosen step has the lowest validation MAE of the curve, and is no worse than step 0 (the profile)
    lines = (tmp_path / "metrics_recycle.jsonl").read_text().splitlines()
    val = {r["step"]: r["val_mae"] for r in map(json.loads, filter(str.strip, lines)) if r.get("split") == "val"}
    assert 0 in val and by["recycle"]["best_step"] in val
    assert val[by["recycle"]["best_step"]] == min(val.values()) <= val[0]


def test_config_rejects_quantiles_without_median_and_bad_regularisation():
    from jaxlab.core._config import ConfigError, validate_config

    validate_config(RecycleConfig(quantiles=(0.1, 0.5, 0.9), dropout=0.1, weight_decay=1e-4))
    for bad, match in ((dict(quantiles=(0.1, 0.9)), "include 0.5"), (dict(dropout=1.0), "dropout"),
                       (dict(quantiles=(0.0, 0.5)), "quantiles")):
        with pytest.raises(ConfigError, match=match):
            validate_config(RecycleConfig(**bad))


@pytest.mark.parametrize("spec", ["elecdemand.py", "elecdemand.py:quick", "elecdemand.py:univariate",
                                  "elecdemand.py:daily_weather", "elecdemand.py:paper", "taylor.py", "taylor.py:quick",
                                  "bikeshare.py", "bikeshare.py:quick", "bikeshare.py:univariate",
                                  "bikeshare.py:daily_weather"])
def test_configs_load_and_validate(spec):
    from jaxlab.core import load_config
    from jaxlab.core._config import validate_config

    config, _ = load_config(f"configs/recycle/{spec}")
    validate_config(config)
    assert config.guard_rule == "dm" and config.guard_ar_leads == 1
    if spec.endswith(":univariate"):
        assert config.exogenous == () and config.dropout == 0.0
    # the weather configs: every step's weather in the token (chosen on validation), or the daily summary
    if config.exogenous:
        assert config.exogenous_resolution == ("day" if spec.endswith(":daily_weather") else "step")
    ridge_base = spec.startswith("bikeshare.py") and not spec.endswith((":univariate", ":daily_weather"))
    assert config.profile_correction == ("ridge" if ridge_base else "none")
    with pytest.raises(ValueError, match="unknown argument"):
        load_config(f"configs/recycle/{spec.split(':')[0]}:huge")


def test_bikeshare_windows_carry_the_weather():
    from jaxlab.core import load_config
    from jaxlab.methods.recycle import prepare_windows

    pytest.importorskip("ISLP")
    config, _ = load_config("configs/recycle/bikeshare.py")
    with_weather = prepare_windows(config)["splits"]["train"]
    daily = prepare_windows(load_config("configs/recycle/bikeshare.py:daily_weather")[0])["splits"]["train"]
    without = prepare_windows(dataclasses.replace(config, exogenous=()))["splits"]["train"]
    assert with_weather["target"].shape[2] == 24
    # every hour's temp, hum and weathersit: 72 more metadata features per token; their daily mean/min/max: 9
    assert with_weather["hist_meta"].shape[-1] == without["hist_meta"].shape[-1] + 72
    assert daily["hist_meta"].shape[-1] == without["hist_meta"].shape[-1] + 9


def test_exogenous_resolution_puts_each_step_or_the_daily_summary_in_the_tokens():
    from jaxlab.methods.recycle import prepare_windows

    n_days, d = 70, 24
    t = np.arange(n_days * d)
    rng = np.random.default_rng(1)
    temp = np.cos(2 * np.pi * t / d) * (1 + t / t.size) + 0.3 * rng.normal(size=t.size)  # varies within days
    load = 10 + np.sin(2 * np.pi * t / d) + 0.1 * rng.normal(size=t.size)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    series = jd.time_series(stamps, np.stack([load, temp], -1), columns=["load", "temp"], name="synthetic")
    config = RecycleConfig(history=3, horizon=2, rhp_days=1, fractions=(0.5, 0.25, 0.25), exogenous=("temp",))
    day = prepare_windows(config, series)
    step = prepare_windows(dataclasses.replace(config, exogenous_resolution="step"), series)
    cd = step["data"]
    tr0, tr1 = cd.bounds["train"]
    cycles = temp.reshape(n_days, d)
    lo, hi = cycles[tr0:tr1].min(), cycles[tr0:tr1].max()   # MinMax fitted on the training days
    scaled = (cycles - lo) / (hi - lo)
    for name, origins in cd.origins.items():
        s, y = step["splits"][name], day["splits"][name]
        assert s["hist_meta"].shape[-1] == 9 + d and y["hist_meta"].shape[-1] == 9 + 3
        first = origins[0]   # the first window's first forecast day; its history starts 3 days earlier
        np.testing.assert_allclose(s["hist_meta"][0, 0, 9:], scaled[first - 3], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s["fc_meta"][0, 0, 9:], scaled[first], rtol=1e-5, atol=1e-6)
        summary = [scaled[first].mean(), scaled[first].min(), scaled[first].max()]
        np.testing.assert_allclose(y["fc_meta"][0, 0, 9:], summary, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(s["hist_meta"][..., :9], y["hist_meta"][..., :9])
        np.testing.assert_array_equal(s["target"], y["target"])


def test_residual_ridge_row_uses_the_known_covariate(tmp_path):
    from jaxlab import timeseries as ts
    from jaxlab.methods.recycle import RIDGE_PENALTIES, prepare_windows

    n_days = 70
    t = np.arange(n_days * 24)
    rng = np.random.default_rng(3)
    temp = rng.uniform(size=t.size)   # independent hour to hour: no profile can forecast it, the ridge can
    y = 10 + np.sin(2 * np.pi * t / 24) + 2.0 * temp * (1 + (t % 24 > 12)) + 0.05 * rng.normal(size=t.size)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    series = jd.time_series(stamps, np.stack([y, temp], -1), columns=["load", "temp"], name="synthetic")
    # ReCycle on the ridge-corrected profile, with a learning rate too small to move its zero head
    config = RecycleConfig(history=3, horizon=2, num_steps=2, eval_every=2, d_model=8, d_ff=8, batch_size=8,
                           inference_repeats=1, rhp_days=1, learning_rate=1e-12,
                           models=("recycle", "recycle_guarded", "profile", "residual_ridge"),
                           exogenous=("temp",), profile_correction="ridge")
    summary = run(config, tmp_path / "weather", series=series, progress=False)
    by = {r["model"]: r for r in summary["table"]}
    assert summary["residual_ridge_lam"] in RIDGE_PENALTIES
    assert summary["residual_ridge_mae"] == by["residual_ridge"]["mae"] < 0.3 * by["profile"]["mae"]
    # its forecast, and its guard's fallback, is the ridge row's (the bare profile's without the correction)
    assert summary["profile_correction"] == "ridge" and summary["profile_correction_lam"] in RIDGE_PENALTIES
    for m in ("recycle", "recycle_guarded"):
        assert by[m]["mae"] == pytest.approx(by["residual_ridge"]["mae"], rel=1e-4)
        assert by[m]["val_mae"] == pytest.approx(by["residual_ridge"]["val_mae"], rel=1e-4)
    # without the covariate the same fit has only the day type and the profile (which it shrinks: the
    # one-day profile is noisy): far less gain
    splits = prepare_windows(dataclasses.replace(config, exogenous=()), series)["splits"]
    tr, te = splits["train"], splits["test"]
    x = {k: ts.residual_ridge_features(splits[k]["fc_meta"], splits[k]["fc_profile"], None) for k in ("train", "test")}
    w = ts.fit_residual_ridge(x["train"], tr["target"] - tr["fc_profile"], summary["residual_ridge_lam"])
    blind = np.abs(te["fc_profile"] + ts.residual_ridge_forecast(x["test"], w) - te["target"]).mean()
    assert blind > 0.6 * np.abs(te["fc_profile"] - te["target"]).mean()


def _synthetic_days(n_days=70, seed=0):
    t = np.arange(n_days * 24)
    rng = np.random.default_rng(seed)
    trend = 1.0 + t / t.size  # a rising level: each split's MinMax differs from train's
    y = 10 * trend + np.sin(2 * np.pi * t / 24) + ((t // 24) % 7 < 5) + 0.1 * rng.normal(size=t.size)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    return jd.time_series(stamps, y, columns=["load"], name="synthetic")


def test_reference_protocol_scales_each_split_and_runs_up_inside_it():
    from jaxlab.methods.recycle import prepare_windows

    series = _synthetic_days()
    config = RecycleConfig(history=3, horizon=2, rhp_days=1, fractions=(0.5, 0.25, 0.25))
    ours = prepare_windows(config, series)
    ref = prepare_windows(dataclasses.replace(config, protocol="reference"), series)
    cd = ref["data"]
    for name, (a, b) in cd.bounds.items():
        # the reference's (leaky) per-split MinMax: each split spans [0, 1] in its own units
        sc = ref["scalers"][name]
        raw = cd.raw_cycles[a:b]
        assert sc.offset == pytest.approx(raw.min()) and sc.scale == pytest.approx(raw.max() - raw.min())
        # histories start after a run-up of 7 * rhp_days days inside the split
        assert cd.origins[name].min() == a + 3 + 7
        np.testing.assert_allclose(sc.inverse(ref["splits"][name]["target"]),
                                   ours["scalers"][name].inverse(ours["splits"][name]["target"])[
                                       np.isin(ours["data"].origins[name], cd.origins[name])], rtol=1e-5)
    assert ref["scalers"]["test"].offset > ref["scalers"]["train"].offset
    assert all(s is ours["data"].scaler for s in ours["scalers"].values())


@pytest.mark.slow  # ~50 s on the loaded 2-core machine (one more training compile)
def test_keep_last_and_epochs_set_the_training_run(tmp_path):
    from jaxlab.energy import EnergyMeter
    from jaxlab.methods.recycle import prepare_windows
    from jaxlab.methods.recycle._experiment import _fit

    config = RecycleConfig(history=3, horizon=2, rhp_days=1, d_model=4, d_ff=4, batch_size=16, eval_every=1,
                           learning_rate=0.05, epochs=2, keep="last", init="torch", zero_head=False)
    splits = prepare_windows(config, _synthetic_days())["splits"]
    fit = _fit("recycle", config, splits, tmp_path, EnergyMeter(), jax.random.key(0))
    n_train = splits["train"]["target"].shape[0]
    assert fit["num_steps"] == 2 * -(-n_train // 16) and fit["best_step"] == fit["num_steps"]
    curve = [json.loads(x) for x in (tmp_path / "metrics_recycle.jsonl").read_text().splitlines() if x.strip()]
    assert fit["val_mae"] == pytest.approx(curve[-1]["val_mae"])  # the last step's, not the best's
