"""ReCycle's method contract: init, the jitted train_step against a written-out Adam step, evaluate."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import data as jd
from jaxlab.methods import recycle
from jaxlab.methods.recycle._experiment import _LOADERS, init_recycle_params, recycle_model_config

from ..adam_checks import adam_first_step_reference, assert_first_adam_step_close
from ...compile_helpers import compiled_programs, quick_compiles, quick_jit  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("quick_compiles")

# hourly cycles: the shapes of "bikeshare" (D = 24, no exogenous columns: M = 9); dropout on, so that the key
# matters; a trained (not zero) head, so that every weight gets a gradient at the first step
CONFIG = recycle.RecycleConfig(dataset="bikeshare", history=3, horizon=2, rhp_days=1, d_model=8, d_ff=8,
                               dropout=0.1, zero_head=False, learning_rate=0.01, batch_size=8)
STEP = jax.jit(recycle.train_step)  # one jitted step for every test (one compile per config)
ATOL, RTOL = 2e-6, 2e-5  # float32 params and activations


def _series(n_days=40):
    t = np.arange(n_days * 24)
    rng = np.random.default_rng(0)
    y = 10 + np.sin(2 * np.pi * t / 24) + ((t // 24) % 7 < 5) + 0.1 * rng.normal(size=t.size)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    return jd.time_series(stamps, y, columns=["load"], name="synthetic")


@pytest.fixture(scope="module")
def data():
    return recycle.prepare_windows(CONFIG, _series())


@pytest.fixture(scope="module")
def batch(data):
    train = data["splits"]["train"]
    return {k: train[k][:8] for k in recycle.BATCH_KEYS}


def _tree_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_init_is_deterministic_in_the_key_and_is_runs_initialisation(data):
    a, b = recycle.init(jax.random.key(0), CONFIG), recycle.init(jax.random.key(0), CONFIG)
    c = recycle.init(jax.random.key(1), CONFIG)
    assert a.config is CONFIG and int(a.step) == 0 and a.model_state == {}
    assert _tree_equal(a.params, b.params) and not _tree_equal(a.params, c.params)
    # run() traces the model on two training windows: the same parameters as the zeros of init. Eagerly, as
    # run() does, against init's jitted program: the initialisers' float32 arithmetic may round differently
    # (it did when another file had compiled the eager ops first), hence a float32 tolerance, not equality.
    train = data["splits"]["train"]
    model = recycle_model_config(CONFIG, 24, 9).module()
    ref = init_recycle_params(model, jax.random.key(0), {k: train[k][:2] for k in train})
    assert jax.tree.structure(ref) == jax.tree.structure(a.params)
    for x, y in zip(jax.tree.leaves(ref), jax.tree.leaves(a.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def test_cycle_length_table_matches_the_loaders():
    assert set(recycle.CYCLE_LEN) == set(_LOADERS)
    for name, d in recycle.CYCLE_LEN.items():
        try:
            series = _LOADERS[name]()
        except (ImportError, FileNotFoundError, OSError) as e:   # optional timeseries extras missing
            pytest.skip(f"{name}: {e}")
        assert series.steps_per_cycle == d, name


def _forward(model, params, b, **kw):
    """ReCycle on cycle tokens: the module takes the series flattened to steps of one channel."""
    n = b["hist"].shape[0]
    flat = lambda v: v.reshape(n, -1, 1)  # noqa: E731
    y = model.apply(params, flat(b["hist"]), b["hist_meta"], b["fc_meta"], hist_profile=flat(b["hist_profile"]),
                    fc_profile=flat(b["fc_profile"]), **kw)
    return y.reshape(b["target"].shape + y.shape[3:])


@functools.partial(quick_jit, static_argnums=0)
def _l1_and_grad(config, params, batch, key):
    model = recycle_model_config(config, 24, 9).module()

    def loss(p):
        return jnp.mean(jnp.abs(_forward(model, p, batch, train=True, rngs={"dropout": key}) - batch["target"]))

    return jax.value_and_grad(loss)(params)


def _assert_adam_close(new, old, want, grads, lr):
    assert_first_adam_step_close(new, old, want, grads, lr, atol=ATOL, rtol=RTOL)


def test_jitted_step_is_adam_on_the_l1_loss(batch):
    key = jax.random.key(3)
    state = recycle.init(jax.random.key(0), CONFIG)
    want_loss, grads = _l1_and_grad(CONFIG, state.params, batch, key)
    new, metrics = STEP(state, batch, key)
    assert int(new.step) == 1 and new.config is CONFIG and set(metrics) == {"loss", "mse"}
    np.testing.assert_allclose(metrics["loss"], want_loss, rtol=RTOL)
    _assert_adam_close(new.params, state.params, adam_first_step_reference(state.params, grads, 0.01), grads, 0.01)
    # the same config again compiles nothing; the key (dropout) matters
    with compiled_programs() as compiled:
        other_key, _ = STEP(state, batch, jax.random.key(4))
    assert not [c for c in compiled if c and "train_step" in c], compiled
    assert not _tree_equal(other_key.params, new.params)
    # the step builds its optimiser from the config: another learning rate, from the same arrays
    slower = dataclasses.replace(CONFIG, learning_rate=0.001)
    slow, _ = STEP(dataclasses.replace(state, config=slower), batch, key)
    _assert_adam_close(slow.params, state.params, adam_first_step_reference(state.params, grads, 0.001), grads, 0.001)


def test_steps_lower_the_loss(batch):
    state = recycle.init(jax.random.key(0), CONFIG)
    losses = []
    for i in range(8):
        state, m = STEP(state, batch, jax.random.key(10 + i))
        losses.append(float(m["loss"]))
    assert int(state.step) == 8 and losses[-1] < 0.8 * losses[0], losses


def test_evaluate_is_runs_metrics_in_the_series_units(data):
    state = recycle.init(jax.random.key(0), CONFIG)
    test, sc = data["splits"]["test"], data["scalers"]["test"]
    model = recycle_model_config(CONFIG, 24, 9).module()
    pred_n = np.asarray(quick_jit(functools.partial(_forward, model))(state.params, test), np.float64)
    pred = pred_n * float(sc.scale) + float(sc.offset)
    truth = test["target"].astype(np.float64) * float(sc.scale) + float(sc.offset)
    naive = test["persistence"].astype(np.float64) * float(sc.scale) + float(sc.offset)
    err = pred - truth
    got = recycle.evaluate(state, data, split="test")
    want = {"mae": np.mean(np.abs(err)), "mse": np.mean(err**2), "mape_pct": 100 * np.mean(np.abs(err / truth)),
            "mae_lead1": np.mean(np.abs(err[:, 0])), "mase": np.mean(np.abs(err)) / np.mean(np.abs(naive - truth))}
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-6, err_msg=k)
    assert got["mae"] != recycle.evaluate(state, data, split="val")["mae"]


def test_evaluate_with_quantile_heads_reports_the_median_and_the_pinball_loss():
    qs = (0.1, 0.5, 0.9)
    config = dataclasses.replace(CONFIG, quantiles=qs)
    data = recycle.prepare_windows(config, _series())
    state = recycle.init(jax.random.key(0), config)
    val, sc = data["splits"]["val"], data["scalers"]["val"]
    model = recycle_model_config(config, 24, 9).module()
    q = np.asarray(quick_jit(functools.partial(_forward, model))(state.params, val), np.float64)
    assert q.shape == val["target"].shape + (3,)
    q = q * float(sc.scale) + float(sc.offset)
    truth = val["target"].astype(np.float64) * float(sc.scale) + float(sc.offset)
    e = truth[..., None] - q   # pinball: max(q e, (q - 1) e) with e = y - f
    levels = np.asarray(qs)
    got = recycle.evaluate(state, data, split="val")
    np.testing.assert_allclose(got["pinball"], np.mean(np.maximum(levels * e, (levels - 1) * e)), rtol=1e-6)
    np.testing.assert_allclose(got["mae"], np.mean(np.abs(q[..., 1] - truth)), rtol=1e-6)


def test_step_weather_and_the_ridge_base_reach_the_shapes_the_step_and_evaluate():
    """Every step's covariate in the token (24 more metadata features) and ReCycle on the ridge-corrected profile:
    init, the jitted step and evaluate take run()'s windows; with a zero head the forecast is the corrected base."""
    t = np.arange(40 * 24)
    rng = np.random.default_rng(1)
    temp = rng.uniform(size=t.size)
    y = 10 + np.sin(2 * np.pi * t / 24) + 2.0 * temp + 0.1 * rng.normal(size=t.size)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    series = jd.time_series(stamps, np.stack([y, temp], -1), columns=["load", "temp"], name="synthetic")
    config = dataclasses.replace(CONFIG, exogenous=("temp",), exogenous_resolution="step", profile_correction="ridge",
                                 zero_head=True)
    data = recycle.prepare_windows(config, series)
    own = recycle.recycle_windows(data["splits"], config)
    assert own["train"]["hist_meta"].shape[-1] == 9 + 24
    state = recycle.init(jax.random.key(0), config)
    new, metrics = STEP(state, {k: own["train"][k][:8] for k in recycle.BATCH_KEYS}, jax.random.key(1))
    assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
    test, sc = data["splits"]["test"], data["scalers"]["test"]
    truth = sc.inverse(test["target"].astype(np.float64))
    base_mae = np.mean(np.abs(sc.inverse(own["test"]["fc_profile"].astype(np.float64)) - truth))
    bare_mae = np.mean(np.abs(sc.inverse(test["fc_profile"].astype(np.float64)) - truth))
    np.testing.assert_allclose(recycle.evaluate(state, data, split="test")["mae"], base_mae, rtol=1e-5)
    assert base_mae < 0.7 * bare_mae   # the correction reads the covariate
    # without the option, ReCycle's windows are the prepared ones themselves
    assert recycle.recycle_windows(data["splits"], dataclasses.replace(config, profile_correction="none")) is \
        data["splits"]


def test_bad_inputs_name_the_input_and_the_fix(data, batch):
    state = recycle.init(jax.random.key(0), CONFIG)
    with pytest.raises(ValueError, match=r"needs a dict with keys .*prepare_windows"):
        recycle.train_step(state, {k: batch[k] for k in ("hist", "target")}, jax.random.key(0))
    # windows of another dataset's cycle length (half-hourly elecdemand against hourly windows)
    half_hourly = dataclasses.replace(state, config=dataclasses.replace(CONFIG, dataset="elecdemand"))
    wrong_cycle = r"'hist' has shape \(8, 3, 24\), expected \(B,\) \+ \(3, 48\).*prepare_windows"
    with pytest.raises(ValueError, match=wrong_cycle):
        recycle.train_step(half_hourly, batch, jax.random.key(0))
    with pytest.raises(ValueError, match=r"'target' has shape \(8, 3, 24\)"):
        recycle.train_step(state, {**batch, "target": batch["hist"]}, jax.random.key(0))
    with pytest.raises(ValueError, match="must be the dict recycle.prepare_windows"):
        recycle.evaluate(state, data["splits"]["test"])
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        recycle.evaluate(state, data, split="valid")
    with pytest.raises(ValueError, match=r"dataset='mine': must be one of"):
        recycle.init(jax.random.key(0), dataclasses.replace(CONFIG, dataset="mine"))
