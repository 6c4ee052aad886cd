"""The method contract (``jaxlab.methods``): init / train_step / evaluate, the trainer's full-rank data-parallel
step, against
a written-out AdamW step, against ABTrainer itself (the step run() uses) and against NumPy."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.methods import abtrain as ab
from jaxlab.methods.abtrain._experiment import make_trainer

# one device, one group: the simplest mesh. No warm-up or cool-down of the rate: lr(t) is the plain cosine.
CFG = ab.ABTrainConfig(hidden=(16,), dataset="synthetic", train_size=128, test_size=64, global_batch=32,
                       eval_batch=32, total_steps=20, warmup_steps=20, lr=1e-2, weight_decay=0.1, lr_warmup_steps=0,
                       lr_cooldown_steps=0, min_lr=1e-4, clip_norm=1.0, label_smoothing=0.1, num_devices=1,
                       group_size=1, seeds=(0,))
ATOL, RTOL = tolerances(jnp.float32)


@pytest.fixture(scope="module")
def data():
    return ab.load_data(CFG)


@pytest.fixture(scope="module")
def trainer():
    """run()'s data-parallel trainer of seed 0 (each test resets it)."""
    return make_trainer(CFG, 0, baseline=True)


@pytest.fixture(scope="module")
def step():
    return jax.jit(ab.train_step)


def _close(a, b, atol=ATOL, rtol=RTOL):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol, rtol=rtol), a, b)


def test_init_is_deterministic_and_is_the_trainer_s_initial_state(trainer):
    a, b, c = (ab.init(jax.random.key(s), CFG) for s in (0, 0, 1))
    assert a.config is CFG and int(a.step) == 0
    assert a.params["dense_0/kernel"].shape == (784, 16) and a.params["dense_1/kernel"].shape == (16, 10)
    _close(a.params, b.params, atol=0, rtol=0)
    assert not np.allclose(a.params["dense_0/kernel"], c.params["dense_0/kernel"])
    _close(a.params, trainer._init_host.params, atol=0, rtol=0)
    _close(a.opt_state, trainer._init_host.opt, atol=0, rtol=0)


def _lr(t):
    return CFG.min_lr + 0.5 * (CFG.lr - CFG.min_lr) * (1 + math.cos(math.pi * t / CFG.total_steps))


def _reference(params, batches):
    """Label-smoothed cross-entropy under value_and_grad, global-norm clipping and AdamW, written out."""
    def loss(p, x, y):
        h = jnp.maximum(x.reshape(len(x), -1) @ p["dense_0/kernel"] + p["dense_0/bias"], 0)
        logits = h @ p["dense_1/kernel"] + p["dense_1/bias"]
        target = jax.nn.one_hot(y, 10, dtype=jnp.float32) * (1 - CFG.label_smoothing) + CFG.label_smoothing / 10
        return -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits), -1))

    @jax.jit
    def one(p, mu, nu, x, y, lr, c1, c2):
        value, g = jax.value_and_grad(loss)(p, x, y)
        norm = jnp.sqrt(sum(jnp.sum(v * v) for v in jax.tree.leaves(g)))
        g = jax.tree.map(lambda v: v * jnp.minimum(1.0, CFG.clip_norm / norm), g)
        mu = jax.tree.map(lambda m, v: 0.9 * m + 0.1 * v, mu, g)
        nu = jax.tree.map(lambda n, v: 0.999 * n + 0.001 * v * v, nu, g)
        p = jax.tree.map(lambda w, m, n: w - lr * ((m / c1) / (jnp.sqrt(n / c2) + 1e-8) + CFG.weight_decay * w),
                         p, mu, nu)
        return p, mu, nu, value

    mu = jax.tree.map(jnp.zeros_like, params)
    nu = jax.tree.map(jnp.zeros_like, params)
    p, values = params, []
    for t, (x, y) in enumerate(batches):
        f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        p, mu, nu, value = one(p, mu, nu, x, y, f32(_lr(t)), f32(1 - 0.9 ** (t + 1)), f32(1 - 0.999 ** (t + 1)))
        values.append(value)
    return p, values


def test_train_step_equals_the_written_out_update(data, step):
    state = ab.init(jax.random.key(0), CFG)
    get = ab.batches(CFG, data[0], data[1], seed=0)
    batches = [get(0), get(1)]
    s, _ = step(state, batches[0], jax.random.key(5))
    s, metrics = step(s, batches[1], jax.random.key(5))
    ref, values = _reference(state.params, [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches])
    _close(s.params, ref)
    np.testing.assert_allclose(metrics["loss"], values[-1], atol=ATOL, rtol=RTOL)
    assert int(s.step) == 2 and s.config is CFG and set(metrics) == {"loss", "accuracy"}
    # the MLP has no dropout: the key does not change the step
    s1, _ = step(state, batches[0], jax.random.key(5))
    s2, _ = step(state, batches[0], jax.random.key(6))
    _close(s1.params, s2.params, atol=0, rtol=0)
    # the rate comes from the state's config
    s3, _ = step(dataclasses.replace(state, config=dataclasses.replace(CFG, lr=1e-1)), batches[0], jax.random.key(5))
    assert not np.allclose(s3.params["dense_0/kernel"], s1.params["dense_0/kernel"])
    assert step._cache_size() == 2   # one program per config, none per call


def test_train_step_is_the_trainer_s_step(data, step, trainer):
    """Three steps of run()'s data-parallel trainer (make_trainer, its batches and keys) equal train_step's."""
    trainer.reset_state()
    get = ab.batches(CFG, data[0], data[1], seed=0)
    run_key = jax.random.key(10_000)
    state = ab.init(jax.random.key(0), CFG)
    for t in range(3):
        trainer.apply_events(t)
        x, y = get(t)
        trainer.step(x, y, jax.random.fold_in(run_key, t))
        state, _ = step(state, (x, y), jax.random.fold_in(run_key, t))
    assert trainer.full is not None
    _close(state.params, trainer.full.params, atol=1e-7, rtol=1e-6)
    _close(state.opt_state, trainer.full.opt, atol=1e-7, rtol=1e-6)


def test_train_step_on_a_sharded_mesh_equals_one_device(data, step):
    """num_devices=4 in groups of 2 (ZeRO-1 over the members, all-reduce across groups) is the same step."""
    wide = dataclasses.replace(CFG, num_devices=4, group_size=2)
    batch = ab.batches(CFG, data[0], data[1], seed=0)(0)
    one, _ = step(ab.init(jax.random.key(0), CFG), batch, jax.random.key(0))
    four, _ = jax.jit(ab.train_step)(ab.init(jax.random.key(0), wide), batch, jax.random.key(0))
    _close(four.params, one.params)


def test_a_few_steps_lower_the_loss(data, step):
    state, batch = ab.init(jax.random.key(0), CFG), ab.batches(CFG, data[0], data[1], seed=0)(0)
    losses = []
    for _ in range(6):
        state, metrics = step(state, batch, jax.random.key(0))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.7 * losses[0], losses


def test_evaluate_equals_numpy_and_the_trainer(data, trainer):
    state = ab.init(jax.random.key(0), CFG)
    x, y = data[2][:40], data[3][:40]     # 40 samples: one batch of eval_batch=32, the rest dropped
    got = ab.evaluate(state, (x, y))
    p = {k: np.asarray(v, np.float64) for k, v in state.params.items()}
    h = np.maximum(x[:32].reshape(32, -1) @ p["dense_0/kernel"] + p["dense_0/bias"], 0)
    z = h @ p["dense_1/kernel"] + p["dense_1/bias"]
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    assert got["eval_size"] == 32
    assert got["test_accuracy"] == pytest.approx(np.mean(z.argmax(-1) == y[:32]))
    assert got["test_loss"] == pytest.approx(-np.mean(logp[np.arange(32), y[:32]]), rel=RTOL)
    trainer.reset_state()
    want = trainer.evaluate(x, y, batch_size=CFG.eval_batch)
    assert got["test_accuracy"] == want["test_accuracy"]
    assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-6)


def test_clear_errors_for_bad_inputs(data, step):
    state = ab.init(jax.random.key(0), CFG)
    x, y = ab.batches(CFG, data[0], data[1], seed=0)(0)
    with pytest.raises(ValueError, match=r"batch must be a pair \(x, y\)"):
        step(state, {"x": x, "y": y}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"x of shape \(B, 28, 28, 1\).*got \(32, 784\)"):
        step(state, (x.reshape(32, -1), y), jax.random.key(0))
    with pytest.raises(ValueError, match="integer class labels"):
        step(state, (x, y.astype(np.float32)), jax.random.key(0))
    four = dataclasses.replace(state, config=dataclasses.replace(CFG, num_devices=4, group_size=2))
    with pytest.raises(ValueError, match="does not split over num_devices=4"):
        step(four, (x[:30], y[:30]), jax.random.key(0))
    many = dataclasses.replace(state, config=dataclasses.replace(CFG, num_devices=16, group_size=1))
    with pytest.raises(ValueError, match="num_devices=16 but 8 devices exist; set num_devices=1"):
        step(many, (x, y), jax.random.key(0))
    with pytest.raises(ValueError, match="lower config.eval_batch"):
        ab.evaluate(state, (data[2][:10], data[3][:10]))
    with pytest.raises(ValueError, match=r"data must be a pair"):
        ab.evaluate(state, {"x": data[2], "y": data[3]})  # pyright: ignore[reportArgumentType]
