"""The method contract for fwdgrad (``jaxlab.methods``): init / train_step / evaluate of the MLP experiment, and
run's dispatch.

One tiny config (UCI digits, one hidden layer of 8, projection with k = 4) and one jitted step, reused by every
test; a second config (half the rate) compiles it once more, and train_mlp's program is the run's reference.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import fwdgrad
from jaxlab.core import load_config, tolerances
from jaxlab.methods import fwdgrad as fg
from jaxlab.methods.fwdgrad import _contract, _mlp
from jaxlab.nn import MLP
from jaxlab.train import MethodState

from ...compile_helpers import quick_jit

ROOT = Path(__file__).resolve().parents[3]
HIDDEN = (8,)
# "backprop" first: the contract trains the first forward-gradient method, as documented.
TINY = fg.MLPConfig(datasets=("digits",), hidden=HIDDEN, methods=("backprop", "projection"), tangents=(4,),
                    epochs=(1,), train_size=(64,), validation=(32,), batch_size=32, seeds=1, tune_seeds=(7,),
                    lr_centers=(("backprop", 0.1, 0.0), ("projection", 8.0, 0.0)))
ATOL, RTOL = tolerances(jnp.float32)


@pytest.fixture(scope="module")
def splits():
    return fg.load_data(TINY)


@pytest.fixture(scope="module")
def step():
    return jax.jit(fg.train_step)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree_util.tree_leaves(tree)])


def test_init_is_deterministic_in_the_key_and_carries_the_config():
    s = fg.run_settings(TINY)
    assert (s.dataset, s.method, s.k, s.lr, s.features) == ("digits", "projection", 4, 8.0, 64)
    a, b, c = (fg.init(jax.random.key(i), TINY) for i in (0, 0, 1))
    assert isinstance(a, MethodState) and a.config is TINY and int(a.step) == 0 and a.model_state == {}
    assert a.params["dense_0"]["kernel"].shape == (64, 8) and a.params["dense_1"]["kernel"].shape == (8, 10)
    np.testing.assert_array_equal(_flat(a.params), _flat(b.params))
    assert not np.allclose(_flat(a.params), _flat(c.params))


def test_step_is_the_forward_gradient_sgd_step_and_uses_rate_and_key(splits, step):
    state = fg.init(jax.random.key(0), TINY)
    batch = (splits.x_train[:32], splits.y_train[:32])
    key = jax.random.key(5)
    new, metrics = step(state, batch, key)
    assert int(new.step) == 1 and new.config is TINY and set(metrics) >= {"loss"}

    # Reference: the projection written out in NumPy, V^T (V V^T)^-1 V g, from backprop's g and the tangents of the
    # tangent half of the key (make_grad_fn's split); then SGD written out.
    mlp = MLP(features=(*HIDDEN, 10))

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(mlp.apply({"params": p}, batch[0]), batch[1]).mean()

    tangents, (ref_loss, g) = quick_jit(lambda p, k: (fwdgrad.sample_tangents(jax.random.split(k)[1], p, 4),
                                                      jax.value_and_grad(loss)(p)))(state.params, key)
    V = np.concatenate([np.asarray(v, np.float64).reshape(4, -1) for v in jax.tree_util.tree_leaves(tangents)], 1)
    estimate = V.T @ np.linalg.solve(V @ V.T, V @ _flat(g))
    np.testing.assert_allclose(_flat(new.params), _flat(state.params) - 8.0 * estimate, atol=10 * ATOL, rtol=10 * RTOL)
    np.testing.assert_allclose(metrics["loss"], ref_loss, rtol=10 * RTOL)

    # Another key, other tangents; half the rate (a second config), half the update along the same tangents.
    other, _ = step(state, batch, jax.random.key(6))
    assert np.max(np.abs(_flat(other.params) - _flat(new.params))) > 1e-3
    half_config = dataclasses.replace(TINY, lr_centers=(("projection", 4.0, 0.0),))
    half, _ = step(MethodState.wrap(state.train_state(), half_config), batch, key)
    np.testing.assert_allclose(_flat(half.params) - _flat(state.params),
                               0.5 * (_flat(new.params) - _flat(state.params)), atol=10 * ATOL, rtol=10 * RTOL)


def test_an_epoch_of_steps_is_train_mlps_epoch_and_evaluate_is_what_it_reports(splits, step):
    # The same seed: init's parameters, batches' order and step keys, the step of run_mlp's compiled program
    # (train_mlp's jitted run, without its eager test accuracy).
    key = jax.random.key(3)
    _, train = _mlp._single_run(HIDDEN, 10, "projection", 4, "simulated", 32, 1)
    params, val_curve, loss_curve, val_loss_curve = train(key, jnp.float32(8.0), splits.x_train, splits.y_train,
                                                          splits.x_val, splits.y_val)
    state = fg.init(key, TINY)
    xb, yb, keys = fg.batches(key, splits.x_train, splits.y_train, batch_size=32, epoch=0)
    assert xb.shape == (2, 32, 64) and yb.shape == (2, 32)
    xb, yb = np.asarray(xb), np.asarray(yb)  # NumPy batches: slicing device arrays compiles a slice per shape
    losses = []
    for i in range(len(xb)):
        state, metrics = step(state, (xb[i], yb[i]), keys[i])
        losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(_flat(state.params), _flat(params), atol=10 * ATOL, rtol=10 * RTOL)
    np.testing.assert_allclose(np.mean(losses), loss_curve[0], rtol=10 * RTOL)
    val = fg.evaluate(state, (splits.x_val, splits.y_val))
    np.testing.assert_allclose(val["loss"], val_loss_curve[0], rtol=10 * RTOL)
    np.testing.assert_allclose(val["accuracy"], val_curve[0], atol=1.5 / len(splits.y_val))


def test_a_few_steps_lower_the_training_loss(splits, step):
    state = fg.init(jax.random.key(0), TINY)
    batch = (splits.x_train[:32], splits.y_train[:32])
    before = float(fg.evaluate(state, batch)["loss"])
    for i in range(15):
        state, _ = step(state, batch, jax.random.key(100 + i))
    assert int(state.step) == 15
    assert float(fg.evaluate(state, batch)["loss"]) < before - 0.05


def test_evaluate_equals_numpy(splits):
    state = fg.init(jax.random.key(1), TINY)
    x, y = splits.x_val[:20], splits.y_val[:20]
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), state.params)
    h = np.maximum(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"], 0.0)
    logits = h @ p["dense_1"]["kernel"] + p["dense_1"]["bias"]
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
    got = fg.evaluate(state, (x, y))
    np.testing.assert_allclose(got["loss"], np.mean(lse - logits[np.arange(len(y)), y]), rtol=10 * RTOL)
    np.testing.assert_allclose(got["accuracy"], np.mean(logits.argmax(-1) == y), rtol=0, atol=1e-7)


def test_bad_inputs_say_what_to_pass(splits, step):
    state = fg.init(jax.random.key(0), TINY)
    x, y = splits.x_train[:4], splits.y_train[:4]
    key = jax.random.key(0)
    for batch, match in [({"x": x, "y": y}, "pair \\(x, y\\)"), ((x,), "pair \\(x, y\\)"),
                         ((x.reshape(4, 8, 8, 1), y), "flatten"), ((x[:, :32], y), "\\(B, 64\\).*'digits'"),
                         ((x, y.astype(np.float32)), "integer class indices"), ((x, y[:3]), "shape \\(4,\\)"),
                         ((x.astype(np.int32), y), "floating point")]:
        with pytest.raises(ValueError, match=match):
            step(state, batch, key)
    with pytest.raises(ValueError, match="data's images"):
        fg.evaluate(state, (x[:, :10], y))
    with pytest.raises(TypeError, match="MethodState that init"):
        fg.train_step(state.train_state(), (x, y), key)
    with pytest.raises(TypeError, match="MLPConfig.*use run\\(config, workdir\\)"):
        fg.init(key, fg.AnglesConfig())
    with pytest.raises(ValueError, match="unknown method 'typo'"):
        fg.init(key, dataclasses.replace(TINY, methods=("typo",)))


def test_run_dispatches_on_the_config_type_and_the_config_files_use_it(tmp_path, monkeypatch):
    calls = []
    for name in ("run_mlp", "run_functions", "run_approximation", "run_angles"):
        monkeypatch.setattr(_contract, name, lambda c, w, name=name, **kw: calls.append((name, c, w, kw)) or {})
    for file, runner in [("mlp.py:quick", "run_mlp"), ("functions.py:quick", "run_functions"),
                         ("approximation.py:quick", "run_approximation"), ("angles.py:quick", "run_angles")]:
        config, module = load_config(str(ROOT / "configs" / "fwdgrad" / file))
        assert module.run is fg.run  # what `jaxlab run configs/fwdgrad/<file>` calls
        assert module.run(config, tmp_path, flag=1) == {}
        assert calls[-1] == (runner, config, tmp_path, {"flag": 1})
    with pytest.raises(TypeError, match="MLPConfig, FunctionsConfig, ApproximationConfig, AnglesConfig.*got dict"):
        fg.run({"datasets": ("digits",)}, tmp_path)
