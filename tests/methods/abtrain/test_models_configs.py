"""The models with factorised kernels, the data, and a smoke run of every config."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import (
    ConfigError,
    apply_overrides,
    load_config,
    read_metrics,
    validate_config,
)
from jaxlab.data import DataNotFoundError
from jaxlab.methods import abtrain
from jaxlab.methods.abtrain._experiment import _batches, load_data
from jaxlab.methods.abtrain._models import pad_images
from jaxlab.methods.abtrain._params import flatten
from jaxlab.nn import SmallCNN

from ...compile_helpers import compiled_programs
from ...timeseries.zoo_helpers import quick_jit

KEPT = {"mlp": {"dense_2"}, "vgg16_cifar": {"conv_0", "classifier"}, "vgg16_timm": {"conv_0", "classifier"},
        "resnet18": {"conv_init", "Dense_0"}, "cnn": {"Dense_1"}}


def _model(name):
    if name == "cnn":  # a cheap conv net for the composed-kernel path (VGG16 and ResNet-18: the slow cases)
        return abtrain.ModelDef("cnn", SmallCNN(num_classes=10), (12, 12, 1), exclude=("^Dense_1/",), takes_train=False)
    return abtrain.make_model(name, hidden=(24, 16), width=1 / 16)


@pytest.mark.parametrize("name", ["mlp", "cnn", pytest.param("vgg16_cifar", marks=pytest.mark.slow),
                                  pytest.param("vgg16_timm", marks=pytest.mark.slow),
                                  pytest.param("resnet18", marks=pytest.mark.slow)])
def test_models_give_the_same_logits_with_factors(name):
    model = _model(name)
    params, model_state = quick_jit(model.init)(jax.random.key(0))  # one program, not one per operation
    layout = model.layout(params)
    kept = {k.split("/")[0] for k in layout.full_rank if k.endswith("kernel")}
    assert kept == KEPT[name]
    assert len(layout.paths) >= 2
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *model.input_shape)), jnp.float32)

    @quick_jit
    def both(params, x):
        ab = {k: abtrain.decompose(v) if k in layout.paths else v for k, v in params.items()}
        full, _ = model.apply(params, model_state, x, layout=layout, train=False)
        low, _ = model.apply(ab, model_state, x, layout=layout, train=False)
        return full, low

    full, low = both(params, x)
    scale = float(jnp.max(jnp.abs(full)))
    np.testing.assert_allclose(np.asarray(low), np.asarray(full), atol=1e-4 * max(scale, 1e-3), rtol=1e-3)


def test_init_compiles_one_program_with_the_eager_values():
    """``ModelDef.init`` is one jitted program (eagerly, its initialisers and dummy forward pass compiled 25
    programs for the MLP) and gives the eager ``module.init``'s variables bit for bit (checked here for the MLP:
    the eager reference of a conv net costs a compilation per operation)."""
    model = _model("mlp")
    key = jax.random.key(4)
    with compiled_programs() as compiled:
        params, model_state = model.init(key)
    assert compiled == ["jit(init)"], compiled
    kwargs = {"train": False} if model.takes_train else {}
    eager = model.module.init(key, jnp.zeros((2, *model.input_shape), jnp.float32), **kwargs)
    assert {k: v for k, v in eager.items() if k != "params"}.keys() == model_state.keys()
    for k, v in flatten(eager["params"]).items():
        assert params[k].dtype == jnp.float32
        np.testing.assert_array_equal(params[k], np.asarray(v, np.float32), err_msg=k)
    jax.tree.map(np.testing.assert_array_equal, model_state, {k: v for k, v in eager.items() if k != "params"})


def test_timm_vgg16_has_134m_parameters_and_a_102m_fc1():
    model = abtrain.make_model("vgg16_timm", num_classes=10, input_shape=(32, 32, 3))  # timm's vgg16 for CIFAR-10
    shapes = jax.eval_shape(lambda k: model.init(k)[0], jax.random.key(0))
    total = sum(int(np.prod(s.shape)) for s in shapes.values())
    assert round(total / 1e6, 1) == 134.3
    assert shapes["fc1/kernel"].shape == (25088, 4096)
    assert abtrain.matrix_shape((25088, 4096)) == (25088, 4096, True)


def test_fashion_mnist_for_the_mlp_and_padded_for_the_conv_nets():
    config = load_config("configs/abtrain/mlp_fashion.py:quick")[0]
    try:
        xtr, ytr, xte, _ = load_data(config, (28, 28, 1))
    except DataNotFoundError:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    assert xtr.shape == (4096, 28, 28, 1) and xte.shape == (2000, 28, 28, 1) and ytr.max() == 9
    padded = pad_images(xtr[:3], 32)
    assert padded.shape == (3, 32, 32, 1) and np.array_equal(padded[:, 2:30, 2:30], xtr[:3])
    assert padded[:, :2].sum() == 0 and padded[:, 30:].sum() == 0


def test_configs_resolve():
    for spec, model in [("mlp_fashion.py", "mlp"), ("mlp_fashion.py:quick", "mlp"), ("vgg16_timm.py", "vgg16_timm"),
                        ("vgg16_cifar.py:cpu", "vgg16_cifar"), ("resnet18.py:smoke", "resnet18")]:
        config = load_config(f"configs/abtrain/{spec}")[0]
        assert config.model == model
    main = load_config("configs/abtrain/mlp_fashion.py")[0]
    s = main.schedule()
    assert (s.total_steps, s.warmup_steps, s.sync_every, s.full_steps) == (3000, 866, 152, 12)
    assert main.hidden == (1024, 1024) and main.seeds == (0, 1, 2) and main.num_devices == 8 and main.group_size == 4


@pytest.mark.parametrize("spec", ["mlp_fashion.py", "mlp_fashion.py:quick", "mlp_fashion.py:smoke", "mlp_fashion.py:only_b",
                                  "mlp_fashion.py:reset", "vgg16_timm.py", "vgg16_cifar.py", "resnet18.py"])
def test_configs_meet_their_constraints(spec):
    validate_config(load_config(f"configs/abtrain/{spec}")[0])


@pytest.mark.parametrize("override, words", [("tau=1.5", "tau"), ("sync_mode=stale", "sync_mode"),
                                             ("full_steps=10", "smaller than sync_every"),
                                             ("group_size=3", "divide num_devices"),
                                             ("global_batch=100", "multiple of num_devices"),
                                             ("on_rank_change=keep", "on_rank_change"), ("train_size=0", "train_size"),
                                             ("curve_eval_size=500", "at least eval_batch")])
def test_bad_overrides_are_refused_with_the_key(override, words):
    config = load_config("configs/abtrain/mlp_fashion.py:quick")[0]
    with pytest.raises(ConfigError, match=words):
        apply_overrides(config, [override])
    assert apply_overrides(config, ["tau=0.3", "train_size=512"]).tau == 0.3


def test_mlp_smoke_config_runs(tmp_path):
    # curve_eval_size: the evaluation at the sync (step 2) sees 64 of the 128 test images, the final one all
    config = dataclasses.replace(load_config("configs/abtrain/mlp_fashion.py:smoke")[0], test_size=128,
                                 curve_eval_size=64)
    with compiled_programs() as compiled:
        summary = abtrain.run(config, tmp_path, progress=False)
    assert summary["status"] == "completed"
    assert 0.0 <= summary["acc_ab_mean"] <= 1.0
    # every program once: the model's and the optimiser states' init, and the trainer's 8 (svd, cut, to_groups,
    # sync, eval, and the three steps: full, side a and side b, distinct programs on distinct meshes)
    assert compiled.count("jit(init)") == 2 and compiled.count("jit(step)") == 3, compiled
    programs = ("jit(step)", "jit(local)", "jit(to_groups)", "jit(sync)", "jit(fn)")
    assert sum(compiled.count(p) for p in programs) == 8, compiled
    assert summary["compression_layers_seed0"]["dense_1/kernel"]["rank"] == 16  # decomposed, not truncated yet
    sub = json.loads((tmp_path / "ab_seed0" / "summary.json").read_text())
    phases = sub["traffic"]["phases"]
    assert set(phases) == {"warmup", "decompose", "ab", "sync", "full"}
    assert phases["ab"]["inter_bytes"] == 0 and phases["warmup"]["inter_bytes"] > 0
    assert (tmp_path / "tables.md").is_file() and (tmp_path / "abtrain_curves.png").is_file()
    # what `jaxlab run` says when a run is killed counts the finished sub-runs it would keep
    from jaxlab.cli import _interrupt_message

    msg = _interrupt_message(tmp_path, "interrupted", abtrain.run.__globals__["RESUME_RECORDS"])
    assert "finished part(s) recorded in" in msg and str(tmp_path / "ab_seed0") in msg, msg
    evals = [(r["step"], r["eval_size"]) for r in read_metrics(tmp_path / "ab_seed0" / "metrics.jsonl")
             if r["split"] == "eval"]
    assert evals == [(2, 64), (3, 128)]


def test_batches_draw_one_permutation_per_epoch_and_match_drawing_it_per_step():
    x, y = np.arange(40, dtype=np.float32)[:, None], np.arange(40, dtype=np.int32)
    get = _batches(x, y, 8, seed=3)
    for t in (0, 1, 4, 5, 9, 2):  # across epochs (5 batches each) and back
        epoch, j = divmod(t, 5)
        idx = np.sort(np.random.default_rng([3, epoch]).permutation(40)[j * 8:(j + 1) * 8])
        np.testing.assert_array_equal(get(t)[1], idx)
    assert len({int(v) for t in range(5) for v in get(t)[1]}) == 40  # one epoch: every sample once


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["vgg16_timm.py:smoke", "vgg16_cifar.py:smoke", "resnet18.py:smoke"])
def test_conv_smoke_configs_run(spec, tmp_path):
    config = load_config(f"configs/abtrain/{spec}")[0]
    summary = abtrain.run(config, tmp_path, progress=False)
    assert summary["status"] == "completed" and np.isfinite(summary["acc_ab_mean"])
