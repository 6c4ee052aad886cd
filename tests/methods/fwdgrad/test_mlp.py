"""The MLP accuracy experiment: vmapped sweep vs separate runs, validation-only tuning, resume, configs."""

import dataclasses
import functools
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

from ...compile_helpers import quick_jit

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


@pytest.mark.parametrize("method", ["projection_per_leaf", "activity_projection"])
def test_vmapped_sweep_equals_separate_runs(digits, method):
    seeds, lrs = (3, 5), (0.05, 0.01)
    sweep = make_sweep(HIDDEN, digits.num_classes, method, 2, "simulated", 32, 2)
    out = sweep(jnp.stack([jax.random.key(s) for s in seeds]), jnp.asarray(lrs, jnp.float32),
                digits.x_train, digits.y_train, digits.x_val, digits.y_val)
    # NumPy copies: indexing the runs of device arrays would compile a slice for every leaf's shape.
    params, val, loss, val_loss = jax.tree_util.tree_map(np.asarray, out)
    atol, rtol = tolerances(jnp.float32)
    for r, (s, lr) in enumerate(zip(seeds, lrs)):
        one = train_mlp(digits, hidden=HIDDEN, method=method, k=2, lr=lr, epochs=2, batch_size=32, seed=s)
        jax.tree_util.tree_map(lambda a, b, r=r: np.testing.assert_allclose(a[r], b, atol=10 * atol, rtol=10 * rtol),
                               params, one["params"])
        np.testing.assert_allclose(loss[r], one["loss_curve"], rtol=10 * rtol)
        np.testing.assert_allclose(val_loss[r], one["val_loss_curve"], rtol=10 * rtol)
        np.testing.assert_allclose(val[r], one["val_curve"], atol=1.5 / len(digits.y_val))
    assert np.all(np.isfinite(np.asarray(loss)))


def test_activity_forward_gradient_exact_with_a_full_basis_unbiased_and_orthonormal_control(getkey):
    # n_act = 6 + 5 + 3 = 14 activity dimensions per sample: 14 tangents span them, so the projection recovers
    # every activity gradient and the local backward passes give the backprop gradient. With orthonormal
    # tangents V^T V = I, so the projection is exactly k times the mean.
    model = MLP(features=(6, 5, 3))
    # NumPy data and a jitted init: eagerly, every sampler and cast would be one more compilation.
    x = np.random.default_rng(0).standard_normal((7, 4))
    y = np.arange(7) % 3
    params = quick_jit(lambda key: jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                                          model.init(key, x)["params"]))(getkey())

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

    @quick_jit
    def estimates(key, single_key):
        fg = functools.partial(activity_forward_gradient, params, x, y)
        full = fg(key=key, num_tangents=14, aggregation="projection")
        ortho = [fg(key=key, num_tangents=5, aggregation=a, sampler="orthonormal")[0] for a in ("projection", "mean")]
        # One tangent, mean: unbiased; the average over many keys (statistical bound with a fixed key).
        single = jax.vmap(lambda k: fg(key=k, num_tangents=1, aggregation="mean")[0])(
            jax.random.split(single_key, 4000))
        return full, ortho, jax.tree_util.tree_map(lambda a: a.mean(0), single), jax.value_and_grad(loss)(params)

    # NumPy copies: the checks' arithmetic on device arrays (5 * b, ...) would compile per leaf shape.
    (est, value, _), (proj, mean), avg, (ref_value, g) = jax.tree_util.tree_map(np.asarray,
                                                                               estimates(getkey(), getkey()))
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-10), est, g)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, 5 * b, rtol=1e-10, atol=1e-14), proj, mean)
    flat = lambda t: np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(t)])  # noqa: E731
    assert float(np.linalg.norm(flat(avg) - flat(g)) / np.linalg.norm(flat(g))) < 0.15
    assert float(np.linalg.norm(flat(proj) - flat(g)) / np.linalg.norm(flat(g))) > 0.1  # k < n_act: not exact


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
        return [(p, np.full(2, 1.0 - np.log(lr / 0.5) ** 2 / 100), l, v) for (p, _, l, v), (lr, _) in zip(out, runs)]

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
                 np.full(2, np.nan if (lr >= 0.5 and seed < 1000) else 1.0), v)
                for (p, _, _, v), (lr, seed) in zip(out, runs)]

    monkeypatch.setattr(_mlp, "_run_batched", fake)
    config = dataclasses.replace(TINY, lr_centers=(("backprop", 0.5, 0.0),), lr_grid_size=3, tune_seeds=(1000,))
    row = tune_and_evaluate(digits, config, method="backprop", k=0, epochs=2)
    assert row["lr"] == 0.25 and row["divergence_backoffs"] == 1 and np.isfinite(row["final_train_loss"])
    row = tune_and_evaluate(digits, dataclasses.replace(config, max_backoffs=0), method="backprop", k=0, epochs=2)
    assert row["lr"] == 0.5 and row["divergence_backoffs"] == 0 and np.isnan(row["final_train_loss"])


def test_learning_rate_can_be_tuned_on_validation_loss(digits, monkeypatch):
    # Validation accuracy peaks at lr = 0.5 but the validation loss is lowest at 0.125: the loss decides.
    real = _mlp._run_batched

    def fake(sweep, splits, runs, width):
        out = real(sweep, splits, runs[:1], width)[:1] * len(runs)
        return [(p, np.full(2, 1.0 - np.log(lr / 0.5) ** 2), l, np.full(2, 1.0 + np.log(lr / 0.125) ** 2))
                for (p, _, l, _), (lr, _) in zip(out, runs)]

    monkeypatch.setattr(_mlp, "_run_batched", fake)
    config = dataclasses.replace(TINY, lr_centers=(("backprop", 0.25, 0.0),), lr_grid_size=3)
    assert tune_and_evaluate(digits, config, method="backprop", k=0, epochs=2)["lr"] == 0.5
    row = tune_and_evaluate(digits, dataclasses.replace(config, tune_metric="val_loss"), method="backprop", k=0,
                            epochs=2)
    assert row["lr"] == 0.125 and row["val_loss_tuned"] == pytest.approx(1.0) and row["tune_metric"] == "val_loss"


def test_paired_comparison_tests_superiority_and_noninferiority():
    from scipy import stats

    rows = [{"dataset": "d", "method": m, "k": 4, "seed_accuracies": acc}
            for m, acc in (("a", [0.80, 0.82, 0.79, 0.81, 0.80]), ("b", [0.80, 0.815, 0.80, 0.80, 0.805]))]
    c = _mlp.compare_methods(rows, "d", "a", "b", 4, margin=0.005)
    diff = np.array([0.0, 0.005, -0.01, 0.01, -0.005])
    assert c["diff_mean"] == pytest.approx(diff.mean())
    assert c["p_one_sided"] == pytest.approx(stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)
    assert c["p_noninferior"] == pytest.approx(stats.ttest_1samp(diff, -0.005, alternative="greater").pvalue)
    assert c["noninferior"] and not c["significant"] and c["max_abs_diff"] == pytest.approx(0.01)


def test_run_writes_summary_plot_and_resumes(tmp_path, monkeypatch):
    # The per-leaf row is rescaled from the mean's rate (no tuning runs, only its final seeds, at the mean's / k).
    config = dataclasses.replace(TINY, tune_metric="val_loss", rescaled=(("projection_per_leaf", "mean", -1.0),))
    real, calls = _mlp._run_batched, []

    def counting(sweep, splits, runs, width):
        calls.append(len(runs))
        return real(sweep, splits, runs, width)

    monkeypatch.setattr(_mlp, "_run_batched", counting)
    summary = run_mlp(config, tmp_path)
    assert summary["status"] == "completed"
    assert (tmp_path / "mlp_accuracy.png").is_file()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["method"], r["k"]) for r in on_disk["table"]] == [("backprop", None), ("mean", 2),
                                                                ("projection_per_leaf", 2)]
    _, mean, per_leaf = summary["groups"]
    assert per_leaf["lr"] == pytest.approx(mean["lr"] / 2) and per_leaf["lr_fixed"] and per_leaf["lr_grid"] == []
    assert calls[-1] == config.seeds and len(calls) == 5  # backprop and mean: tuning, final seeds; per-leaf: final
    assert "label" in on_disk["table"][2] and summary["comparisons"][0]["k_over_n"] > 0
    assert isinstance(summary["projection_per_leaf_beats_mean_every_k"], bool)
    assert isinstance(summary["projection_per_leaf_noninferior_to_mean_every_k"], bool)
    assert summary["projection_beats_mean_every_k"] is None
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="earlier in methods"):
        _mlp._check(dataclasses.replace(config, methods=("projection_per_leaf", "mean")))

    def fail(*args, **kwargs):
        raise AssertionError("finished groups must not be retrained")

    monkeypatch.setattr(_mlp, "tune_and_evaluate", fail)
    again = run_mlp(config, tmp_path)
    assert again["table"] == summary["table"]


def _config_module():
    spec = importlib.util.spec_from_file_location("mlp_config", ROOT / "configs" / "fwdgrad" / "mlp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arg", [None, "cpu", "quick", "activity256", "orthonormal256"])
def test_config_variants_are_consistent(arg):
    config = _config_module().get_config(arg)
    _mlp._check(config)
    rescaled = {r[0] for r in config.rescaled}
    for m in config.methods:
        for k in config.tangents:
            if m not in rescaled:
                assert len(_mlp.lr_grid(config, m, k)) == config.lr_grid_size
