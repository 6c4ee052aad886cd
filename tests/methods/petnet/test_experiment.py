"""Smoke runs of the configs: the experiment, its resume, and the tiny GPU check."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from jaxlab.methods import petnet

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "petnet"


def _config(name, arg):
    spec = importlib.util.spec_from_file_location(f"petnet_cfg_{name}", CONFIGS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def test_reduced_smoke_run_and_resume(tmp_path):
    config = _config("reduced", "smoke")
    s = petnet.run(config, tmp_path, progress=False)
    assert s["status"] == "completed" and 0.0 <= s["petnet_f1"] <= 1.0
    assert {r["method"] for r in s["baselines"]} == {"scw", "scw_geometry", "scw_geometry_single_good",
                                                     "scw_calibrated"}
    assert s["scw_geometry_single_good_f1"] >= s["scw_geometry_f1"]
    assert s["throughput"]["scw_jit_hits"]["samples_per_s"] > 0
    assert (tmp_path / "f1.png").exists() and (tmp_path / "summary.json").exists()
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["seed"] == 0
    # started again: the finished training run is not redone or written twice
    s2 = petnet.run(dataclasses.replace(config, throughput_batch=0), tmp_path, progress=False)
    assert (tmp_path / "runs.jsonl").read_text().splitlines() == lines
    assert s2["petnet_f1"] == s["petnet_f1"]
    assert "| method |" in petnet.format_table(s2)


def test_configs_and_tiny_gpu_check():
    for arg in (None, "quick", "table", "smoke"):
        c = _config("reduced", arg)
        assert c.headline in c.variants
    clinical = _config("clinical", None)
    assert clinical.get_preset().num_crystals == 240 and clinical.epochs >= 10
    with pytest.raises(ValueError, match="unknown argument"):
        _config("reduced", "bogus")
    out = petnet.gpu_check(budget_s=120.0, tiny=True, epochs=1)
    assert out["epochs"] == 1 and out["tiny"] and 0.0 <= out["f1"] <= 1.0 and out["s_per_epoch"] > 0
    assert set(out) >= {"scw_f1", "scw_geometry_f1", "scw_calibrated_f1", "goal_10_epochs_in_budget"}
