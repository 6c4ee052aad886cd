"""scripts/recycle_seeds.py: ``--set`` reaches every seed's config and the record, and a partial file of
another override is not resumed."""

import json

import pytest

from .load_script import load_script


@pytest.fixture(scope="module")
def rs():
    return load_script("recycle_seeds")


def _fake_run(seen):
    def run(cfg, workdir, progress=False):
        seen.append(cfg)
        row = lambda m, mae: {"model": m, "mae": mae, "mae_lead1": mae, "val_mae": mae}  # noqa: E731
        scale = 1.0 - cfg.dropout   # the fake's errors depend on the overridden field
        table = [row("recycle", 0.9 * scale), row("recycle_guarded", 0.8 * scale), row("profile", 1.0),
                 row("residual_ar", 1.0), row("persistence", 2.0), row("residual_ridge", 0.7)]
        return {"table": table, "guard_rules": []}
    return run


def test_set_overrides_each_seed_and_is_recorded(rs, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(rs, "run", _fake_run(seen))
    out = tmp_path / "r.json"
    argv = ["configs/recycle/taylor.py:quick", "--seeds", "0", "1", "--set", "dropout=0.5",
            "--set", "exogenous_resolution=step", "--out", str(out)]
    assert rs.main(argv) == 0
    assert [(c.seed, c.dropout, c.exogenous_resolution) for c in seen] == [(0, 0.5, "step"), (1, 0.5, "step")]
    rec = json.loads(out.read_text())
    assert rec["overrides"] == ["dropout=0.5", "exogenous_resolution=step"]
    assert rec["config_fields"]["dropout"] == 0.5
    assert rec["mean"]["recycle_guarded"]["mae"] == pytest.approx(0.4)
    assert rec["goals"]["guarded_15pct_better_than_profile"]


def test_partial_of_other_overrides_is_not_resumed(rs, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(rs, "run", _fake_run(seen))
    out = tmp_path / "r.json"
    partial = tmp_path / "r.json.partial.json"
    done = {"seed": 0, "table": _fake_run([])(rs.load_config("configs/recycle/taylor.py:quick")[0], None)["table"],
            "guard_rules": []}
    partial.write_text(json.dumps({"config": "configs/recycle/taylor.py:quick", "quantiles": [0.1, 0.5, 0.9],
                                   "overrides": ["dropout=0.2"], "runs": [done]}))
    assert rs.main(["configs/recycle/taylor.py:quick", "--seeds", "0", "--set", "dropout=0.5", "--out", str(out)]) == 0
    assert [c.seed for c in seen] == [0]           # recomputed: the saved seed had another dropout
    partial.write_text(json.dumps({"config": "configs/recycle/taylor.py:quick", "quantiles": [0.1, 0.5, 0.9],
                                   "overrides": ["dropout=0.5"], "runs": [done]}))
    seen.clear()
    assert rs.main(["configs/recycle/taylor.py:quick", "--seeds", "0", "--set", "dropout=0.5", "--out", str(out)]) == 0
    assert seen == []                              # resumed: same config, quantiles and overrides


def test_set_refuses_an_unknown_field(rs, tmp_path):
    with pytest.raises(Exception, match="nonsense"):
        rs.main(["configs/recycle/taylor.py:quick", "--set", "nonsense=1", "--out", str(tmp_path / "r.json")])
