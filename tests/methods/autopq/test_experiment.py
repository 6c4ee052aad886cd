"""A smoke run of the whole experiment on a small synthetic series, its resume, and the quick config."""

import json

import numpy as np
import pytest

import jaxlab.data as jd
from jaxlab.methods.autopq import METHODS, AutoPQConfig, SeriesSpec, format_report, format_table, make_windows, run


def _toy():
    t = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(24 * 60) * np.timedelta64(3600, "s")
    rng = np.random.default_rng(0)
    hour = np.arange(t.size) % 24
    w = rng.normal(size=t.size)
    y = np.maximum(0, 5 + 3 * np.sin(2 * np.pi * hour / 24) + w + 0.5 * rng.normal(size=t.size))
    s = jd.time_series(t, np.stack([y, w], 1), columns=("y", "w"), target="y", name="toy")
    return make_windows(s, SeriesSpec("toy", 6, ("w",), (0.0, None), 48, 24))


def test_smoke_run_and_resume(tmp_path, fixed_meter):
    cfg = AutoPQConfig(series=("toy",), forecaster="dlinear", cinn_epochs=3, cinn_blocks=2, forecaster_epochs=2,
                       sample_size=20, search_windows=40, qr_windows=30, default_trials=4,
                       advanced_forecasters=("persistence", "profile"), advanced_trials=2, inner_trials=3,
                       pruner_min_resource=1)
    summary = run(cfg, tmp_path, meter_factory=fixed_meter, progress=False, data={"toy": _toy()})
    methods = [r["method"] for r in summary["table"]]
    assert methods == list(METHODS)
    assert summary["status"] == "completed" and summary["series"] == ["toy"]
    for key in ("goal_no_worse_than_gaussian_every_series", "goal_mean_improvement_over_gaussian_5pct",
                "goal_tuned_beats_0.1_by_3pct", "goal_coverage_80_within_0.05", "default_kwh_total"):
        assert key in summary
    rows = {r["method"]: r for r in summary["table"]}
    assert all(np.isfinite(r["crps_quantile"]) for r in rows.values())
    assert rows["quantile_regression"]["crossings"] >= 0 and "crossing_share" in rows["quantile_regression"]
    search = summary["search"][0]
    assert search["default_trials"] == 4 and search["advanced_trials"] == 2
    assert summary["advanced_vs_default"][0]["series"] == "toy"
    for png in summary["plots"]:
        assert (tmp_path / png).is_file()
    assert (tmp_path / "series" / "toy.json").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    assert "| toy | autopq |" in format_table(summary["table"])
    tables = (tmp_path / "tables.md").read_text()
    assert tables == format_report(json.loads((tmp_path / "summary.json").read_text()))
    assert "| toy | quantile_regression |" in tables
    search_rows = [ln for ln in tables.split("## Searches")[1].split("## Goals")[0].splitlines() if ln.startswith("| toy |")]
    assert len(search_rows) == 1 and search_rows[0].split(" | ")[3] == "4"   # the default search's 4 trials
    assert "## Advanced against default mode" in tables and "advanced_kwh" in tables
    # a second run with the same workdir reuses the finished series: same table, no new measurement
    meter_calls = []
    again = run(cfg, tmp_path, meter_factory=lambda: meter_calls.append(1) or fixed_meter(), progress=False,
                data={"toy": _toy()})
    assert not meter_calls and json.dumps(again["table"]) == json.dumps(json.loads(json.dumps(summary["table"])))
    # the run's own energy counts both processes; the searches' figures are those of the kept series
    parts = json.loads((tmp_path / "energy.json").read_text())["process_reports"]
    assert summary["energy"]["processes"] == 1 and again["energy"]["processes"] == len(parts) == 2
    assert again["energy"]["run_energy_j"] == pytest.approx(sum(sum(p["energy_j"].values()) for p in parts))
    assert again["energy"]["energy_j"] == summary["energy"]["energy_j"]
    assert [p.name for p in tmp_path.glob(run.__globals__["RESUME_RECORDS"][0])] == ["toy.json"]


def test_run_refuses_unknown_series_and_forecasters(tmp_path):
    with pytest.raises(ValueError, match="unknown series"):
        run(AutoPQConfig(series=("mars",)), tmp_path)
    with pytest.raises(ValueError, match="forecasters must be among"):
        run(AutoPQConfig(series=("taylor",), forecaster="svr"), tmp_path)


def test_config_file_variants():
    from jaxlab.core import load_config

    full, module = load_config("configs/autopq/series.py")
    assert full.series == ("elecdemand", "taylor", "bikeshare", "tmy3_ghi") and full.advanced
    assert full.cinn_epochs == 100 and full.cinn_batch_size == 512 and full.cinn_blocks == 10
    assert full.default_trials == 100 and full.sample_size == 100 and callable(module.run)
    quick, _ = load_config("configs/autopq/series.py:quick")
    assert quick.series == ("tmy3_ghi",) and quick.advanced_trials == 3
    assert not load_config("configs/autopq/series.py:default_only")[0].advanced
    assert load_config("configs/autopq/series.py:cinn400")[0].cinn_epochs == 400
    with pytest.raises(Exception, match="unknown argument"):
        load_config("configs/autopq/series.py:huge")
