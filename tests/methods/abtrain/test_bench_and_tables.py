"""The saving split, and the low-rank matmul / SVD check the GPU suite runs (tiny on CPU, VGG16's fc1 on a GPU)."""

import pytest

from jaxlab.methods import abtrain


def test_saving_split_adds_up():
    dp = {"intra_bytes": 100.0, "inter_bytes": 40.0}
    schedule_only = {"intra_bytes": 120.0, "inter_bytes": 14.0}
    ab = {"intra_bytes": 50.0, "inter_bytes": 13.0}
    rows = {r["bytes"]: r for r in abtrain.split_saving(ab, dp, schedule_only)}
    inter = rows["inter"]
    assert inter["ab_over_dp"] == pytest.approx(13 / 40) and inter["schedule_share"] == pytest.approx(26 / 40)
    assert inter["low_rank_share"] == pytest.approx(1 / 40)
    assert inter["schedule_share"] + inter["low_rank_share"] == pytest.approx(inter["saving"])
    assert rows["intra"]["schedule_share"] == pytest.approx(-0.2)  # groups move the reduction inside the nodes
    assert rows["total"]["dp_GB"] == pytest.approx(140 / 1e9)


@pytest.mark.slow  # CI runs the same tiny check through scripts/gpu_suite.py --tiny (tests/scripts)
def test_lowrank_benchmark_tiny_runs_on_cpu():
    out = abtrain.lowrank_benchmark("tiny", repeats=1, svd_repeats=1, ranks=(8,))
    (row,) = out["lowrank"]
    assert row["rank"] == 8 and row["max_rel_error"] < 0.1 and row["forward"]["median_s"] > 0
    assert out["svd"]["shape"] == [512, 256] and out["dense"]["train"]["median_s"] > 0
    with pytest.raises(ValueError, match="unknown size"):
        abtrain.lowrank_benchmark("huge")


@pytest.mark.gpu
def test_lowrank_benchmark_vgg16_fc1_on_a_gpu():
    out = abtrain.lowrank_benchmark("vgg16", repeats=5)
    assert out["backend"] == "gpu" and out["svd"]["shape"] == [25088, 4096]
    assert all(r["max_rel_error"] < 0.1 for r in out["lowrank"])
