"""The method contract: init / train_step / evaluate against written-out SGD and run_point's data-parallel step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.core import tolerances
from jaxlab.methods import energy_scaling as es
from jaxlab.train import TrainState

from ...compile_helpers import fewer_optimizations, quick_jit

# grid[0] = one device, global batch 8 in two micro-batches of 4: the accumulation path. 3 epochs of 4 updates,
# warm-up of 1 update (its learning rate is 0, so the first update moves only the momentum).
CONFIG = es.ScalingConfig(models=("resnet",), grid=("1g8G4l",), epochs=3, num_train=32, num_test=8, resnet="tiny",
                          resnet_width=4, image_size=8, num_classes=3, resnet_lr_per_256=3.2)
ATOL, RTOL = tolerances(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _quick_compiles():
    with fewer_optimizations():
        yield


@pytest.fixture(scope="module")
def setup():
    """The jitted contract step (shared: one compile per config), a state, the task's data and a batch."""
    task = es.make_task("resnet", CONFIG)
    batch = {k: v[:8] for k, v in task.train.items()}
    return jax.jit(es.train_step), es.init(jax.random.key(0, impl="rbg"), CONFIG), task, batch


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _close(got, want):
    for g, w in zip(_leaves(got), _leaves(want)):
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=RTOL)


def test_init_is_runs_init_and_deterministic(setup):
    _, state, task, _ = setup
    assert state.config is CONFIG and int(state.step) == 0
    # run() starts every grid point from task.init(key(seed, "rbg")), which reads one training sample's shape
    params, model_state = task.init(jax.random.key(0, impl="rbg"))
    for got, want in zip(_leaves((state.params, state.model_state)), _leaves((params, model_state))):
        np.testing.assert_array_equal(got, want)
    assert set(state.model_state) == {"batch_stats"}
    other = es.init(jax.random.key(1, impl="rbg"), CONFIG)
    assert not all(np.array_equal(a, b) for a, b in zip(_leaves(other.params), _leaves(state.params)))


def test_two_steps_equal_written_out_sgd(setup):
    """Step 1 has learning rate 0 (warm-up from 0), so step 2 sees the same parameters and gradient g:
    ``p2 = p0 - lr(1) * (0.9 t1 + t2)`` with ``t = g + wd p0``; g is the mean over the two micro-batches
    (rows 0, 2, 4, 6 and 1, 3, 5, 7) of the loss's gradient."""
    step, state, task, batch = setup
    s1, m1 = step(state, batch, jax.random.key(0))
    s2, m2 = step(s1, batch, jax.random.key(1))
    vg = quick_jit(jax.value_and_grad(lambda p, ms, b: task.loss_fn(p, ms, b, None)[0]))
    ms = state.model_state
    parts = [vg(state.params, ms, {k: v[a::2] for k, v in batch.items()}) for a in range(2)]
    loss = np.mean([float(v) for v, _ in parts])
    g = jax.tree.map(lambda a, b: (np.asarray(a, np.float64) + np.asarray(b, np.float64)) / 2,
                     *[jax.device_get(gr) for _, gr in parts])
    p0 = jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(state.params))
    peak = CONFIG.resnet_lr_per_256 * 8 / 256
    lr1 = float(optax.warmup_cosine_decay_schedule(0.0, peak, 1, 12)(1))
    assert lr1 == pytest.approx(peak)
    want = jax.tree.map(lambda p, gr: p - lr1 * 1.9 * (gr + CONFIG.weight_decay * p), p0, g)
    np.testing.assert_allclose(float(m1["loss"]), loss, rtol=RTOL)
    np.testing.assert_allclose(float(m2["loss"]), loss, rtol=RTOL)  # the same parameters
    _close(s1.params, state.params)
    _close(s2.params, want)
    assert int(s2.step) == 2 and s2.config is CONFIG
    # the learning rate comes from state.config
    other = dataclasses.replace(s1, config=dataclasses.replace(CONFIG, resnet_lr_per_256=0.8))
    o2, _ = step(other, batch, jax.random.key(1))
    assert not np.allclose(o2.params["conv_init"]["kernel"], s2.params["conv_init"]["kernel"])


def test_steps_equal_run_points_step_on_two_devices(setup):
    """run_point's jitted step, here on two devices with local batch 2 (the same two micro-batches of the
    global batch), gives the same parameters, optimiser state and BatchNorm statistics over two steps."""
    step, state, task, batch = setup
    mesh = es.make_data_mesh(2)
    tx = es.make_optimizer("resnet", CONFIG, 8, 12)
    ts = es.replicate(TrainState(step=state.step, params=state.params, opt_state=state.opt_state,
                                 model_state=state.model_state), mesh)
    run_step = es.make_data_parallel_step(task.loss_fn, tx, mesh, global_batch=8, local_batch=2)
    ours = state
    for i in range(2):
        ts, want = run_step(ts, es.shard_batch(batch, mesh), jax.random.key(i))
        ours, got = step(ours, batch, jax.random.key(i))
        _close(got, want)
    _close((ours.params, ours.opt_state, ours.model_state), (ts.params, ts.opt_state, ts.model_state))


def test_steps_lower_the_loss(setup):
    step, state, _, batch = setup
    losses = []
    for i in range(6):
        state, metrics = step(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    # the first update has learning rate 0 (warm-up), every later one lowers the loss
    assert losses[1] == losses[0] and all(b < a for a, b in zip(losses[1:], losses[2:])), losses
    assert losses[-1] < 0.92 * losses[0], losses


def test_evaluate_equals_numpy(setup):
    _, state, task, _ = setup
    got = es.evaluate(state, task.test)
    logits = np.asarray(quick_jit(lambda p, ms, x: task.model.apply({"params": p, **ms}, x, train=False))(
        state.params, state.model_state, task.test["x"]), np.float64)
    y = task.test["y"]
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    want = {"eval_loss": -np.mean(logp[np.arange(len(y)), y]), "eval_accuracy": np.mean(logits.argmax(-1) == y)}
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=RTOL, err_msg=k)


def test_bad_inputs_say_what_to_pass(setup):
    step, state, _, batch = setup
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"exactly the keys \['x', 'y'\], got \['x'\].*make_task\('resnet', config\)"):
        step(state, {"x": batch["x"]}, key)
    with pytest.raises(ValueError, match=r"batch\['x'\] has shape \(4, 8, 8, 3\); expected \(8, 8, 8, 3\).*global"):
        step(state, {k: v[:4] for k, v in batch.items()}, key)
    with pytest.raises(ValueError, match=r"batch\['x'\] has shape \(8, 8, 8, 1\)"):
        step(state, {"x": batch["x"][..., :1], "y": batch["y"]}, key)
    with pytest.raises(ValueError, match=r"batch\['y'\] has dtype float32; expected integer class labels"):
        step(state, {"x": batch["x"], "y": batch["y"].astype(np.float32)}, key)
    with pytest.raises(ValueError, match=r"data\['x'\] has dtype float64; expected float32"):
        es.evaluate(state, {"x": batch["x"].astype(np.float64), "y": batch["y"]})
    with pytest.raises(ValueError, match="exceeds the 32 training samples"):
        es.init(jax.random.key(0), dataclasses.replace(CONFIG, grid=("1g64l",)))


def test_afno_init_shapes_from_the_config():
    """AFNO's state comes from field_shape and field_channels (no data generated) and has the shapes of run's
    (traced only: nothing compiled)."""
    config = dataclasses.replace(CONFIG, models=("afno",), afno_embed_dim=8, afno_depth=1, afno_num_blocks=2,
                                 afno_patch_size=4, field_shape=(8, 12), field_channels=2)
    key = jax.random.key(0, impl="rbg")
    state = jax.eval_shape(lambda k: es.init(k, config), key)
    params, model_state = jax.eval_shape(es.make_task("afno", config).init, key)
    assert jax.tree.structure(state.params) == jax.tree.structure(params) and state.model_state == model_state == {}
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        assert (got.shape, got.dtype) == (want.shape, want.dtype)
    assert state.params["head"]["kernel"].shape[-1] == 4 * 4 * 2  # a patch of field_channels, from the config
