"""The method contract (``jaxlab.methods``): init / train_step / evaluate of the members, fusion by transplant_state and
fine-tuning by finetune_step, against written-out references and against run()'s own train_stack."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.methods import transplant as nt
from jaxlab.methods.transplant import _train

# momentum and weight decay non-zero, so that a step that dropped either differs from the reference
CFG = nt.TransplantConfig(experiments=("mlp/digits",), ks=(2,), mlp_hidden=(16,), batch_size=32, train_size=96,
                          test_size=40, lr=0.05, momentum=0.9, weight_decay=1e-3, finetune_lr=0.2)
ATOL, RTOL = tolerances(jnp.float32)


@pytest.fixture(scope="module")
def splits():
    return nt.load_data(CFG)


@pytest.fixture(scope="module")
def step():
    return jax.jit(nt.train_step)


def _batch(splits, k=2, b=32, offset=0):
    x = np.stack([splits.x_train[offset + i * b: offset + (i + 1) * b] for i in range(k)])
    y = np.stack([splits.y_train[offset + i * b: offset + (i + 1) * b] for i in range(k)])
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def _close(a, b, atol=ATOL, rtol=RTOL):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol, rtol=rtol), a, b)


def test_init_is_deterministic_in_the_key_and_shaped_by_the_config():
    a, b, c = nt.init(jax.random.key(0), CFG), nt.init(jax.random.key(0), CFG), nt.init(jax.random.key(1), CFG)
    assert a.config is CFG and int(a.step) == 0
    # digits: 8x8x1 images, 10 classes; k = max(ks) = 2 members stacked in front
    assert a.params["dense_0"]["kernel"].shape == (2, 64, 16) and a.params["dense_1"]["kernel"].shape == (2, 16, 10)
    _close(a.params, b.params, atol=0, rtol=0)
    assert not np.allclose(a.params["dense_0"]["kernel"], c.params["dense_0"]["kernel"])
    # the members differ from each other (split keys, not one key for all)
    assert not np.allclose(a.params["dense_0"]["kernel"][0], a.params["dense_0"]["kernel"][1])


def test_dataset_shapes_match_the_loaded_data(splits):
    shape, classes = nt.DATASET_SHAPES["digits"]
    assert splits.x_train.shape[1:] == shape and splits.num_classes == classes


def _reference_steps(model, params, batches, *, lr, momentum, wd):
    """Cross-entropy under value_and_grad per member, and SGD with momentum and coupled decay written out."""
    def loss(p, x, y):
        logits = model.apply({"params": p}, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    out, losses = [], []
    value = jnp.zeros(())
    for m in range(2):
        p = jax.tree.map(lambda a: a[m], params)
        trace = jax.tree.map(jnp.zeros_like, p)
        for batch in batches:
            value, g = jax.value_and_grad(loss)(p, batch["x"][m], batch["y"][m])
            g = jax.tree.map(lambda gi, pi: gi + wd * pi, g, p)
            trace = jax.tree.map(lambda t, gi: gi + momentum * t, trace, g)
            p = jax.tree.map(lambda pi, t: pi - lr * t, p, trace)
        out.append(p)
        losses.append(value)
    return jax.tree.map(lambda *a: jnp.stack(a), *out), jnp.stack(losses)


def test_train_step_equals_the_written_out_update(splits, step):
    state = nt.init(jax.random.key(0), CFG)
    batches = [_batch(splits), _batch(splits, offset=16)]
    s, _ = step(state, batches[0], jax.random.key(3))
    s, metrics = step(s, batches[1], jax.random.key(3))
    model = nt.make_model("mlp", CFG, 10)
    ref, ref_loss = _reference_steps(model, state.params, batches, lr=CFG.lr, momentum=CFG.momentum,
                                     wd=CFG.weight_decay)
    _close(s.params, ref)
    _close(metrics["member_loss"], ref_loss)
    np.testing.assert_allclose(metrics["loss"], ref_loss.mean(), atol=ATOL, rtol=RTOL)
    assert int(s.step) == 2 and s.config is CFG
    # the key is unused (no dropout): another key gives the same state
    s2, _ = step(state, batches[0], jax.random.key(99))
    s1, _ = step(state, batches[0], jax.random.key(3))
    _close(s1.params, s2.params, atol=0, rtol=0)
    # the learning rate is read from the state's config
    fast = dataclasses.replace(state, config=dataclasses.replace(CFG, lr=0.5))
    s3, _ = step(fast, batches[0], jax.random.key(3))
    assert not np.allclose(s3.params["dense_0"]["kernel"], s1.params["dense_0"]["kernel"])
    assert step._cache_size() == 2   # one program per config, none per call


def test_train_step_reproduces_train_stack(splits, step):
    """A loop of train_step over member_batches is run()'s member training (train_stack) for one epoch."""
    state = nt.init(jax.random.key(0), CFG)
    seeds = [1000, 1001]
    trained, curves = nt.train_stack(nt.make_model("mlp", CFG, 10), {"params": state.params}, splits, epochs=1,
                                     lr=CFG.lr, momentum=CFG.momentum, weight_decay=CFG.weight_decay,
                                     batch_size=CFG.batch_size, seeds=seeds)
    s, losses = state, []
    for batch in nt.member_batches(splits, CFG, seeds=seeds, epoch=0):
        s, metrics = step(s, batch, jax.random.key(0))
        losses.append(metrics["member_loss"])
    assert len(losses) == len(splits.x_train) // CFG.batch_size
    _close(s.params, trained["params"])
    _close(np.mean(losses, 0), curves.loss[0])
    # evaluate reports train_stack's accuracy curves
    np.testing.assert_allclose(nt.evaluate(s, {"x": splits.x_val, "y": splits.y_val})["accuracy"], curves.val[1])


def test_a_few_steps_lower_the_loss(splits, step):
    s, batch = nt.init(jax.random.key(0), CFG), _batch(splits)
    losses = []
    for _ in range(6):
        s, metrics = step(s, batch, jax.random.key(0))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.7 * losses[0], losses


def test_evaluate_equals_a_numpy_computation(splits):
    state = nt.init(jax.random.key(0), CFG)
    x, y = splits.x_test[:30], splits.y_test[:30]
    got = nt.evaluate(state, {"x": x, "y": y})
    w0, w1 = (np.asarray(state.params[f"dense_{i}"]["kernel"], np.float64) for i in range(2))
    # MLP without bias: relu between the layers, none after the last
    logits = np.einsum("mnh,mhc->mnc", np.maximum(np.einsum("nd,mdh->mnh", x.reshape(30, -1), w0), 0), w1)
    np.testing.assert_allclose(got["accuracy"], (logits.argmax(-1) == y).mean(-1))
    assert got["ensemble_accuracy"] == pytest.approx((logits.mean(0).argmax(-1) == y).mean())


def test_transplant_state_is_run_s_nt_and_finetunes_at_finetune_lr(splits):
    state = nt.init(jax.random.key(0), CFG)
    fused = nt.transplant_state(state)
    model = nt.make_model("mlp", CFG, 10)
    members = [(model, {"params": jax.tree.map(lambda a: a[i], state.params)}) for i in range(2)]
    ref = nt.transplant(members)[1]
    _close(jax.tree.map(lambda a: a[0], fused.params), ref["params"], atol=0, rtol=0)
    assert int(fused.step) == 0 and fused.params["dense_0"]["kernel"].shape == (1, 64, 16)
    batch = _batch(splits, k=1)
    tuned, _ = jax.jit(nt.finetune_step)(fused, batch, jax.random.key(0))
    ref_p, _ = _reference_steps(model, jax.tree.map(lambda a: jnp.concatenate([a, a]), fused.params),
                                [{k: jnp.concatenate([v, v]) for k, v in batch.items()}], lr=CFG.finetune_lr,
                                momentum=CFG.momentum, wd=CFG.weight_decay)
    _close(tuned.params, jax.tree.map(lambda a: a[:1], ref_p))


def test_clear_errors_for_bad_inputs(splits, step):
    state = nt.init(jax.random.key(0), CFG)
    batch = _batch(splits)
    with pytest.raises(ValueError, match="keys 'x' and 'y'"):
        step(state, {"images": batch["x"], "y": batch["y"]}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch\['x'\] must be float32 \(k=2, B, 8, 8, 1\).*one per member"):
        step(state, {"x": batch["x"][0], "y": batch["y"][0]}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch\['y'\] must be int32 labels of shape \(2, 32\)"):
        step(state, {"x": batch["x"], "y": batch["y"][:, :5]}, jax.random.key(0))
    with pytest.raises(ValueError, match="integer class labels"):
        step(state, {"x": batch["x"], "y": batch["y"].astype(jnp.float32)}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"data\['x'\] must be \(N, 8, 8, 1\)"):
        nt.evaluate(state, {"x": splits.x_test.reshape(len(splits.x_test), -1), "y": splits.y_test})
    with pytest.raises(ValueError, match="keys 'x'"):
        nt.evaluate(state, (splits.x_test, splits.y_test))  # pyright: ignore[reportArgumentType]
    bn = dataclasses.replace(state, config=dataclasses.replace(CFG, experiments=("resnet18/digits",)))
    with pytest.raises(ValueError, match="pass x_train="):
        nt.transplant_state(bn)
    with pytest.raises(ValueError, match="lower config.batch_size"):
        next(nt.member_batches(splits, dataclasses.replace(CFG, batch_size=10_000), seeds=[0, 1], epoch=0))


def test_member_batches_follow_epoch_order(splits):
    """The batches are the images at train_stack's indices (its jitted epoch draws the same order)."""
    batches = list(nt.member_batches(splits, CFG, seeds=[7, 8], epoch=1))
    order = np.asarray(_train.epoch_order(_train.seed_keys([7, 8]), 1, n=96, num_batches=3, batch_size=32))
    for b, idx in zip(batches, order):
        np.testing.assert_array_equal(b["y"], splits.y_train[idx])
    assert not np.array_equal(order[:, 0], order[:, 1])   # each member its own order
