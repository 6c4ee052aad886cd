"""Jigsaw WeatherMixer on a mesh data 2 (across two local processes) x space 2 x tensor 2 (inside each)
equals the single-process run on 8 devices, step by step."""

from __future__ import annotations

import json

import numpy as np

from ._launch import start, start_pair, tail, wait

SETS = ["--set", "mesh=2,2,2", "--set", "shrink_mesh=false", "--set", "num_steps=3", "--set", "log_every=1",
        "--set", "batch_size=4", "--set", "checkpoint_every=0"]
CONFIG = "configs/weathermixer/smoke.py:tiny"


def _losses(workdir):
    recs = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["split"] == "train"}


def test_weathermixer_data_across_processes_equals_one_process(tmp_path):
    single = start(["run", CONFIG, *SETS, "--workdir", str(tmp_path / "single")], tmp_path / "single.log",
                   devices=8)
    pair = start_pair(["run", CONFIG, *SETS, "--workdir", str(tmp_path / "two")], tmp_path, "two")
    codes = wait(pair)
    assert codes == [0, 0], [tail(p) for p in pair]
    assert wait([single]) == [0], tail(single)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text(encoding="utf-8"))
    assert summary["mesh"] == {"data": 2, "space": 2, "tensor": 2}
    assert summary["num_processes"] == 2
    a, b = _losses(tmp_path / "single"), _losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    np.testing.assert_allclose([b[s] for s in (1, 2, 3)], [a[s] for s in (1, 2, 3)], rtol=1e-6, atol=1e-7)
    assert a[1] != a[3]  # it trained
    # Each process wrote its own shards of the checkpoint (orbax OCDBT: one process folder each).
    ckpt = tmp_path / "two" / "checkpoints" / "3" / "default"
    assert (ckpt / "ocdbt.process_0").is_dir() and (ckpt / "ocdbt.process_1").is_dir()
