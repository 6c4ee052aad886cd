"""Training machinery of the experiment: distillation loss, BatchNorm recalibration, vmapped stacks, resume,
model selection, and a smoke run of the whole experiment."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods import transplant as nt
from jaxlab.methods.transplant import _experiment, _train
from jaxlab.nn import MLP, BasicBlock, ResNet

from ...compile_helpers import compiled_programs
from ...timeseries.zoo_helpers import quick_jit


def distill_loss_reference(student, teacher, labels, temperature, alpha):
    """The reference's train_distill_ensemble loss in NumPy (float64)."""
    s, t = np.asarray(student, np.float64), np.asarray(teacher, np.float64)

    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    soft_targets = np.exp(log_softmax(t / temperature))
    soft = -np.sum(soft_targets * log_softmax(s / temperature)) / len(s) * temperature**2
    hard = -np.mean(log_softmax(s)[np.arange(len(s)), labels])
    return alpha * soft + (1 - alpha) * hard


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_distill_loss_matches_the_reference(alpha):
    rng = np.random.default_rng(0)
    s, t, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
    got = nt.distill_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(y), temperature=2.0, alpha=alpha)
    np.testing.assert_allclose(got, distill_loss_reference(s, t, y, 2.0, alpha), rtol=1e-10)


def test_recalibration_is_the_mean_of_batch_statistics():
    """Oracle: the same ResNet with BatchNorm momentum 0 stores exactly each batch's statistics."""
    # a one-block ResNet: its stem and residual BatchNorms, cheap to compile
    model = ResNet(stage_sizes=(1,), block_cls=BasicBlock, num_classes=3, num_filters=2, small_inputs=True)
    x = np.random.default_rng(0).normal(size=(48, 6, 6, 3)).astype(np.float32)
    variables = quick_jit(lambda k: model.init(k, x[:1], train=False))(jax.random.key(0))
    stacked = jax.tree.map(lambda a: a[None], variables)
    got = nt.recalibrate_bn(model, stacked, x, batch_size=16, num_batches=3, seed=0)
    idx = np.random.default_rng(0).permutation(48)[:48].reshape(3, 16)
    zero_momentum = model.clone(bn_momentum=0.0)
    step = quick_jit(lambda v, xb: zero_momentum.apply(v, xb, train=True, mutable=["batch_stats"])[1]["batch_stats"])
    per_batch = [step(variables, x[i]) for i in idx]
    expect = jax.tree.map(lambda *a: sum(a) / 3, *per_batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-5), got["batch_stats"], expect)
    jax.tree.map(np.testing.assert_array_equal, got["params"], stacked["params"])


@pytest.fixture(scope="module")
def digits():
    return nt.load_splits("digits", validation_fraction=0.2, test_size=200)


def test_load_splits_normalises_with_training_statistics_and_pads(digits):
    assert abs(float(digits.x_train.mean())) < 1e-5 and abs(float(digits.x_train.std()) - 1) < 1e-4
    assert len(digits.x_val) == round(0.2 * (len(digits.x_train) + len(digits.x_val)))
    padded = nt.load_splits("digits", validation_fraction=0.2, pad_to=12, test_size=10)
    assert padded.x_train.shape[1:] == (12, 12, 1)
    with pytest.raises(ValueError, match="validation_fraction"):
        nt.load_splits("digits", validation_fraction=0.0)


def test_a_stack_trains_like_separate_runs_and_resumes(digits, tmp_path):
    model = MLP(features=(8, 10), use_bias=False)
    keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
    init = nt.init_stack(model, keys, jnp.asarray(digits.x_train[:1]))
    kw = dict(epochs=2, lr=0.05, batch_size=128)
    both, curves = nt.train_stack(model, init, digits, seeds=[1, 2], **kw)
    alone, alone_curves = nt.train_stack(model, jax.tree.map(lambda a: a[1:], init), digits, seeds=[2], **kw)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1:], b, rtol=2e-5, atol=1e-6), both, alone)
    np.testing.assert_allclose(curves.val[:, 1], alone_curves.val[:, 0], atol=1e-6)
    assert curves.val[-1].min() > curves.val[0].max()      # it learns

    class Stop(Exception):
        pass

    def stop_after_1(epoch, _):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        nt.train_stack(model, init, digits, seeds=[1, 2], checkpoint_dir=tmp_path / "c", progress=stop_after_1, **kw)
    resumed, resumed_curves = nt.train_stack(model, init, digits, seeds=[1, 2], checkpoint_dir=tmp_path / "c", **kw)
    jax.tree.map(np.testing.assert_array_equal, resumed, both)
    np.testing.assert_array_equal(resumed_curves.val, curves.val)


def test_stacks_and_accuracies_are_host_copies_that_compile_nothing():
    """stack, unstack and accuracies of concrete arrays compile nothing (eagerly: a program per leaf shape) and
    give what jnp.stack, indexing and the jnp mean of the argmax hits gave (the mean within float32)."""
    rng = np.random.default_rng(0)
    trees = [{"a": jax.device_put(rng.normal(size=(3, 4)).astype(np.float32)),
              "b": {"c": jax.device_put(rng.normal(size=(5,)).astype(np.float32))}} for _ in range(3)]
    logits = jax.device_put(rng.normal(size=(3, 50, 4)).astype(np.float32))
    y = rng.integers(0, 4, 50)
    with compiled_programs() as compiled:
        stacked = _train.stack(trees)
        back = _train.unstack(stacked, 3)
        acc = _train.accuracies(logits, y)
    assert compiled == [], compiled
    jax.tree.map(np.testing.assert_array_equal, stacked, jax.tree.map(lambda *a: jnp.stack(a), *trees))
    for got, tree in zip(back, trees):
        jax.tree.map(np.testing.assert_array_equal, got, tree)
    assert all(isinstance(v, jax.Array) for v in jax.tree.leaves((stacked, back)))
    # jnp's mean of the hits was float32 (x64 or not): the host's is the exact fraction, within float32 of it
    want = np.asarray(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y)[None], axis=-1), np.float64)
    hits = (np.argmax(np.asarray(logits), -1) == y[None]).sum(-1)
    assert acc.dtype == np.float64 and np.all(acc == hits / 50)
    np.testing.assert_allclose(acc, want, rtol=np.finfo(np.float32).eps, atol=0)


def test_every_vectorize_order_gives_the_vmapped_gradients_and_unroll_writes_plain_convolutions():
    """_over_models with "map" and "unroll" equals "vmap" (SmallCNN gradients of 3 members on their own batches,
    f32 rounding); the unrolled program has neither a while loop (map's) nor a grouped convolution (vmap's), and
    an unknown order is refused."""
    from jaxlab.nn import SmallCNN

    model = SmallCNN(num_classes=3, features=(4, 8), hidden=8)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 5, 8, 8, 1)), jnp.float32)
    params = jax.vmap(lambda k: model.init(k, x[0]))(jax.random.split(jax.random.key(0), 3))

    def grad(p, xb):
        return jax.grad(lambda q: jnp.sum(jnp.tanh(model.apply(q, xb))))(p)

    fns = {v: jax.jit(_train._over_models(grad, v)) for v in _train.VECTORIZE}
    want = fns["vmap"](params, x)
    for v in ("map", "unroll"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), fns[v](params, x), want)
    hlo = {v: f.lower(params, x).as_text() for v, f in fns.items()}
    assert "feature_group_count = 3" in hlo["vmap"] and "while" in hlo["map"]
    assert "while" not in hlo["unroll"] and "feature_group_count = 3" not in hlo["unroll"]
    assert hlo["unroll"].count("convolution") >= 3 * 2
    with pytest.raises(ValueError, match="vectorize must be one of"):
        _train._over_models(grad, "scan")
    from jaxlab.core import ConfigError
    _experiment.check_config(nt.TransplantConfig(vectorize="unroll"))   # accepted by the config's validator
    with pytest.raises(ConfigError, match=r"vectorize=.*scan.*one of \['auto', 'vmap', 'map', 'unroll'\]"):
        _experiment.check_config(nt.TransplantConfig(vectorize="scan"))


def test_selection_uses_validation_not_test():
    val, test = np.array([0.5, 0.8, 0.8, 0.7]), np.array([0.5, 0.6, 0.9, 0.95])
    sel = _experiment._select(val, test)
    assert sel["best_val_epoch"] == 1 and sel["test_at_best_val"] == 0.6 and sel["test_last"] == 0.95
    assert _experiment._epochs_to_reach(val, 0.75) == 1 and _experiment._epochs_to_reach(val, 0.9) is None


def test_the_grid_resnet_starts_every_batchnorm_scale_at_one_as_the_reference():
    """Zero-initialised residual branches barely learned in the CPU row (resnet18_mnist5k_diagnosis/NOTES.md)."""
    model = _experiment.make_model("resnet18", nt.TransplantConfig(), 10)
    assert model.zero_init_residual is False   # what the option does: tests/nn/test_resnet_afno.py


def test_config_errors_name_the_field():
    from jaxlab.core import ConfigError

    with pytest.raises(ConfigError, match=r"experiments=.*mlp/cifar10.*one of \['mlp/fashion_mnist'"):
        _experiment.check_config(nt.TransplantConfig(experiments=("mlp/cifar10",)))
    with pytest.raises(ConfigError, match=r"methods=.*magic.*one of \['nt', 'nt_iterative'"):
        _experiment.check_config(nt.TransplantConfig(methods=("nt", "magic")))
    with pytest.raises(ConfigError, match="'ot' with 'ot_distill'"):
        _experiment.check_config(nt.TransplantConfig(methods=("nt", "ot_distill")))
    with pytest.raises(ConfigError, match="ks"):
        _experiment.check_config(nt.TransplantConfig(ks=(2, 0)))
    _experiment.check_config(nt.TransplantConfig(methods=("nt", "model0_distill")))   # member 0 needs no fusion


def test_configs_construct():
    from jaxlab.core import load_config

    mlp_args = ("cpu", "full", "variants", "quick", "smoke")
    for spec in ("configs/transplant/mlp.py", *(f"configs/transplant/mlp.py:{a}" for a in mlp_args),
                 *(f"configs/transplant/grid.py:{a}" for a in _grid_args())):
        config, module = load_config(spec)
        _experiment.check_config(config)
        assert callable(module.run)
    with pytest.raises(ValueError, match="unknown argument"):
        load_config("configs/transplant/mlp.py:bogus")
    # ``variants`` must share the default's members and fine-tuning (its nt/avg/ot rows repeat the default run's)
    default, _ = load_config("configs/transplant/mlp.py")
    variants, _ = load_config("configs/transplant/mlp.py:variants")
    assert dataclasses.replace(variants, methods=default.methods) == default
    assert {"nt_iterative", "nt_hierarchical", *default.methods} <= set(variants.methods)


def _grid_args():
    from jaxlab.core import load_config_module

    return load_config_module("configs/transplant/grid.py").ARGS


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
def test_peak_rss_sees_a_temporary_allocation_that_is_freed_inside_the_block():
    from jaxlab.methods.transplant._memory import PeakRSS, map_large_allocations

    def make_and_drop(mib):
        a = np.ones(mib * 2**18, np.float32)   # touched pages: resident
        return float(a[-1])

    with map_large_allocations():
        with PeakRSS() as idle:
            pass
        with PeakRSS() as busy:
            make_and_drop(64)
    assert idle.delta_mib is not None and idle.delta_mib < 16
    assert busy.delta_mib >= 60


def test_smoke_run_of_the_experiment(tmp_path):
    from jaxlab.core import load_config

    config, module = load_config("configs/transplant/mlp.py:smoke")
    with compiled_programs() as compiled:
        summary = module.run(config, tmp_path)
    assert summary["status"] == "completed"
    # each program about once: the stack's init, its TrainState, the chunked logits, the epochs (members and
    # fine-tuning), the transplant, a few small means, and the energy meter's markers (118 when the stacks,
    # accuracies, averaging and permutations ran eagerly with jnp)
    assert len(compiled) <= 32, compiled
    methods = {r["method"] for r in summary["table"]}
    assert {"best_member", "ensemble", "nt", "avg", "ot", "wm", "nt_distill"} <= methods
    nt_row = next(r for r in summary["table"] if r["method"] == "nt" and r["k"] == 2)
    assert 0.0 <= nt_row["test_before"] <= 1.0 and nt_row["fusion_s"] > 0
    # the first seed fuses twice: a first call (compilation included) and the reported warm call, each with its memory
    assert nt_row["fusion_first_s"] > 0 and nt_row["fusion_peak_mib"] is not None and "fusion_first_peak_mib" in nt_row
    assert (tmp_path / "accuracy_mlp_digits.png").is_file() and (tmp_path / "finetune_mlp_digits.png").is_file()
    assert (tmp_path / "fusion_mlp_digits.png").is_file()
    tables = (tmp_path / "tables.md").read_text()
    assert "### mlp/digits, k = 2" in tables and f"| nt | {100 * nt_row['test_before']:.2f}" in tables
    assert "### mlp/digits: fusion time s / peak memory MiB" in tables
    from jaxlab.cli import _interrupt_message        # a killed run's message counts the finished experiment

    msg = _interrupt_message(tmp_path, "interrupted", module.run.__globals__["RESUME_RECORDS"])
    assert "finished part(s) recorded in" in msg and str(tmp_path / "mlp_digits") in msg, msg
    assert f"| nt | {nt_row['fusion_s']:.3f} / {nt_row['fusion_peak_mib']:.1f} (" in tables
    # a rerun reuses the finished experiment
    again = module.run(config, tmp_path)
    assert again["table"] == summary["table"] and len(summary["load_average"]) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seeds = 5


@pytest.mark.slow   # about a minute on 2 idle cores (288 s under load 16): over the method's test budget
def test_smoke_run_of_the_grid(tmp_path):
    """grid.py's convolutional path end to end: VGG11 with BatchNorm on padded images, k = 4 (so the iterative
    and hierarchical variants run), every fusion recalibrated, distillation into member 0. The grid's fast
    test is test_configs_construct."""
    from jaxlab.core import load_config

    config, module = load_config("configs/transplant/grid.py:smoke")
    summary = module.run(config, tmp_path)
    table = {r["method"]: r for r in summary["table"] if r["k"] == 4}
    assert set(config.methods) | {"best_member", "ensemble"} <= set(table)
    for m in ("nt", "nt_iterative", "nt_hierarchical", "avg", "ot", "wm"):
        assert 0.0 <= table[m]["test_before"] <= 1.0 and 0.0 <= table[m]["test_at_best_val"] <= 1.0
        assert "test_before_no_recalibration" in table[m]   # BatchNorm: recalibrated after fusion
    assert summary["sizes"]["vgg11/digits"]["test"] == 100
