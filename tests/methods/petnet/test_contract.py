"""PETNet's method contract: ``init``, a jitted ``train_step`` against a written-out Adam step, ``evaluate``
against a NumPy strict-F1 loop, and the errors for batches a user would plausibly get wrong."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods import petnet
from jaxlab.methods.petnet import PETNetConfig, encode_inputs, encode_labels, petnet_loss

# The headline recipe's gains at H = 16 on the reduced preset: the output layer spikes from the start, so the
# step, the loss curve and the scores are not those of a silent network.
CONFIG = PETNetConfig(variants=(("l1_vr", True, "reference"),), headline=("l1_vr", True, "reference"), hidden=16,
                      learning_rate=2e-3, input_gain=16.0, hidden_gain=3.3, output_gain=2.0, bias_gain=0.0,
                      eval_batch=5, tol=4.0)
STEP = jax.jit(petnet.train_step)


@pytest.fixture(scope="module")
def batch(reduced4000):
    return reduced4000[1].take(slice(0, 8))


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def test_init_is_keyed_and_carries_the_config():
    a, b = petnet.init(jax.random.key(0), CONFIG), petnet.init(jax.random.key(0), CONFIG)
    c = petnet.init(jax.random.key(1), CONFIG)
    for x, y in zip(_leaves(a.params), _leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.params["params"]["fc1"]["kernel"], c.params["params"]["fc1"]["kernel"])
    assert a.config is CONFIG and int(a.step) == 0 and a.model_state == {}
    c_num = CONFIG.get_preset().num_crystals
    assert a.params["params"]["fc1"]["kernel"].shape == (2 * c_num, 16)      # geometry channel: 2 C inputs
    assert a.params["params"]["fc2"]["kernel"].shape == (16, c_num)          # "reference": two layers, C outputs
    # where run()'s training of seed 0 starts: train() initialises with the first half of split(key)
    from jaxlab.methods.petnet._train import init_params

    _, start = init_params(CONFIG.get_preset(), petnet.Variant(*CONFIG.headline), CONFIG.settings("reference"),
                           key=jax.random.split(jax.random.key(0))[0])
    for x, y in zip(_leaves(a.params), _leaves(start)):
        np.testing.assert_array_equal(x, y)


def _reference_step(params, batch, config):
    """The loss under ``jax.value_and_grad`` and Adam's first update written out (optax defaults, eps 1e-8)."""
    preset = config.get_preset()
    net = petnet.PETNet(num_outputs=preset.num_crystals, hidden=config.hidden, num_layers=2,
                        weight_gain=(config.input_gain, config.output_gain), bias_gain=config.bias_gain)

    def loss(p):
        s = jnp.asarray(net.apply(p, encode_inputs(batch, preset, True)))
        return petnet_loss(s, encode_labels(batch, preset), "l1_vr", timing_weight=config.timing_weight,
                           tau=config.tau)[0]

    value, grads = jax.value_and_grad(loss)(params)
    lr, b1, b2, eps = config.learning_rate, 0.9, 0.999, 1e-8

    def adam(p, g):
        m_hat, v_hat = (1 - b1) * g / (1 - b1), (1 - b2) * g * g / (1 - b2)
        return p - lr * m_hat / (jnp.sqrt(v_hat) + eps)

    return value, jax.tree.map(adam, params, grads)


def test_jitted_step_matches_a_written_out_adam_step(batch):
    state = petnet.init(jax.random.key(0), CONFIG)
    new, metrics = STEP(state, batch, jax.random.key(5))
    value, want = jax.jit(_reference_step, static_argnums=2)(state.params, batch, CONFIG)
    np.testing.assert_allclose(metrics["loss"], value, rtol=1e-6)
    assert set(metrics) >= {"loss", "count", "timing", "spikes_per_sample"} and float(metrics["spikes_per_sample"]) > 0
    # Adam's first step moves every entry by about lr; float32 rounding in the gradient moves it by far less
    for x, y in zip(_leaves(new.params), _leaves(want)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    assert int(new.step) == 1 and new.config is CONFIG
    assert any(not np.array_equal(x, y) for x, y in zip(_leaves(new.params), _leaves(state.params)))
    # the key is unused (the loss is deterministic): another key, the same step
    again, _ = STEP(state, batch, jax.random.key(6))
    for x, y in zip(_leaves(again.params), _leaves(new.params)):
        np.testing.assert_array_equal(x, y)
    # the learning rate comes from the state's config: ten times the rate, a step ten times as long
    fast = dataclasses.replace(CONFIG, learning_rate=2e-2)
    moved, _ = STEP(petnet.init(jax.random.key(0), fast), batch, jax.random.key(5))
    d_new = new.params["params"]["fc1"]["kernel"] - state.params["params"]["fc1"]["kernel"]
    d_fast = moved.params["params"]["fc1"]["kernel"] - state.params["params"]["fc1"]["kernel"]
    np.testing.assert_allclose(d_fast, 10 * d_new, rtol=1e-3, atol=1e-6)
    assert float(jnp.abs(d_new).max()) > 1e-3


def test_step_is_runs_step(batch):
    """The contract's step and the jitted step train() uses give the same state."""
    from jaxlab.methods.petnet._train import _step_settings, _train_step

    state = petnet.init(jax.random.key(0), CONFIG)
    new, metrics = STEP(state, batch, jax.random.key(0))
    _, run_step = _train_step(CONFIG.get_preset(), petnet.Variant(*CONFIG.headline),
                              _step_settings(CONFIG.settings("reference")))
    copy = jax.tree.map(jnp.copy, state.train_state())      # run()'s step donates its input
    ref, ref_metrics = run_step(copy, batch, jax.random.key(0))
    np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-6)
    for x, y in zip(_leaves(new.train_state()), _leaves(ref)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_a_few_steps_lower_the_loss(batch):
    state = petnet.init(jax.random.key(0), CONFIG)
    losses = []
    for i in range(8):
        state, metrics = STEP(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
        if i == 0:
            compiled = STEP._cache_size()  # pyright: ignore[reportAttributeAccessIssue]
    # one config, one batch shape: compiled once
    assert STEP._cache_size() == compiled  # pyright: ignore[reportAttributeAccessIssue, reportPossiblyUnboundVariable]
    assert losses[-1] < 0.9 * losses[0], losses
    assert int(state.step) == 8


def _strict_f1_loop(pred: np.ndarray, data, tol: float) -> float:
    """Strict pair F1 by decay ID with plain loops: each predicted spike of a (sample, crystal), in time
    order, takes the nearest (earlier on a tie) free label hit within ``tol``."""
    true = np.logical_and(np.asarray(data.detected).all(-1), ~np.asarray(data.scattered).any(-1))
    crystal, decay_time = np.asarray(data.crystal), np.asarray(data.decay_time)
    tp = n_pairs = 0
    num_pred = int(pred.sum())
    for b in range(pred.shape[0]):
        labels = [(int(crystal[b, k, j]), int(decay_time[b, k]), k) for k in np.nonzero(true[b])[0] for j in (0, 1)]
        n_pairs += len(labels) // 2
        matched = [False] * len(labels)
        for c in range(pred.shape[2]):
            on_c = [i for i, lab in enumerate(labels) if lab[0] == c]
            for t in np.nonzero(pred[b, :, c])[0]:
                best = None
                for i in sorted(on_c, key=lambda i: labels[i][1]):
                    d = abs(labels[i][1] - int(t))
                    if not matched[i] and d <= tol and (best is None or d < best[0]):
                        best = (d, i)
                if best is not None:
                    matched[best[1]] = True
        decays = {}
        for i, lab in enumerate(labels):
            decays.setdefault(lab[2], []).append(matched[i])
        tp += sum(all(m) for m in decays.values())
    return 1.0 if num_pred / 2 + n_pairs == 0 else 2 * tp / (num_pred / 2 + n_pairs)


def test_evaluate_matches_a_numpy_loop(reduced4000):
    """A hand-set network that emits every hit (H = C, identity weights of 2: one LIF spike per input spike),
    so true pairs are recovered and singles are false positives: an F1 strictly between 0 and 1."""
    config = dataclasses.replace(CONFIG, hidden=60, tol=None, eval_batch=5)     # tol: the preset's delay_max
    state = petnet.init(jax.random.key(0), config)
    c_num = config.get_preset().num_crystals
    eye = 2 * jnp.eye(c_num, dtype=jnp.float32)
    p = state.params["params"]
    hand = {"params": {**p, "fc1": {"kernel": jnp.concatenate([eye, jnp.zeros_like(eye)]), "bias": jnp.zeros(c_num)},
                       "fc2": {"kernel": eye, "bias": jnp.zeros(c_num)}}}
    state = dataclasses.replace(state, params=hand)
    split = reduced4000[1].take(slice(100, 112))          # 12 samples in batches of 5: a padded last batch
    scores = petnet.evaluate(state, split)
    preset = config.get_preset()
    net = petnet.PETNet(num_outputs=c_num, hidden=c_num, num_layers=2)
    pred = np.asarray(jnp.asarray(net.apply(hand, encode_inputs(split, preset, True))) > 0)
    assert 0 < scores["f1"] < 1
    assert math.isclose(scores["f1"], _strict_f1_loop(pred, split, preset.delay_max), rel_tol=1e-12)
    # the tolerance comes from the config: a narrower one matches fewer hits
    narrow = petnet.evaluate(dataclasses.replace(state, config=dataclasses.replace(config, tol=2.0)), split)
    assert math.isclose(narrow["f1"], _strict_f1_loop(pred, split, 2.0), rel_tol=1e-12)
    assert narrow["f1"] < scores["f1"]
    assert {"precision", "recall", "ref_f1"} <= set(scores)


def test_bad_inputs_say_what_to_pass(batch):
    state = petnet.init(jax.random.key(0), CONFIG)
    with pytest.raises(TypeError, match="PETData"):
        petnet.train_step(state, batch._asdict(), jax.random.key(0))
    with pytest.raises(TypeError, match="PETData"):
        petnet.train_step(state, encode_inputs(batch, CONFIG.get_preset(), True), jax.random.key(0))
    other = petnet.PETData(*(a[:4, :30] for a in batch))        # as from a preset with 30 event slots
    with pytest.raises(ValueError, match=r"batch: decay_time has shape \(4, 30\).*75 events.*config.get_preset"):
        petnet.train_step(state, other, jax.random.key(0))
    with pytest.raises(ValueError, match="evaluate's data"):
        petnet.evaluate(state, other)
    # the same shapes from a geometry with more crystals: a value check, eager only (a jitted step cannot see it)
    preset = CONFIG.get_preset()
    crystal, valid = np.array(batch.crystal), np.array(batch.valid)
    crystal[0, 0, 1], valid[0, 0] = preset.num_crystals + 5, True
    wide = batch._replace(crystal=crystal, valid=valid)
    bad = rf"crystal indices run from 0 to {preset.num_crystals + 5}, but preset .* has {preset.num_crystals}"
    with pytest.raises(ValueError, match="batch: " + bad):
        petnet.train_step(state, wide, jax.random.key(0))
    with pytest.raises(ValueError, match="evaluate's data: " + bad):
        petnet.evaluate(state, wide)
    with pytest.raises(TypeError, match="PETNetConfig"):
        petnet.init(jax.random.key(0), {"preset": "reduced"})  # pyright: ignore[reportArgumentType]
