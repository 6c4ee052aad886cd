"""tsprune's method contract: init, the jitted masked train_step against a written-out Adam step, evaluate."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import data as jd
from jaxlab import timeseries as ts
from jaxlab.methods import tsprune

from ..adam_checks import adam_first_step_reference, assert_first_adam_step_close
from ...compile_helpers import compiled_programs, quick_compiles, quick_jit  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("quick_compiles")

# one channel: the shapes of "taylor"; dropout on, so that the key matters
CONFIG = dataclasses.replace(tsprune.TsPruneConfig(), datasets=("taylor",), models=("transformer",), horizons=(4,),
                             input_len=8, label_len=4, d_model=8, n_heads=2, d_ff=8, e_layers=1, d_layers=1,
                             dropout=0.1, learning_rate=1e-3, eval_batch=8)
STEP = jax.jit(tsprune.train_step)  # one jitted step for every test (one compile per config)
ATOL, RTOL = 2e-6, 2e-5  # float32 params and activations


def _windows(horizon=4):
    t = np.arange(17 * 24)
    y = np.sin(2 * np.pi * t / 24) + 0.1 * np.random.default_rng(0).normal(size=t.size)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    series = jd.time_series(stamps, y[:, None], columns=["load"], name="synthetic")
    return ts.make_windows(series, input_len=CONFIG.input_len, horizon=horizon)


@pytest.fixture(scope="module")
def windows():
    return _windows()


@pytest.fixture(scope="module")
def batch(windows):
    return windows.gather(windows.origins("train")[:6])


def _tree_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_init_is_deterministic_in_the_key_and_matches_the_forecaster_of_run(windows):
    a, b = tsprune.init(jax.random.key(0), CONFIG), tsprune.init(jax.random.key(0), CONFIG)
    c = tsprune.init(jax.random.key(1), CONFIG)
    assert a.config is CONFIG and int(a.step) == 0
    assert _tree_equal(a.params, b.params) and not _tree_equal(a.params, c.params)
    # dense training: all-True masks of the params' structure
    assert jax.tree.structure(a.model_state["masks"]) == jax.tree.structure(a.params)
    assert all(np.all(m) for m in jax.tree.leaves(a.model_state["masks"]))
    assert float(a.opt_state.inner_state.hyperparams["learning_rate"]) == pytest.approx(CONFIG.learning_rate)
    # the variables run()'s Forecaster starts from with the same key
    fc = tsprune.Forecaster(tsprune.model_config(CONFIG), windows, tsprune.TrainSettings())
    assert _tree_equal(fc.init(jax.random.key(0))["params"], a.params)


def test_channel_table_matches_the_loaders():
    assert set(tsprune.CHANNELS) == set(tsprune.DATASETS)
    for name, load in tsprune.DATASETS.items():
        try:
            series = load()
        except (ImportError, FileNotFoundError, OSError) as e:   # optional timeseries extras missing
            pytest.skip(f"{name}: {e}")
        assert len(series.columns) == tsprune.CHANNELS[name], name


@functools.partial(quick_jit, static_argnums=0)
def _mse_and_grad(config, params, batch, key):
    """The MSE of the zoo model with dropout on (the streams split from ``key``) and its gradient."""
    model = tsprune.model_config(config).module()
    k_drop, k_sample = jax.random.split(key)

    def loss(p):
        out = model.apply({"params": p}, batch["x"], batch["x_mark"], batch["y_mark"], train=True,
                          rngs={"dropout": k_drop, "sample": k_sample})
        return jnp.mean((out - batch["y"]) ** 2)

    return jax.value_and_grad(loss)(params)


def _reference_step(state, batch, key, lr):
    value, grads = _mse_and_grad(state.config, state.params, batch, key)
    return value, adam_first_step_reference(state.params, grads, lr), grads


def _assert_adam_close(new, old, want, grads, lr):
    assert_first_adam_step_close(new, old, want, grads, lr, atol=ATOL, rtol=RTOL)


def test_jitted_step_is_the_masked_adam_step_on_the_mse(batch):
    key = jax.random.key(3)
    state = tsprune.init(jax.random.key(0), CONFIG)
    want_loss, want, grads = _reference_step(state, batch, key, CONFIG.learning_rate)
    new, metrics = STEP(state, batch, key)
    assert int(new.step) == 1 and new.config is CONFIG
    np.testing.assert_allclose(metrics["loss"], want_loss, rtol=RTOL)
    _assert_adam_close(new.params, state.params, want, grads, CONFIG.learning_rate)
    # the same config again compiles nothing; the key (dropout) and the learning rate matter
    with compiled_programs() as compiled:
        other_key, _ = STEP(state, batch, jax.random.key(4))
        faster, _ = STEP(tsprune.set_learning_rate(state, 1e-2), batch, key)
    assert not [c for c in compiled if c and "train_step" in c], compiled
    assert not _tree_equal(other_key.params, new.params) and not _tree_equal(faster.params, new.params)
    _assert_adam_close(faster.params, state.params, adam_first_step_reference(state.params, grads, 1e-2), grads, 1e-2)
    # a config value the step reads (dropout) changes the result from the same arrays
    no_dropout = dataclasses.replace(CONFIG, dropout=0.0)
    plain, _ = STEP(dataclasses.replace(state, config=no_dropout), batch, key)
    assert not _tree_equal(plain.params, new.params)


def test_steps_lower_the_loss_and_masked_weights_stay_zero(batch):
    dense = tsprune.init(jax.random.key(0), CONFIG)
    masks = tsprune.magnitude_masks(dense.params, 0.5)
    state = tsprune.with_masks(dense, masks)
    assert int(state.step) == 0
    assert float(state.opt_state.inner_state.hyperparams["learning_rate"]) == pytest.approx(
        CONFIG.finetune_learning_rate)
    state = tsprune.set_learning_rate(state, 1e-2)
    losses = []
    for i in range(6):
        state, m = STEP(state, batch, jax.random.key(10 + i))
        losses.append(float(m["loss"]))
    assert int(state.step) == 6 and losses[-1] < 0.9 * losses[0], losses
    pruned = 0
    for p, p0, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(dense.params), jax.tree.leaves(masks)):
        m = np.asarray(m)
        assert np.all(np.asarray(p)[~m] == 0.0)
        pruned += int((~m).sum())
    assert pruned > 0
    assert _tree_equal(state.model_state["masks"], jax.tree.map(jnp.asarray, masks))
    kernel = state.params["encoder_0"]["ffn"]["conv1"]["kernel"]
    assert not np.allclose(kernel, dense.params["encoder_0"]["ffn"]["conv1"]["kernel"])


def test_evaluate_is_the_mean_error_over_every_window(windows):
    state = tsprune.init(jax.random.key(0), CONFIG)
    model = tsprune.model_config(CONFIG).module()
    origins = windows.origins("val")
    b = windows.gather(origins)
    pred = np.asarray(quick_jit(model.apply)({"params": state.params}, b["x"], b["x_mark"], b["y_mark"]), np.float64)
    err = pred - b["y"].astype(np.float64)
    got = tsprune.evaluate(state, windows, split="val")
    assert got["windows"] == origins.size and origins.size % CONFIG.eval_batch != 0   # a padded last batch
    np.testing.assert_allclose([got["mse"], got["mae"]], [np.mean(err**2), np.mean(np.abs(err))], rtol=1e-5)


def test_bad_inputs_name_the_input_and_the_fix(windows, batch):
    state = tsprune.init(jax.random.key(0), CONFIG)
    with pytest.raises(ValueError, match=r"batch must be a dict with keys .*ForecastWindows.gather"):
        tsprune.train_step(state, {k: batch[k] for k in ("x", "y")}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch\['x'\] has shape \(6, 8, 2\).*make_windows"):
        tsprune.train_step(state, {**batch, "x": np.concatenate([batch["x"]] * 2, -1)}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch\['y'\] has shape \(6, 5, 1\)"):
        tsprune.train_step(state, {**batch, "y": np.concatenate([batch["y"], batch["y"][:, :1]], 1)},
                           jax.random.key(0))
    with pytest.raises(ValueError, match="data must be jaxlab.timeseries.ForecastWindows"):
        tsprune.evaluate(state, batch)
    with pytest.raises(ValueError, match=r"make them with ts.make_windows\(series, input_len=8, horizon=4\)"):
        tsprune.evaluate(state, _windows(horizon=6))
    with pytest.raises(ValueError, match="masks must have the structure"):
        tsprune.with_masks(state, {"w": np.ones(3, bool)})
    with pytest.raises(ValueError, match=r"models=.*every element is one of"):
        tsprune.init(jax.random.key(0), dataclasses.replace(CONFIG, models=("lstm",)))
    with pytest.raises(ValueError, match="d_model must be a multiple of n_heads"):
        tsprune.init(jax.random.key(0), dataclasses.replace(CONFIG, n_heads=3))
