"""Smoke runs of the approximation, closed-form-function and fixed-angle experiments, with their claims."""

import importlib.util
import logging
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxlab.methods.fwdgrad import (
    AnglesConfig,
    ApproximationConfig,
    FunctionsConfig,
    run_angles,
    run_approximation,
    run_functions,
)
from jaxlab.methods.fwdgrad._functions import compare_cells, log_grid, sign_test, steps_for

ROOT = Path(__file__).resolve().parents[3]


def test_approximation_projection_beats_the_mean_sample_by_sample(tmp_path):
    s = run_approximation(ApproximationConfig(dims=(1, 4, 32), tangents=(1, 8), samples=40), tmp_path)
    assert s["projection_cosine_ge_mean_every_sample_k_ge_2"] and s["cells_k_ge_2"] == 3
    cells = {(r["n"], r["k"]): r for r in s["table"]}
    assert cells[4, 8]["cos_projection"] == pytest.approx(1.0, abs=1e-5)  # k >= n: the gradient itself
    assert cells[4, 8]["cos_mean"] < 0.99 and cells[32, 1]["cos_projection"] == pytest.approx(cells[32, 1]["cos_mean"])
    assert s["margin_cells"] == 2 and s["one_dimensional_cells"]  # (4, 8), (32, 8); n = 1 apart
    assert s["projection_ahead_by_0.05_where_k_over_n_ge_0.25"] == (s["min_margin_where_k_over_n_ge"] >= 0.05)
    assert (tmp_path / "approximation_quality.png").is_file()


def test_function_budget_grid_and_sign_test():
    assert steps_for(1024, 2, 10.0) == 5120 and steps_for(16, 16, 10.0) == 10
    assert log_grid(1e-2, 1.0, 4) == [0.01, 0.01778, 0.03162, 0.05623, 0.1, 0.1778, 0.3162, 0.5623, 1.0]
    assert sign_test(5, 0) == pytest.approx(1 / 32) and sign_test(0, 0) == 1.0


def test_functions_with_k_equal_n_projection_is_gradient_descent(tmp_path):
    # One function (each is three compilations): Rosenbrock, whose gradient couples the coordinates.
    config = FunctionsConfig(functions=("rosenbrock",), dims=(8,), tangents=(8,), seeds=2, lr_per_decade=2,
                             lr_ranges=(("backprop", 1e-4, 1.0), ("projection", 1e-4, 1.0), ("mean", 1e-4, 1.0)))
    s = run_functions(config, tmp_path)
    rows = {(r["function"], r["method"]): r for r in s["table"]}
    p, b = rows["rosenbrock", "projection"], rows["rosenbrock", "backprop"]
    assert p["lr"] == b["lr"] and p["median_score"] == pytest.approx(b["median_score"], rel=1e-3, abs=1e-9)
    assert p["steps"] == 10
    assert s["qualifying_cells"] == 1 and s["projection_wins"] == 1 and not s["projection_passes"]  # p = 0.5
    cells, verdict = compare_cells(s["table"], config)
    assert verdict["sign_test_p"] == pytest.approx(0.5) and cells[0]["winner"] == "projection"


def test_fixed_angle_projection_is_the_same_at_every_angle(tmp_path, caplog):
    config = AnglesConfig(n=12, tangents=(4,), angles=(20.0, 90.0), samples=30, opt_tangents=(4,), seeds=2,
                          lr_per_decade=1, min_steps=5, steps_per_dim=1.0)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        s = run_angles(config, tmp_path)
    # The angle is traced: one program per k for the cosines, one per (k, aggregation) for the descent.
    compiled = [r.getMessage() for r in caplog.records if "Finished XLA compilation of" in r.getMessage()]
    assert sum("jit(cosines)" in m for m in compiled) == 1 and sum("jit(run)" in m for m in compiled) == 2
    assert s["projection_cosine_independent_of_angle"] and s["mean_cosine_falls_as_angle_shrinks"]["4"]
    at = {r["angle"]: r for r in s["approximation"]}
    assert at[90.0]["cos_mean"] == pytest.approx(at[90.0]["cos_projection"], abs=1e-4)  # orthonormal: same direction
    assert at[20.0]["cos_mean"] < at[90.0]["cos_mean"] - 0.05
    assert len(s["optimisation"]) == 2 and all(np.isfinite(c["projection"]) for c in s["optimisation"])


def _config(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / "fwdgrad" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["approximation", "functions", "angles"])
def test_config_variants(name):
    module = _config(name)
    from jaxlab.core._config import validate_config

    configs = [module.get_config(arg) for arg in (None, "quick")]
    for c in configs:
        validate_config(c)  # raises ConfigError on a value outside its constraints
    assert configs[0] != configs[1], "quick must be smaller than the default"
    with pytest.raises(ValueError, match="unknown argument"):
        module.get_config("bogus")
    with pytest.raises(ValueError, match="unknown argument"):
        module.get_config("nope")
