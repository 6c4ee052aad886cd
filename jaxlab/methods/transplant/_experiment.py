"""The Neuron Transplantation experiment: members, fusions, fine-tuning, distillation; model selection on validation.

For every experiment ``"<model>/<dataset>"`` of the config, ``run(config, workdir)``:

1. splits the training images into train and validation (``validation_fraction``; the test set is only ever
   evaluated, never selected on), normalises them with the training mean and standard deviation, and pads
   28x28 images to 32x32 for ResNet18 and VGG11;
2. trains ``seeds * max(ks)`` members (SGD with momentum, the reference's recipe; all of them in one jitted
   program); members ``0..k-1`` of a seed are the ensemble of size ``k``;
3. per seed and ``k``: the best member (chosen on validation), the output-averaged ensemble, and every fusion
   of ``methods`` with its wall time and peak memory (``fusion_s``, ``fusion_peak_mib``: the growth of the
   resident set, see ``_memory``; the first seed fuses twice and reports the first call, compilation included,
   as ``fusion_first_s`` and ``fusion_first_peak_mib``; the isolated measurement of the issue's speed goal is
   ``jaxlab bench transplant``): ``nt`` (:func:`transplant`), ``nt_iterative``,
   ``nt_hierarchical``, ``avg`` (weight averaging), ``ot`` (OT fusion, "wts"), ``wm`` (weight matching);
   models with BatchNorm are recalibrated on training data after fusion (all fused models alike);
4. fine-tunes every fused model (``finetune_epochs``), and distils the ensemble (``T = 2``) into the students
   named ``<fusion>_distill`` (``model0_distill``: member 0), all in one jitted program;
5. reports, per method, the test accuracy before fine-tuning, after the last epoch and at the epoch of best
   validation accuracy (the reference reports the maximum *test* accuracy over epochs, which selects on
   test), and the first epoch at which the validation accuracy reaches the best member's.

A killed run resumes: members and fine-tuning checkpoint every epoch (orbax), and each finished experiment
writes ``<experiment>/result.json``, which a rerun reuses.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import data as jdata
from jaxlab.core import (Rule, at_least, each, in_range, nonempty, nonnegative, one_of, optional, positive,
                         to_jsonable, validate_config, write_json)
from jaxlab.energy import EnergyMeter
from jaxlab.nn import MLP, VGG, ResNet18, SmallCNN

from ._align import average, ot_fusion, weight_matching
from ._memory import PeakRSS, map_large_allocations
from ._train import (VECTORIZE, Splits, accuracies, init_stack, make_logits_fn, recalibrate_bn, stack,
                     takes_train, train_stack, unstack)
from ._transplant import transplant, transplant_hierarchical, transplant_iterative

#: What a killed run resumes from besides top-level checkpoints (workdir-relative globs), for
#: ``jaxlab run``'s interrupt message.
RESUME_RECORDS = ("*/result.json", "*/ckpt_*/*/_CHECKPOINT_METADATA")

MODELS = ("mlp", "smallcnn", "resnet18", "vgg11")
DATASETS = ("fashion_mnist", "mnist5k", "digits")
FUSIONS = ("nt", "nt_iterative", "nt_hierarchical", "avg", "ot", "wm")
STUDENTS = ("nt", "avg", "ot", "wm", "model0")
EXPERIMENT_NAMES = tuple(f"{m}/{d}" for m in MODELS for d in DATASETS)
METHODS = (*FUSIONS, *(f"{s}_distill" for s in STUDENTS))


def _students_are_fused(config) -> bool:
    return all(m[: -len("_distill")] in ("model0", *config.methods) for m in config.methods if m.endswith("_distill"))


@dataclasses.dataclass(frozen=True)
class TransplantConfig:
    """Settings of the experiment (defaults: the reference's ex11 recipe, shortened as the issue asks).

    Attributes:
      experiments: ``"<model>/<dataset>"`` pairs; models ``mlp``, ``smallcnn``, ``resnet18`` (narrow,
        ``resnet_filters``), ``vgg11`` (``vgg_width``); datasets ``fashion_mnist``, ``mnist5k`` (``digits`` for
        tests).
      ks: ensemble sizes fused.
      seeds: independent repetitions (each with its own ``max(ks)`` members).
      member_epochs, finetune_epochs: training epochs of the members and of every fused model.
      batch_size, lr, momentum, weight_decay: SGD of the members (the reference: 256, 0.01, 0.9, 0).
      finetune_lr: SGD rate after fusion (the reference: 0.01).
      methods: fusions (:data:`FUSIONS`) and distillation students (``<fusion>_distill``, ``model0_distill``).
      validation_fraction: share of the training images held out for model selection.
      train_size, test_size: use only this many training / test images (None: all).
      mlp_hidden, mlp_bias: the MLP's hidden widths (the reference's ``smallnn``: 3 x 512, no bias).
      cnn_features, cnn_hidden: SmallCNN's widths.
      resnet_filters, vgg_width: width of the narrow ResNet18 (64 in the paper) and VGG11 scale.
      temperature, distill_alpha: distillation (the reference: T = 2, soft targets only).
      bn_batches: batches of the BatchNorm recalibration after fusion.
      vectorize: ``"auto"`` (vmap the MLPs, map the convolutional nets), ``"vmap"``, ``"map"`` or ``"unroll"``
        (one plain program per model in one jitted function; on a CPU about 10x faster than ``"map"`` for the
        convolutional nets, with compile time growing in the number of models; see ``_over_models``).
    """

    experiments: tuple[str, ...] = ("mlp/fashion_mnist",)
    ks: tuple[int, ...] = (2, 4)
    seeds: int = 3
    member_epochs: int = 20
    finetune_epochs: int = 10
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    finetune_lr: float = 0.01
    methods: tuple[str, ...] = ("nt", "avg", "ot", "wm", "nt_distill", "model0_distill")
    validation_fraction: float = 0.1
    train_size: int | None = None
    test_size: int | None = None
    mlp_hidden: tuple[int, ...] = (512, 512, 512)
    mlp_bias: bool = False
    cnn_features: tuple[int, ...] = (32, 64)
    cnn_hidden: int = 128
    resnet_filters: int = 8
    vgg_width: float = 0.125
    temperature: float = 2.0
    distill_alpha: float = 1.0
    bn_batches: int = 20
    vectorize: str = "auto"

    CONSTRAINTS: ClassVar[dict] = {
        "experiments": (nonempty, each(one_of(*EXPERIMENT_NAMES))), "ks": (nonempty, each(at_least(1))),
        "seeds": positive, "member_epochs": positive, "finetune_epochs": nonnegative, "batch_size": positive,
        "lr": positive, "momentum": in_range(0.0, 1.0, high_open=True), "weight_decay": nonnegative,
        "finetune_lr": positive, "methods": (nonempty, each(one_of(*METHODS))),
        "validation_fraction": in_range(0.0, 1.0, low_open=True, high_open=True),
        "train_size": optional(positive), "test_size": optional(positive), "mlp_hidden": (nonempty, each(positive)),
        "cnn_features": (nonempty, each(positive)), "cnn_hidden": positive, "resnet_filters": positive,
        "vgg_width": positive, "temperature": positive, "distill_alpha": in_range(0.0, 1.0), "bn_batches": positive,
        "vectorize": one_of("auto", *VECTORIZE),
    }
    RULES: ClassVar[tuple] = (
        Rule(("methods",), _students_are_fused,
             "every '<fusion>_distill' student's fusion among methods too (e.g. 'ot' with 'ot_distill')"),
    )


def check_config(config: TransplantConfig) -> None:
    """Raises :class:`jaxlab.core.ConfigError` (a ValueError) naming the bad field and what it allows."""
    validate_config(config)


def make_model(name: str, config: TransplantConfig, num_classes: int):
    if name == "mlp":
        return MLP(features=(*config.mlp_hidden, num_classes), use_bias=config.mlp_bias)
    if name == "smallcnn":
        return SmallCNN(num_classes, features=config.cnn_features, hidden=config.cnn_hidden)
    if name == "resnet18":
        # zero_init_residual=False: the reference's ResNet18 (kuangliu's, torch's BatchNorm init) starts every
        # scale at 1; zero-initialised branches barely learn in the CPU row's 56 steps
        # (bench/results/transplant/resnet18_mnist5k_diagnosis/NOTES.md)
        return ResNet18(num_classes=num_classes, num_filters=config.resnet_filters, small_inputs=True,
                        zero_init_residual=False)
    if name == "vgg11":
        return VGG.vgg11(num_classes, width=config.vgg_width)
    raise ValueError(f"unknown model {name!r}; use one of {MODELS}")


def load_splits(dataset: str, *, validation_fraction: float, pad_to: int | None = None,
                train_size: int | None = None, test_size: int | None = None, seed: int = 0) -> Splits:
    """Train / validation (carved from train at random, ``seed``) / test images, normalised by the training
    mean and standard deviation; 28x28 images zero-padded to ``pad_to`` first."""
    loaders = {"fashion_mnist": jdata.load_fashion_mnist, "mnist5k": jdata.load_mnist5k, "digits": jdata.load_digits}
    ds = loaders[dataset]()
    n = len(ds.x_train)
    n_val = int(round(validation_fraction * n))
    if not 0 < n_val < n:
        raise ValueError(f"validation_fraction {validation_fraction} leaves no train or no validation images")
    perm = np.random.default_rng(seed).permutation(n)
    val, train = perm[:n_val], perm[n_val:]
    if train_size is not None:
        train = train[:train_size]
    x_test, y_test = ds.x_test, ds.y_test
    if test_size is not None:
        x_test, y_test = x_test[:test_size], y_test[:test_size]

    def prep(x):
        x = np.asarray(x, np.float32)
        if pad_to is not None and x.shape[1] < pad_to:
            a = (pad_to - x.shape[1]) // 2
            b = pad_to - x.shape[1] - a
            x = np.pad(x, ((0, 0), (a, b), (a, b), (0, 0)))
        return x

    x_train = prep(ds.x_train[train])
    mean, std = float(x_train.mean()), float(x_train.std())
    norm = lambda x: ((prep(x) - mean) / std).astype(np.float32)  # noqa: E731
    return Splits(norm(ds.x_train[train]), ds.y_train[train].astype(np.int32), norm(ds.x_train[val]),
                  ds.y_train[val].astype(np.int32), norm(x_test), np.asarray(y_test, np.int32), ds.num_classes)


def padded_size(model_name: str) -> int | None:
    """The image size a model takes: 32 for ResNet18 and VGG11 (28x28 images are zero-padded), else as loaded."""
    return 32 if model_name in ("resnet18", "vgg11") else None


def resolve_vectorize(model_name: str, config: TransplantConfig) -> str:
    """``config.vectorize`` with ``"auto"`` resolved: ``"vmap"`` for the MLP, ``"map"`` for the convolutional nets.

    Why not ``"unroll"`` for the conv nets: in whole training epochs on the 2-core CPU
    (``scripts/bench_transplant_vectorize.py --epochs 3 --model M``, later epochs) it was faster than ``"map"`` by
    1.19x (SmallCNN), 1.17x (VGG11) and 1.25x (ResNet18) with 4 members, and by 1.02x (SmallCNN) and 1.19x (VGG11)
    with 8, its first epoch (compilation) the slower one with 8 (bench/results/transplant-vectorize-epochs-cpu-
    k{4,8}-s16.json, -vgg11-k{4,8}-s17.json, -resnet18-k4-s17.json). Not measured with the 24 members the full grid
    stacks (its compilation grows with them), and switching would change the committed conv rows' bits; pass
    ``vectorize="unroll"`` for small stacks.
    """
    return config.vectorize if config.vectorize != "auto" else ("vmap" if model_name == "mlp" else "map")


def experiment_splits(name: str, config: TransplantConfig) -> Splits:
    """The splits of experiment ``"<model>/<dataset>"`` as :func:`run` loads them (padding, sizes, validation)."""
    model_name, _, dataset = name.partition("/")
    return load_splits(dataset, validation_fraction=config.validation_fraction, pad_to=padded_size(model_name),
                       train_size=config.train_size, test_size=config.test_size)


def _progress(desc: str, total: int):
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    bar = tqdm(total=total, desc=desc, disable=not tty, leave=False)
    t0 = time.perf_counter()

    def update(epoch, curves):
        bar.update(1)
        bar.set_postfix(val=f"{np.nanmean(curves.val[epoch]):.4f}")
        if not tty:   # a log line per epoch instead of the bar (background runs write to a log file)
            print(f"{desc}: epoch {epoch}/{total}, mean val {np.nanmean(curves.val[epoch]):.4f}, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        if epoch == total:
            bar.close()

    return update


def _select(val: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Last-epoch and best-validation (earliest on ties) test accuracy of one model's curves."""
    best = int(np.argmax(val))
    return {"test_last": float(test[-1]), "val_last": float(val[-1]), "best_val_epoch": best,
            "test_at_best_val": float(test[best]), "val_best": float(val[best])}


def _epochs_to_reach(val: np.ndarray, target: float) -> int | None:
    hit = np.nonzero(val >= target - 1e-12)[0]
    return int(hit[0]) if hit.size else None


def _fuse_once(method: str, members: list):
    if method == "nt":
        _, v = transplant(members)
    elif method == "nt_iterative":
        _, v = transplant_iterative(members)
    elif method == "nt_hierarchical":
        _, v = transplant_hierarchical(members)
    elif method == "avg":
        _, v = average(members)
    elif method == "ot":
        _, v = ot_fusion(members)
    elif method == "wm":
        _, v = weight_matching(members)
    else:
        raise ValueError(f"unknown fusion {method!r}")
    return jax.block_until_ready(jax.tree.map(jnp.asarray, v))


def _fuse(method: str, members: list, *, warm_up: bool = False) -> tuple[Any, dict[str, float | None]]:
    """One fusion and its cost; raises ValueError when the fusion does not apply to the model.

    Returns ``(variables, cost)`` with ``cost["fusion_s"]`` (wall time) and ``cost["fusion_peak_mib"]`` (peak
    growth of the resident set, :class:`PeakRSS`, with large allocations mapped). With ``warm_up`` the fusion
    runs twice: the first call (compilation included) is reported as ``fusion_first_s`` and
    ``fusion_first_peak_mib``, the second as the cost (fusions are deterministic: both return the same model).
    """
    cost: dict[str, float | None] = {}
    with map_large_allocations():
        if warm_up:
            gc.collect()
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                _fuse_once(method, members)
                cost["fusion_first_s"] = time.perf_counter() - t0
            cost["fusion_first_peak_mib"] = mem.delta_mib
        gc.collect()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            v = _fuse_once(method, members)
            cost["fusion_s"] = time.perf_counter() - t0
        cost["fusion_peak_mib"] = mem.delta_mib
    return v, cost


def run_experiment(name: str, config: TransplantConfig, workdir: Path) -> dict:
    """One ``"<model>/<dataset>"`` experiment (see the module docstring); returns its result record."""
    model_name = name.partition("/")[0]
    out_dir = workdir / name.replace("/", "_")
    result_file = out_dir / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = experiment_splits(name, config)
    model = make_model(model_name, config, splits.num_classes)
    vectorize = resolve_vectorize(model_name, config)
    bn = takes_train(model) and model_name != "mlp"
    kmax, S = max(config.ks), config.seeds
    common = dict(momentum=config.momentum, batch_size=config.batch_size, weight_decay=config.weight_decay,
                  vectorize=vectorize)

    # ---- members: seeds x kmax, member (s, i) seeded by 1000 s + i
    member_seeds = [1000 * s + i for s in range(S) for i in range(kmax)]
    keys = jnp.stack([jax.random.key(q) for q in member_seeds])
    init = init_stack(model, keys, jnp.asarray(splits.x_train[:1]))
    t0 = time.perf_counter()
    members, member_curves = train_stack(
        model, init, splits, epochs=config.member_epochs, lr=config.lr, seeds=member_seeds,
        checkpoint_dir=out_dir / "ckpt_members", progress=_progress(f"{name} members", config.member_epochs),
        **common)
    members_s = time.perf_counter() - t0
    logits_fn = make_logits_fn(model, vectorize=vectorize)
    val_logits = logits_fn(members, splits.x_val)
    test_logits = logits_fn(members, splits.x_test)
    member_val = accuracies(val_logits, splits.y_val).reshape(S, kmax)
    member_test = accuracies(test_logits, splits.y_test).reshape(S, kmax)
    members_list = unstack(members, S * kmax)
    need_teacher = any(m.endswith("_distill") for m in config.methods)
    train_logits = logits_fn(members, splits.x_train) if need_teacher else None

    # ---- per (seed, k): reference rows and fusions
    rows, fused, meta, teachers = [], [], [], []
    for s in range(S):
        for k in config.ks:
            ens = [(model, members_list[s * kmax + i]) for i in range(k)]
            idx = slice(s * kmax, s * kmax + k)
            best = int(np.argmax(member_val[s, :k]))
            base = {"experiment": name, "seed": s, "k": k}
            rows.append({**base, "method": "best_member", "member": best, "val": float(member_val[s, best]),
                         "test": float(member_test[s, best]), "test_max_over_members": float(member_test[s, :k].max())})
            rows.append({**base, "method": "ensemble",
                         "val": float(accuracies(val_logits[idx].mean(0, keepdims=True), splits.y_val)[0]),
                         "test": float(accuracies(test_logits[idx].mean(0, keepdims=True), splits.y_test)[0])})
            t_index = len(teachers)
            if need_teacher:
                teachers.append(train_logits[idx].mean(0))
            fused_here = {}
            for m in config.methods:
                if m.endswith("_distill"):
                    continue
                if (m == "nt_iterative" and k <= 2) or (m == "nt_hierarchical" and k <= 3):
                    continue   # the same computation as nt (and its results) for these k
                try:
                    # the first seed's fusions run twice: the second call is timed without compilation
                    v, cost = _fuse(m, ens, warm_up=s == 0)
                except ValueError as e:
                    rows.append({**base, "method": m, "not_applicable": str(e)})
                    continue
                raw = v if bn else None
                if bn:
                    v = recalibrate_bn(model, jax.tree.map(lambda a: a[None], v), splits.x_train,
                                       num_batches=config.bn_batches, batch_size=config.batch_size)
                    v = jax.tree.map(lambda a: a[0], v)
                fused_here[m] = (v, raw, cost)
            for m in config.methods:
                student = m[: -len("_distill")] if m.endswith("_distill") else None
                if student is None:
                    if m in fused_here:
                        fused.append(fused_here[m][0])
                        meta.append({**base, "method": m, **fused_here[m][2], "alpha": 0.0,
                                     "teacher": t_index, **({"raw": fused_here[m][1]} if bn else {})})
                elif student == "model0":
                    fused.append(ens[0][1])
                    meta.append({**base, "method": m, "alpha": config.distill_alpha, "teacher": t_index})
                elif student in fused_here:
                    fused.append(fused_here[student][0])
                    meta.append({**base, "method": m, "alpha": config.distill_alpha, "teacher": t_index})

    # ---- before fine-tuning (and without recalibration, for BatchNorm models)
    if fused:
        fused_stack = stack(fused)
        for i, (v, a) in enumerate(zip(accuracies(logits_fn(fused_stack, splits.x_val), splits.y_val),
                                       accuracies(logits_fn(fused_stack, splits.x_test), splits.y_test))):
            meta[i].update(val_before=float(v), test_before=float(a))
        raw_idx = [i for i, m in enumerate(meta) if "raw" in m]
        if bn and raw_idx:
            raw_stack = stack([meta[i]["raw"] for i in raw_idx])
            for i, a in zip(raw_idx, accuracies(logits_fn(raw_stack, splits.x_test), splits.y_test)):
                meta[i]["test_before_no_recalibration"] = float(a)
        for m in meta:
            m.pop("raw", None)

        # ---- fine-tuning and distillation, every model in one program
        t0 = time.perf_counter()
        teacher_arr = jnp.stack(teachers) if teachers else None
        _, ft = train_stack(
            model, fused_stack, splits, epochs=config.finetune_epochs, lr=config.finetune_lr,
            # the models of one (seed, k) see the same batch order: methods are compared on paired runs
            seeds=[5000 + 100 * m["seed"] + m["k"] for m in meta], teachers=teacher_arr,
            teacher_index=[m["teacher"] for m in meta], alpha=[m["alpha"] for m in meta],
            temperature=config.temperature, checkpoint_dir=out_dir / "ckpt_finetune",
            progress=_progress(f"{name} fine-tuning", config.finetune_epochs), **common)
        finetune_s = time.perf_counter() - t0
        for i, m in enumerate(meta):
            best_member_val = next(r["val"] for r in rows if r["method"] == "best_member" and r["seed"] == m["seed"]
                                   and r["k"] == m["k"])
            m.update(_select(ft.val[:, i], ft.test[:, i]))
            m["epochs_to_best_member"] = _epochs_to_reach(ft.val[:, i], best_member_val)
            m["val_curve"] = [round(float(a), 5) for a in ft.val[:, i]]
            m["test_curve"] = [round(float(a), 5) for a in ft.test[:, i]]
            m.pop("teacher")
    else:
        finetune_s = 0.0
    result = {"experiment": name, "rows": rows + meta, "members_s": members_s, "finetune_s": finetune_s,
              "member_val_curves": np.round(member_curves.val, 5).tolist(),
              "member_test": member_test.tolist(), "member_val": member_val.tolist(),
              "sizes": {"train": len(splits.x_train), "val": len(splits.x_val), "test": len(splits.x_test)}}
    write_json(result_file, to_jsonable(result))
    return result


def _mean_std(values):
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarise(results: list[dict], config: TransplantConfig) -> list[dict]:
    """Mean and std over seeds per (experiment, k, method)."""
    table = []
    for res in results:
        rows = res["rows"]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        for k in config.ks:
            for m in methods:
                sel = [r for r in rows if r["k"] == k and r["method"] == m and "not_applicable" not in r]
                if not sel:
                    na = next((r for r in rows if r["k"] == k and r["method"] == m), None)
                    if na is not None:
                        table.append({"experiment": res["experiment"], "k": k, "method": m,
                                      "note": "n/a: " + na["not_applicable"][:80]})
                    continue
                row = {"experiment": res["experiment"], "k": k, "method": m, "seeds": len(sel)}
                if m in ("best_member", "ensemble"):
                    row["test"], row["test_std"] = _mean_std(r["test"] for r in sel)
                    row["val"], _ = _mean_std(r["val"] for r in sel)
                    if m == "best_member":
                        row["test_max_over_members"], _ = _mean_std(r["test_max_over_members"] for r in sel)
                else:
                    for key in ("test_before", "test_last", "test_at_best_val", "val_before", "val_best", "fusion_s",
                                "fusion_peak_mib", "fusion_first_s", "fusion_first_peak_mib",
                                "test_before_no_recalibration"):
                        if key in sel[0]:
                            row[key], row[key + "_std"] = _mean_std(r.get(key) for r in sel)
                    hits = [r["epochs_to_best_member"] for r in sel]
                    row["epochs_to_best_member"] = hits
                table.append({key: (round(v, 5) if isinstance(v, float) else v) for key, v in row.items()})
    return table


def markdown_tables(table: list[dict], config: TransplantConfig) -> str:
    """The summary's table as Markdown, one table per experiment and k: test accuracy (mean ± std over seeds)
    before fine-tuning, after the last epoch and at the best-validation epoch, the epochs each seed took to
    reach the best member's validation accuracy, the fusion time and peak memory; then per experiment one table
    of fusion time and peak memory against k."""

    def pct(row, key):
        if row.get(key) is None:
            return ""
        std = row.get(key + "_std")
        return f"{100 * row[key]:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")

    out = []
    for e in dict.fromkeys(r["experiment"] for r in table):
        for k in config.ks:
            rows = [r for r in table if r["experiment"] == e and r["k"] == k]
            if not rows:
                continue
            header = ("| method | before fine-tuning (members: as trained) | last epoch | best-validation epoch "
                      "| epochs to best member | fusion s | fusion peak MiB |")
            out += [f"### {e}, k = {k} (test accuracy %, mean ± std over seeds)", "", header,
                    "|---|---|---|---|---|---|---|"]
            for r in rows:
                if "note" in r:
                    out.append(f"| {r['method']} | {r['note']} | | | | | |")
                elif r["method"] in ("best_member", "ensemble"):
                    out.append(f"| {r['method'].replace('_', ' ')} | {pct(r, 'test')} | | | | | |")
                else:
                    hits = ", ".join("never" if h is None else str(h) for h in r.get("epochs_to_best_member", []))
                    out.append(f"| {r['method']} | {pct(r, 'test_before')} | {pct(r, 'test_last')} | "
                               f"{pct(r, 'test_at_best_val')} | {hits} | {_fmt(r.get('fusion_s'), 3)} | "
                               f"{_fmt(r.get('fusion_peak_mib'), 1)} |")
            out.append("")
        fusions = [m for m in dict.fromkeys(r["method"] for r in table if r["experiment"] == e)
                   if any(r.get("fusion_s") is not None for r in table if r["experiment"] == e and r["method"] == m)]
        if fusions:
            out += [(f"### {e}: fusion time s / peak memory MiB (mean over seeds of warm calls; first call, with "
                     "compilation, in brackets)"), "", "| method | " + " | ".join(f"k = {k}" for k in config.ks) + " |",
                    "|---|" + "---|" * len(config.ks)]
            for m in fusions:
                cells = []
                for k in config.ks:
                    r = next((r for r in table if r["experiment"] == e and r["k"] == k and r["method"] == m), None)
                    if r is None or r.get("fusion_s") is None:
                        cells.append("")
                        continue
                    cell = f"{_fmt(r['fusion_s'], 3)} / {_fmt(r.get('fusion_peak_mib'), 1)}"
                    if r.get("fusion_first_s") is not None:
                        cell += f" ({_fmt(r['fusion_first_s'], 3)} / {_fmt(r.get('fusion_first_peak_mib'), 1)})"
                    cells.append(cell)
                out.append(f"| {m} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


def _fmt(x, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _get(table, experiment, k, method, key):
    return next((r.get(key) for r in table if r["experiment"] == experiment and r["k"] == k and r["method"] == method),
                None)


def headline(table: list[dict], results: list[dict], config: TransplantConfig, experiment: str) -> dict:
    """The issue's accuracy goals for one experiment, per k (per-seed comparisons where they are paired)."""
    out = {}
    res = next((r for r in results if r["experiment"] == experiment), None)
    if res is None:
        return out
    rows = res["rows"]

    def per_seed(method, key, k):
        return {r["seed"]: r.get(key) for r in rows if r["method"] == method and r["k"] == k and key in r}

    for k in config.ks:
        nt_ft = _get(table, experiment, k, "nt", "test_at_best_val")
        nt_last = _get(table, experiment, k, "nt", "test_last")
        best = _get(table, experiment, k, "best_member", "test")
        best_max = _get(table, experiment, k, "best_member", "test_max_over_members")
        avg_ft = _get(table, experiment, k, "avg", "test_at_best_val")
        nt_before = _get(table, experiment, k, "nt", "test_before")
        avg_before = _get(table, experiment, k, "avg", "test_before")
        if nt_ft is not None and best is not None:
            out[f"k{k}_nt_ft_minus_best_member_pp"] = round(100 * (nt_ft - best), 3)
            out[f"k{k}_nt_ft_ge_best_member_plus_0.3pp"] = bool(nt_ft >= best + 0.003)
            out[f"k{k}_nt_last_ge_best_member_plus_0.3pp"] = bool(nt_last >= best + 0.003)
            out[f"k{k}_nt_ft_ge_max_test_member_plus_0.3pp"] = bool(nt_ft >= best_max + 0.003)
        if nt_ft is not None and avg_ft is not None:
            out[f"k{k}_nt_ft_ge_avg_ft"] = bool(nt_ft >= avg_ft)
        if nt_before is not None and avg_before is not None:
            out[f"k{k}_nt_before_gt_avg_before"] = bool(nt_before > avg_before)
        e_nt, e_ot = per_seed("nt", "epochs_to_best_member", k), per_seed("ot", "epochs_to_best_member", k)
        if e_nt and e_ot:
            inf = config.finetune_epochs + 1   # never reached: counts as more than every epoch
            pairs = [((e_nt[s] if e_nt[s] is not None else inf), (e_ot[s] if e_ot[s] is not None else inf))
                     for s in e_nt if s in e_ot]
            out[f"k{k}_nt_epochs_to_best_member"] = [p[0] if p[0] != inf else None for p in pairs]
            out[f"k{k}_ot_epochs_to_best_member"] = [p[1] if p[1] != inf else None for p in pairs]
            out[f"k{k}_nt_epochs_le_ot_every_seed"] = bool(all(a <= b for a, b in pairs))
    return out


def plot(results: list[dict], table: list[dict], config: TransplantConfig, workdir: Path) -> list[str]:
    """``accuracy_<experiment>.png`` (test accuracy against k, before and after fine-tuning),
    ``finetune_<experiment>.png`` (validation accuracy over fine-tuning epochs, seed mean, per k) and
    ``fusion_<experiment>.png`` (fusion time and peak memory against k)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for res in results:
        e = res["experiment"]
        tag = e.replace("/", "_")
        methods = [m for m in dict.fromkeys(r["method"] for r in res["rows"]) if m not in ("best_member", "ensemble")]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for ax, key, title in ((axes[0], "test_before", "before fine-tuning"),
                               (axes[1], "test_at_best_val", "after fine-tuning (best validation epoch)")):
            for m in methods:
                ks = [k for k in config.ks if _get(table, e, k, m, key) is not None]
                if ks:
                    ax.errorbar(ks, [_get(table, e, k, m, key) for k in ks],
                                yerr=[_get(table, e, k, m, key + "_std") for k in ks], marker="o", capsize=3, label=m)
            for ref, style in (("best_member", "k--"), ("ensemble", "k:")):
                ks = [k for k in config.ks if _get(table, e, k, ref, "test") is not None]
                ax.plot(ks, [_get(table, e, k, ref, "test") for k in ks], style, label=ref.replace("_", " "))
            ax.set(xlabel="ensemble size k", title=title, xticks=list(config.ks))
        axes[0].set_ylabel(f"{e}: test accuracy (mean ± std over seeds)")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(workdir / f"accuracy_{tag}.png", dpi=110)
        plt.close(fig)
        names.append(f"accuracy_{tag}.png")

        fig, axes = plt.subplots(1, len(config.ks), figsize=(5 * len(config.ks), 3.8), squeeze=False)
        for ax, k in zip(axes[0], config.ks):
            for m in methods:
                curves = [r["val_curve"] for r in res["rows"] if r["method"] == m and r["k"] == k and "val_curve" in r]
                if curves:
                    ax.plot(np.mean(curves, axis=0), marker=".", label=m)
            best = [r["val"] for r in res["rows"] if r["method"] == "best_member" and r["k"] == k]
            ax.axhline(np.mean(best), color="k", ls="--", lw=1, label="best member")
            ax.set(xlabel="fine-tuning epoch (0: right after fusion)", ylabel="validation accuracy",
                   title=f"{e}, k={k}")
            lo = np.mean(best) - 0.05
            ax.set_ylim(bottom=max(0.0, lo))
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(workdir / f"finetune_{tag}.png", dpi=110)
        plt.close(fig)
        names.append(f"finetune_{tag}.png")

        fusions = [m for m in methods if any(_get(table, e, k, m, "fusion_s") is not None for k in config.ks)]
        if fusions:
            fig, axes = plt.subplots(1, 2, figsize=(11, 4))
            for ax, key, label in ((axes[0], "fusion_s", "fusion time, s"),
                                   (axes[1], "fusion_peak_mib", "fusion peak memory, MiB (resident-set growth)")):
                for m in fusions:
                    ks = [k for k in config.ks if _get(table, e, k, m, key) is not None]
                    if ks:
                        ax.plot(ks, [max(_get(table, e, k, m, key), 1e-3) for k in ks], marker="o", label=m)
                ax.set(xlabel="ensemble size k", ylabel=label, yscale="log", xticks=list(config.ks),
                       title=f"{e}: {label.split(',')[0]} (warm calls, mean over seeds)")
            axes[0].legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(workdir / f"fusion_{tag}.png", dpi=110)
            plt.close(fig)
            names.append(f"fusion_{tag}.png")
    return names


def run(config: TransplantConfig, workdir: str | Path) -> dict:
    """Runs every experiment of ``config``; writes ``summary.json`` (``table``, headline goals) and plots."""
    check_config(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = []
    with EnergyMeter() as meter:
        for e in config.experiments:
            results.append(run_experiment(e, config, workdir))
            print(f"{e}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        jax.block_until_ready(jnp.zeros(()))
    energy = meter.report().to_dict()
    table = summarise(results, config)
    plots = plot(results, table, config, workdir)
    summary = {"status": "completed", "config": dataclasses.asdict(config), "wall_s": time.perf_counter() - t0,
               "table": table, "plots": plots, "energy": energy,
               "experiment_wall_s": {r["experiment"]: {"members_s": r["members_s"], "finetune_s": r["finetune_s"]}
                                     for r in results},
               "sizes": {r["experiment"]: r["sizes"] for r in results},
               "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    for i, e in enumerate(config.experiments):
        goals = headline(table, results, config, e)
        summary.update({f"{e.replace('/', '_')}_{key}": v for key, v in goals.items()})
        if i == 0:   # the first experiment's goals also under plain names (what `jaxlab reproduce` shows)
            summary.update(goals)
    first = config.experiments[0]
    for k in config.ks:
        for m, key in (("nt", "test_at_best_val"), ("nt", "test_before"), ("avg", "test_at_best_val"),
                       ("best_member", "test"), ("ensemble", "test")):
            summary[f"{m}_{key}_k{k}"] = _get(table, first, k, m, key)
    write_json(workdir / "summary.json", to_jsonable(summary))
    (workdir / "tables.md").write_text(markdown_tables(table, config), encoding="utf-8")
    return summary
