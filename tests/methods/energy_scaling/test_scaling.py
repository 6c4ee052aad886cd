"""The scaling study: the energy fit against its closed form, and a tiny end-to-end grid."""

import json

import numpy as np
import pytest

from jaxlab.methods.energy_scaling import (
    ScalingConfig,
    fit_energy,
    fit_energy_reference,
    make_fields,
    parse_run,
    run,
)


def test_fit_energy_matches_closed_form():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2, 12)
    y = 3.5e5 * x + 120.0 + rng.normal(0, 10, 12)
    got, want = fit_energy(x, y), fit_energy_reference(x, y)
    np.testing.assert_allclose(got["a_j_per_device_hour"], want["a_j_per_device_hour"], rtol=1e-10)
    np.testing.assert_allclose(got["b_j"], want["b_j"], rtol=1e-8)
    assert 0.99 < got["r2"] <= 1.0 and got["points"] == 12
    with pytest.raises(ValueError, match="two distinct"):
        fit_energy([1.0, 1.0], [2.0, 3.0])


def test_parse_run():
    assert parse_run("4g64l") == (4, 256, 64)
    assert parse_run("2g512G64l") == (2, 512, 64)
    with pytest.raises(ValueError, match="4g64l"):
        parse_run("4 gpus")


def test_fields_are_periodic_and_seeded():
    a = make_fields(3, 2, (8, 16), 2)
    np.testing.assert_array_equal(a, make_fields(3, 2, (8, 16), 2))
    assert a.shape == (2, 8, 16, 2) and a.dtype == np.float32 and np.std(a) > 0.1


def test_tiny_grid_end_to_end(tmp_path):
    # One grid point with accumulation (2 devices x 2 samples x 2 micro-batches) and one that needs
    # more devices than exist; the fit needs two points, so it is reported as skipped.
    config = ScalingConfig(
        models=("afno",), grid=("2g8G2l", "16g1l"), epochs=1, num_train=16, num_test=8,
        afno_embed_dim=8, afno_depth=1, afno_num_blocks=2, afno_patch_size=4, field_shape=(8, 8),
        field_channels=1)
    summary = run(config, tmp_path, progress=False)
    rows = json.loads((tmp_path / "grid.json").read_text())
    assert [(r["run"], r["accumulation"], r["steps"]) for r in rows] == [("2g8G2l", 2, 2)]
    r = rows[0]
    assert r["energy_j"] > 0 and r["device_hours"] > 0 and np.isfinite(r["eval_loss"])
    assert r["samples_per_device_hour"] == pytest.approx(16 / r["device_hours"])
    assert summary["estimated"] == r["estimated"] and summary["table"][0]["run"] == "2g8G2l"
    assert len(summary["skipped"]) == 2 and "16 devices" in summary["skipped"][0]
    assert "two distinct" in summary["skipped"][1] and summary["fits"] == {}
    assert (tmp_path / "energy_vs_device_hours.png").exists() and (tmp_path / "scaling.png").exists()
    assert (tmp_path / "grid.csv").read_text().startswith("model,run,devices")
    assert json.loads((tmp_path / "summary.json").read_text())["plots"] == summary["plots"]
