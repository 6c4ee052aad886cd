"""AutoPQ's method contract: ``init``, a jitted cINN ``train_step`` against a written-out optimiser step and
against ``fit_cinn``'s epoch, ``evaluate`` against closed forms, and the errors for batches users get wrong."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods import autopq
from jaxlab.methods.autopq import CINN, CINNTraining, SeriesSpec, block_permutation, fit_cinn

SPEC = SeriesSpec("toy", 4, (), (0.0, None), 8, 24)         # H = 4, D = 4 * 6 + 4 = 28
CONFIG = autopq.AutoPQConfig(series=("toy",), cinn_blocks=2)
STEP = jax.jit(autopq.train_step)


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = (2.0 * rng.normal(size=(n, 4))).astype(np.float32)
    c = rng.normal(size=(n, 28)).astype(np.float32)
    return x, c


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _assert_trees_close(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_allclose(x, y, **tol)


def test_init_is_keyed_shaped_by_the_config_and_is_fit_cinns_start():
    a, b = autopq.init(jax.random.key(0), CONFIG, spec=SPEC), autopq.init(jax.random.key(0), CONFIG, spec=SPEC)
    c = autopq.init(jax.random.key(1), CONFIG, spec=SPEC)
    _assert_trees_close(a.params, b.params, rtol=0, atol=0)
    assert not np.array_equal(a.params["params"]["blocks_0"]["net1"]["hidden"]["kernel"],
                              c.params["params"]["blocks_0"]["net1"]["hidden"]["kernel"])
    assert a.config is CONFIG and int(a.step) == 0 and a.model_state == {}
    assert "blocks_1" in a.params["params"] and "blocks_2" not in a.params["params"]     # cinn_blocks = 2
    assert a.params["params"]["condition"]["hidden"]["kernel"].shape == (28, 8)
    # a series by name: its spec gives H = 48 and D = 48 * (6 + 1) + 48 (elecdemand has one exogenous column)
    named = autopq.init(jax.random.key(0), dataclasses.replace(CONFIG, series=("elecdemand",)))
    assert named.params["params"]["condition"]["hidden"]["kernel"].shape == (48 * 7 + 48, 8)
    x, cond = _data()
    start = fit_cinn(x, cond, key=jax.random.key(0), model=CINN(horizon=4, num_blocks=2),
                     settings=CINNTraining(epochs=0))
    _assert_trees_close(a.params, start.params, rtol=0, atol=0)


def _reference_step(params, x, c, w, num_blocks):
    """The weighted NLL under ``jax.value_and_grad`` and torch's clip -> coupled weight decay -> Adam written
    out for the first step (lr 5e-4, decay 1e-5, clip 1.0, eps 1e-8)."""
    model = CINN(horizon=4, num_blocks=num_blocks)

    def loss(p):
        z, log_det = jax.tree.map(jnp.asarray, model.apply(p, x, c))
        per = jnp.mean(z * z, -1) / 2 - log_det / 4
        return jnp.sum(w * per) / jnp.sum(w)

    value, g = jax.value_and_grad(loss)(params)
    norm = jnp.sqrt(sum(jnp.sum(v * v) for v in jax.tree.leaves(g)))
    g = jax.tree.map(lambda v, p: v * jnp.minimum(1.0, 1.0 / norm) + 1e-5 * p, g, params)
    step = jax.tree.map(lambda v: (0.1 * v / 0.1) / (jnp.sqrt(0.001 * v * v / 0.001) + 1e-8), g)
    return value, jax.tree.map(lambda p, s: p - 5e-4 * s, params, step)


def test_jitted_step_matches_a_written_out_step_and_fit_cinns_epoch():
    x, c = _data()
    state = autopq.init(jax.random.key(0), CONFIG, spec=SPEC)
    new, metrics = STEP(state, {"target": x, "cond": c}, jax.random.key(3))
    value, want = jax.jit(_reference_step, static_argnums=4)(state.params, x, c, np.ones(12, np.float32), 2)
    np.testing.assert_allclose(metrics["loss"], value, rtol=1e-6)
    _assert_trees_close(new.params, want, rtol=1e-5, atol=1e-8)
    assert int(new.step) == 1 and new.config is CONFIG and set(metrics) == {"loss"}
    assert any(not np.array_equal(p, q) for p, q in zip(_leaves(new.params), _leaves(state.params)))
    again, _ = STEP(state, {"target": x, "cond": c}, jax.random.key(4))      # the key is unused
    _assert_trees_close(again.params, new.params, rtol=0, atol=0)
    # run()'s code: one fit_cinn epoch of one full batch without a hold-out is this step (rows permuted)
    fit = fit_cinn(x, c, key=jax.random.key(0), model=CINN(horizon=4, num_blocks=2),
                   settings=CINNTraining(epochs=1, batch_size=12, holdout=0.0))
    _assert_trees_close(fit.params, new.params, rtol=1e-5, atol=1e-8)
    # weight 0 drops a window: the step on 12 windows with 4 weighted out is the step on the other 8
    w = np.array([1.0] * 8 + [0.0] * 4, np.float32)
    dropped, m_dropped = STEP(state, {"target": x, "cond": c, "weight": w}, jax.random.key(3))
    sub, m_sub = STEP(state, {"target": x[:8], "cond": c[:8]}, jax.random.key(3))
    np.testing.assert_allclose(m_dropped["loss"], m_sub["loss"], rtol=1e-6)
    _assert_trees_close(dropped.params, sub.params, rtol=1e-5, atol=1e-8)


def test_the_configs_depth_is_the_steps_depth():
    x, c = _data()
    deeper = dataclasses.replace(CONFIG, cinn_blocks=3)
    state = autopq.init(jax.random.key(0), deeper, spec=SPEC)
    new, metrics = STEP(state, {"target": x, "cond": c}, jax.random.key(0))
    value, want = jax.jit(_reference_step, static_argnums=4)(state.params, x, c, np.ones(12, np.float32), 3)
    np.testing.assert_allclose(metrics["loss"], value, rtol=1e-6)
    _assert_trees_close(new.params, want, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="has 2 coupling blocks but its config says cinn_blocks = 3"):
        STEP(dataclasses.replace(autopq.init(jax.random.key(0), CONFIG, spec=SPEC), config=deeper),
             {"target": x, "cond": c}, jax.random.key(0))


def test_a_few_steps_lower_the_loss():
    x, c = _data()
    state = autopq.init(jax.random.key(0), CONFIG, spec=SPEC)
    losses = []
    for i in range(30):
        state, metrics = STEP(state, {"target": x, "cond": c}, jax.random.key(i))
        losses.append(float(metrics["loss"]))
        if i == 0:
            compiled = STEP._cache_size()  # pyright: ignore[reportAttributeAccessIssue]
    # one config, one batch shape: compiled once
    assert STEP._cache_size() == compiled  # pyright: ignore[reportAttributeAccessIssue, reportPossiblyUnboundVariable]
    assert losses[-1] < losses[0] - 0.05 and int(state.step) == 30, losses


def _zero_state():
    """A state whose cINN has every parameter 0: each coupling is the identity, so z = x[:, P] with P the
    product of the blocks' permutations and log|det| = 0."""
    state = autopq.init(jax.random.key(0), CONFIG, spec=SPEC)
    return dataclasses.replace(state, params=jax.tree.map(jnp.zeros_like, state.params))


def test_evaluate_matches_closed_forms():
    x, c = _data(n=10, seed=1)
    state = _zero_state()
    assert np.isclose(autopq.evaluate(state, {"target": x, "cond": c})["nll"], np.mean(x.astype(np.float64) ** 2) / 2,
                      rtol=1e-6)
    w = autopq.Windows(origins=np.arange(10), target=x, history=x, future=x, lag=x, cond=c)
    assert autopq.evaluate(state, w) == autopq.evaluate(state, {"target": x, "cond": c})
    rng = np.random.default_rng(2)
    forecast = (x + rng.normal(size=x.shape)).astype(np.float32)
    noise = rng.normal(size=(50, 10, 4)).astype(np.float32)
    lam, offset, scale = 0.3, 1.5, 2.0
    out = autopq.evaluate(state, {"target": x, "cond": c, "forecast": forecast, "noise": noise, "lambda_q": lam,
                                  "offset": offset, "scale": scale, "limits": (0.0, None)})
    # samples: z = f[:, P] scaled by (1 + lam * noise), mapped back by P^-1, unscaled, clipped at 0
    perm = block_permutation(4, 0)[block_permutation(4, 1)]
    z = forecast.astype(np.float64)[:, perm][None] * (1 + lam * noise.astype(np.float64))
    samples = np.moveaxis(z[:, :, np.argsort(perm)], 0, -1) * scale + offset
    samples = np.maximum(samples, 0.0)                                    # (B, H, M)
    y_raw = x.astype(np.float64) * scale + offset
    y = np.maximum(y_raw, 0.0)      # the quantile scores clip the target to the limits, the sample CRPS does not
    crps = np.mean(np.abs(samples - y_raw[..., None]).mean(-1)
                   - 0.5 * np.abs(samples[..., :, None] - samples[..., None, :]).mean((-2, -1)))
    levels = np.asarray(autopq.QUANTILES)
    q = np.moveaxis(np.quantile(samples, levels, axis=-1), 0, -1)
    e = q - y[..., None]
    pinball = np.mean(np.maximum(-levels * e, (1 - levels) * e))
    lo, hi = q[..., list(levels).index(0.1)], q[..., list(levels).index(0.9)]
    np.testing.assert_allclose(out["crps_samples"], crps, rtol=1e-4)
    np.testing.assert_allclose(out["pinball"], pinball, rtol=1e-4)
    np.testing.assert_allclose(out["crps_quantile"], 2 * pinball, rtol=1e-4)
    np.testing.assert_allclose(out["coverage_80"], np.mean((y >= lo) & (y <= hi)), rtol=1e-6)
    np.testing.assert_allclose(out["width_80"], np.mean(hi - lo), rtol=1e-4)
    assert out["crossings"] == 0 and out["nll"] > 0


def test_bad_inputs_say_what_to_pass():
    x, c = _data()
    state = autopq.init(jax.random.key(0), CONFIG, spec=SPEC)
    with pytest.raises(TypeError, match=r"'target' \(B, H\) and 'cond'.*got \['cond', 'x'\]"):
        autopq.train_step(state, {"x": x, "cond": c}, jax.random.key(0))
    with pytest.raises(TypeError, match="Windows split or a dict"):
        autopq.train_step(state, (x, c), jax.random.key(0))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match=r"cond \(12, 27\).*cond \(B, 28\).*series the state was made for"):
        autopq.train_step(state, {"target": x, "cond": c[:, :27]}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"weight \(12, 1\).*\(B,\) = \(12,\)"):
        autopq.train_step(state, {"target": x, "cond": c, "weight": np.ones((12, 1), np.float32)}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"also need \['noise', 'lambda_q'.*evaluation_data"):
        autopq.evaluate(state, {"target": x, "cond": c, "forecast": x})
    with pytest.raises(ValueError, match="pass its spec=SeriesSpec"):
        autopq.init(jax.random.key(0), CONFIG)
    with pytest.raises(TypeError, match="AutoPQConfig"):
        autopq.init(jax.random.key(0), {"series": ("taylor",)})  # pyright: ignore[reportArgumentType]


def test_evaluation_data_is_runs_test_input():
    """``evaluation_data`` holds run()'s test inputs: the forecaster on the split's windows clipped to the
    limits (``_Series.predict``), noise from the key, the series' scaler and limits; evaluate() scores it."""
    import jaxlab.data as jd

    t = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(24 * 30) * np.timedelta64(3600, "s")
    rng = np.random.default_rng(0)
    y = 3 * np.sin(2 * np.pi * np.arange(t.size) / 24) + rng.normal(size=t.size)    # below the limit 0 at times
    series = jd.time_series(t, y[:, None], columns=("y",), target="y", name="toy")
    data = autopq.make_windows(series, dataclasses.replace(SPEC, history=24))     # persistence needs a day
    point = autopq.fit_forecaster("persistence", None, data, key=jax.random.key(0))
    key = jax.random.key(7)
    d = autopq.evaluation_data(data, "test", point, key=key, lambda_q=0.4, sample_size=20)
    w = data.splits["test"]
    raw = point(w.history, w.future) * data.scaler.scale + data.scaler.offset
    np.testing.assert_allclose(d["forecast"], (np.maximum(raw, 0.0) - data.scaler.offset) / data.scaler.scale,
                               rtol=1e-6, atol=1e-6)
    assert (raw < 0).any()                                  # the clip matters on this series
    np.testing.assert_array_equal(d["noise"], autopq.standard_noise(key, w.target.shape, 20))
    assert d["limits"] == (0.0, None) and d["lambda_q"] == 0.4 and d["scale"] == float(data.scaler.scale)
    state = autopq.init(jax.random.key(0), CONFIG, spec=SPEC)
    out = autopq.evaluate(state, d)
    assert {"nll", "crps_samples", "crps_quantile", "coverage_80", "crossings"} <= set(out)
    assert all(np.isfinite(v) for v in out.values())
