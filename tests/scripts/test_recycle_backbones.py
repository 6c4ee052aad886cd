"""scripts/recycle_backbones.py: each row's warm-up and loop split the run, and the loop ratios follow from
them (DLinear raw and wrapped, three steps: small compilations)."""

import json

import pytest

from .load_script import load_script


@pytest.fixture(scope="module")
def rb():
    return load_script("recycle_backbones")


def test_rows_split_warmup_and_loop(rb, tmp_path):
    out = tmp_path / "b.json"
    assert rb.main(["--steps", "3", "--only", "dlinear", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    rows = {r["wrapped"]: r for r in rec["rows"]}
    assert set(rows) == {False, True}
    for r in rows.values():
        assert r["loop_steps"] == 2
        assert 0 < r["warmup_s"] and 0 < r["loop_s"] and r["warmup_s"] + r["loop_s"] <= r["time_s"]
        assert 0 <= r["warmup_energy_j"] and 0 <= r["loop_energy_j"]
        assert r["warmup_energy_j"] + r["loop_energy_j"] <= r["energy_j"] * (1 + 1e-9)
    ratio = rec["ratios"]["dlinear"]
    assert ratio["loop_time_ratio"] == pytest.approx(rows[False]["loop_s"] / rows[True]["loop_s"])
    assert ratio["loop_energy_ratio"] == pytest.approx(rows[False]["loop_energy_j"] / rows[True]["loop_energy_j"])
    assert ratio["time_ratio"] == pytest.approx(rows[False]["time_s"] / rows[True]["time_s"])
