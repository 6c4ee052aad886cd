"""The MLP accuracy experiment: vmapped sweep vs separate runs, validation-only tuning, resume, configs."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import data as jdata
from jaxlab.core import tolerances
from jaxlab.methods.fwdgrad import (
    MLPConfig,
    _mlp,
    make_sweep,
    run_mlp,
    select_lr,
    split_data,
    train_mlp,
    tune_and_evaluate,
)
from jaxlab.methods.fwdgrad._activity import activity_forward_gradient
from jaxlab.nn import MLP

ROOT = Path(__file__).resolve().parents[3]
HIDDEN = (8,)
TINY = MLPConfig(datasets=("digits",), hidden=HIDDEN, methods=("backprop", "mean", "projection_per_leaf"),
                 tangents=(2,), epochs=(2,), train_size=(256,), validation=(128,), batch_size=32, seeds=2,
                 tune_seeds=(7,), lr_grid_size=2, max_extensions=0,
                 lr_centers=(("backprop", 0.1, 0.0), ("mean", 0.01, 1.0), ("projection_per_leaf", 0.1, 0.0)))


@pytest.fixture(scope="module")
def digits():
    return split_data(jdata.load_digits(), validation=128, train_size=256)


def test_split_data_carves_disjoint_validation_from_train():
    ds = jdata.load_digits()
    s = split_data(ds, validation=100, train_size=300)
    assert s.x_train.shape == (300, 64) and s.x_val.shape == (100, 64)
    np.testing.assert_array_equal(s.x_test, ds.x_test.reshape(len(ds.x_test), -1))
    rows = {r.tobytes() for r in ds.x_train.reshape(len(ds.x_train), -1)}
    train, val = {r.tobytes() for r in s.x_train}, {r.tobytes() for r in s.x_val}
    assert train <= rows and val <= rows
    # Identical images may occur twice in the data, so compare indices through a second split instead.
    s2 = split_data(ds, validation=100)
    assert len(s2.x_train) + len(s2.x_val) == len(ds.x_train)
    np.testing.assert_array_equal(split_data(ds, validation=100, train_size=300).x_val, s.x_val)
    with pytest.raises(ValueError, match="train_size"):
        split_data(ds, validation=100, train_size=len(ds.x_train))


@pytest.mark.parametrize("method", ["backprop", "projection_per_leaf", "activity_projection"])
def test_vmapped_sweep_equals_separate_runs(digits, method):
    seeds, lrs = (3, 5), (0.05, 0.01)
    sweep = make_sweep(HIDDEN, digits.num_classes, method, 2, "simulated", 32, 2)
    params, val, loss = sweep(jnp.stack([jax.random.key(s) for s in seeds]), jnp.asarray(lrs, jnp.float32),
                              digits.x_train, digits.y_train, digits.x_val, digits.y_val)
    atol, rtol = tolerances(jnp.float32)
    for r, (s, lr) in enumerate(zip(seeds, lrs)):
        one = train_mlp(digits, hidden=HIDDEN, method=method, k=2, lr=lr, epochs=2, batch_size=32, seed=s)
        jax.tree_util.tree_map(lambda a, b, r=r: np.testing.assert_allclose(a[r], b, atol=10 * atol, rtol=10 * rtol),
                               params, one["params"])
        np.testing.assert_allclose(loss[r], one["loss_curve"], rtol=10 * rtol)
        np.testing.assert_allclose(val[r], one["val_curve"], atol=1.5 / len(digits.y_val))
    assert np.all(np.isfinite(np.asarray(loss)))


@pytest.mark.parametrize("aggregation", ["projection", "mean"])
def test_activity_forward_gradient_exact_with_a_full_basis_and_unbiased(getkey, aggregation):
    # n_act = 6 + 5 + 3 = 14 activity dimensions per sample: 14 tangents span them, so the projection recovers
    # every activity gradient and the local backward passes give the backprop gradient.
    model = MLP(features=(6, 5, 3))
    x = jax.random.normal(getkey(), (7, 4), jnp.float64)
    y = jnp.arange(7) % 3
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(getkey(), x)["params"])

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

    g = jax.grad(loss)(params)
    if aggregation == "projection":
        est, value, _ = activity_forward_gradient(params, x, y, key=getkey(), num_tangents=14, aggregation="projection")
        np.testing.assert_allclose(value, loss(params), rtol=1e-12)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-10), est, g)
    else:
        # One tangent, mean: unbiased; average over many keys (statistical bound with a fixed key).
        keys = jax.random.split(getkey(), 4000)
        ests = jax.vmap(lambda k: activity_forward_gradient(params, x, y, key=k, num_tangents=1,
                                                            aggregation="mean")[0])(keys)
        avg = jax.tree_util.tree_map(lambda a: a.mean(0), ests)
        flat = lambda t: jnp.concatenate([a.ravel() for a in jax.tree_util.tree_leaves(t)])
        assert float(jnp.linalg.norm(flat(avg) - flat(g)) / jnp.linalg.norm(flat(g))) < 0.15


def test_sweep_compiles_once_per_setting(digits):
    sweep = make_sweep(HIDDEN, digits.num_classes, "mean", 2, "simulated", 32, 2)
    assert make_sweep(HIDDEN, digits.num_classes, "mean", 2, "simulated", 32, 2) is sweep
    args = (digits.x_train, digits.y_train, digits.x_val, digits.y_val)
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    sweep(keys, jnp.asarray([0.1, 0.2], jnp.float32), *args)
    size = sweep._cache_size()
    sweep(keys, jnp.asarray([0.3, 0.4], jnp.float32), *args)
    assert sweep._cache_size() == size


def test_select_lr_edges_ties_and_nan():
    assert select_lr([0.1, 0.2, 0.4], [0.5, 0.7, 0.6]) == (1, None)
    assert select_lr([0.1, 0.2, 0.4], [0.9, 0.7, 0.6]) == (0, "low")
    assert select_lr([0.4, 0.1, 0.2], [0.9, 0.1, 0.2]) == (0, "high")
    assert select_lr([0.1, 0.2, 0.4], [0.5, 0.7, 0.7]) == (1, None)  # ties: the smaller rate
    assert select_lr([0.1, 0.2, 0.4], [0.5, float("nan"), 0.6]) == (2, "high")


def test_learning_rate_is_chosen_on_validation_only(digits):
    config = dataclasses.replace(TINY, lr_grid_size=3, seeds=2)
    a = tune_and_evaluate(digits, config, method="mean", k=2, epochs=2)
    rng = np.random.default_rng(0)
    scrambled = digits._replace(y_test=rng.permutation(digits.y_test), x_test=digits.x_test[::-1].copy())
    b = tune_and_evaluate(scrambled, config, method="mean", k=2, epochs=2)
    assert a["lr"] == b["lr"] and a["lr_grid"] == b["lr_grid"]
    assert a["val_accuracy_grid"] == b["val_accuracy_grid"]
    assert a["seed_accuracies"] != b["seed_accuracies"]
    assert a["val_accuracy_tuned"] == max(a["val_accuracy_grid"])


def test_grid_extends_past_a_winning_edge(digits, monkeypatch):
    # Fake tuning runs whose validation accuracy peaks at lr = 0.5, far above the initial grid {1e-3, 2e-3}.
    real = _mlp._run_batched

    def fake(sweep, splits, runs, width):
        out = real(sweep, splits, runs[:1], width)[:1] * len(runs)
        return [(p, np.full(2, 1.0 - np.log(lr / 0.5) ** 2 / 100), l) for (p, _, l), (lr, _) in zip(out, runs)]

    monkeypatch.setattr(_mlp, "_run_batched", fake)
    config = dataclasses.replace(TINY, lr_centers=(("backprop", 2e-3, 0.0),), lr_grid_size=2, max_extensions=2)
    row = tune_and_evaluate(digits, config, method="backprop", k=0, epochs=2)
    assert row["lr_grid"] == sorted(row["lr_grid"]) and len(row["lr_grid"]) == 2 + 2 * config.seeds
    assert row["lr"] == max(row["lr_grid"]) == 2e-3 * 2.0 ** 4 and row["lr_at_edge"] == "high"
    config = dataclasses.replace(config, lr_centers=(("backprop", 0.5, 0.0),), lr_grid_size=3)
    row = tune_and_evaluate(digits, config, method="backprop", k=0, epochs=2)
    assert row["lr"] == 0.5 and row["lr_at_edge"] is None and len(row["lr_grid"]) == 3


def test_final_seeds_that_diverge_lower_the_rate(digits, monkeypatch):
    # The tuning seed does best at lr = 0.5, but the fresh seeds diverge there: one step down, 0.25.
    real = _mlp._run_batched

    def fake(sweep, splits, runs, width):
        out = real(sweep, splits, runs[:1], width)[:1] * len(runs)
        return [(p, np.full(2, 1.0 - np.log(lr / 0.5) ** 2 / 100),
                 np.full(2, np.nan if (lr >= 0.5 and seed < 1000) else 1.0)) for (p, _, _), (lr, seed) in zip(out, runs)]

    monkeypatch.setattr(_mlp, "_run_batched", fake)
    config = dataclasses.replace(TINY, lr_centers=(("backprop", 0.5, 0.0),), lr_grid_size=3, tune_seeds=(1000,))
    row = tune_and_evaluate(digits, config, method="backprop", k=0, epochs=2)
    assert row["lr"] == 0.25 and row["divergence_backoffs"] == 1 and np.isfinite(row["final_train_loss"])
    row = tune_and_evaluate(digits, dataclasses.replace(config, max_backoffs=0), method="backprop", k=0, epochs=2)
    assert row["lr"] == 0.5 and row["divergence_backoffs"] == 0 and np.isnan(row["final_train_loss"])


def test_run_writes_summary_plot_and_resumes(tmp_path, monkeypatch):
    summary = run_mlp(TINY, tmp_path)
    assert summary["status"] == "completed"
    assert (tmp_path / "mlp_accuracy.png").is_file()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["method"], r["k"]) for r in on_disk["table"]] == [("backprop", None), ("mean", 2),
                                                                ("projection_per_leaf", 2)]
    assert isinstance(summary["projection_per_leaf_beats_mean_every_k"], bool)
    assert summary["projection_beats_mean_every_k"] is None
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3

    def fail(*args, **kwargs):
        raise AssertionError("finished groups must not be retrained")

    monkeypatch.setattr(_mlp, "tune_and_evaluate", fail)
    again = run_mlp(TINY, tmp_path)
    assert again["table"] == summary["table"]


def _config_module():
    spec = importlib.util.spec_from_file_location("mlp_config", ROOT / "configs" / "fwdgrad" / "mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arg", [None, "cpu", "quick"])
def test_config_variants_are_consistent(arg):
    config = _config_module().get_config(arg)
    _mlp._check(config)
    for m in config.methods:
        for k in config.tangents:
            assert len(_mlp.lr_grid(config, m, k)) == config.lr_grid_size
