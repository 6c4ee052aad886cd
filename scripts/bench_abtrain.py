"""AB-training: low-rank matmul and SVD time (the GPU check), and bytes and step time of the compiled AB and DP steps.

    python scripts/bench_abtrain.py [--size tiny|vgg16] [--repeats 10] [--skip-steps] [--json FILE]
    (or: jaxlab bench abtrain)

1. ``lowrank_benchmark`` (``jaxlab.methods.abtrain._gpu``): ``x @ W`` against ``x @ A @ B`` (forward, and forward +
   backward), bfloat16, and the float32 SVD of ``W``; ``--size vgg16`` is timm VGG16's fc1 (25088 x 4096, batch
   128, ranks 64-1024) and needs a GPU; ``tiny`` runs on CPU in seconds. Checked against float32 first.
2. On 8 devices as 2 nodes x 4 (forced on CPU): the MLP 784-1024-1024-10 of configs/abtrain/mlp_fashion.py, global
   batch 128: intra- and inter-node bytes per call of the data-parallel step, of one AB step (both sides) at full
   rank and at rank 256, and of a sync, read from the compiled HLO; the median step times (8 fake CPU devices share
   the host's cores: compare them only as ratios within this run).
3. ``loop_profile``: where the time of configs/abtrain/mlp_fashion.py's loop goes (steps raw and through the
   trainer, batches, evaluations before and after the change to one permutation per epoch and subset evaluations
   at the syncs, the SVD program, every compile), wall and CPU time per call (``--skip-profile``: not run).

Results: bench/results/abtrain-<backend>.json.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxlab.core import save_benchmark
from jaxlab.methods.abtrain._experiment import ABTrainConfig, make_trainer
from jaxlab.methods.abtrain._gpu import lowrank_benchmark
from jaxlab.methods.abtrain._spmd import batch_sharding, on_mesh, replicated


def step_records(repeats: int) -> list[dict]:
    config = ABTrainConfig(model="mlp", hidden=(1024, 1024), global_batch=128, dataset="synthetic")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 128).astype(np.int32)
    trainer = make_trainer(config, 0, baseline=False)
    rows = []
    for label, ranks in (("full rank", None), ("rank 256", {p: 256 for p in trainer.layout.paths})):
        t = trainer.traffic_per_call(x, y, ranks=ranks, repeats=repeats)
        rows.append({"case": label, **{f"{k}_{q}": v[q] for k, v in t.items() for q in v}})
    dp = rows[0]
    for r in rows:
        r["ab_step_inter_over_dp"] = r["ab_step_inter_bytes"] / dp["full_step_inter_bytes"]
        r["ab_step_intra_over_dp"] = r["ab_step_intra_bytes"] / dp["full_step_intra_bytes"]
        if "ab_step_median_s" in r:
            r["ab_step_time_over_dp"] = r["ab_step_median_s"] / dp["full_step_median_s"]
    return rows


def _timed(fn, n: int) -> dict[str, float]:
    """Median wall and mean process CPU seconds (all threads) of ``n`` calls of ``fn`` after one warm-up call."""
    fn()
    walls, cpu0 = [], time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(walls)), "cpu_s": (time.process_time() - cpu0) / n}


def _batches_per_step_permutation(x, y, batch: int, seed: int):
    """The batch function before fa2af5c (one permutation of the training set drawn per step), for the timing."""
    per_epoch = len(x) // batch

    def get(t: int):
        epoch, j = divmod(t, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(len(x))
        idx = np.sort(perm[j * batch:(j + 1) * batch])
        return x[idx], y[idx]

    return get


def loop_profile(repeats: int) -> list[dict]:
    """Where the time of configs/abtrain/mlp_fashion.py goes, per part of the loop (same shapes, synthetic values).

    Each row: a part, its median wall time per call and its mean CPU time per call (process time of all threads:
    less sensitive to the other users of the machine than the wall time). ``raw`` steps call the compiled
    program and block on each; ``loop`` steps go through ``ABTrainer.step`` (batch transfers, keys, the ledger),
    dispatched back to back and blocked on once, so ``loop - raw`` is what the host adds per step.
    """
    from jaxlab.core import load_config
    from jaxlab.methods.abtrain._experiment import _batches

    root = Path(__file__).resolve().parent.parent
    config = dataclasses.replace(load_config(str(root / "configs" / "abtrain" / "mlp_fashion.py"))[0],
                                 dataset="synthetic")
    rng = np.random.default_rng(0)
    xtr = rng.normal(size=(60_000, 28, 28, 1)).astype(np.float32)
    ytr = rng.integers(0, 10, 60_000).astype(np.int32)
    xte, yte = xtr[:10_000], ytr[:10_000]
    rows: list[dict] = []
    for label, get in (("get_batch (before: a permutation per step)", _batches_per_step_permutation(
            xtr, ytr, config.global_batch, 0)), ("get_batch (after: one per epoch)",
                                                   _batches(xtr, ytr, config.global_batch, 0))):
        it = iter(range(10_000))
        rows.append({"part": label, **_timed(lambda get=get, it=it: get(next(it)), 20 * repeats)})
    trainer = make_trainer(config, 0, baseline=False)
    key = jax.random.key(0)
    x, y = xtr[:config.global_batch], ytr[:config.global_batch]
    counter = iter(range(10**6))

    def loop_steps(n: int = 10):
        for _ in range(n):
            trainer.step(x, y, jax.random.fold_in(key, next(counter)))
        jax.block_until_ready(trainer.full if trainer.phase == "full" else trainer.sides)

    def per_step(row: dict, n: int = 10) -> dict:
        return {**row, "median_s": row["median_s"] / n, "cpu_s": row["cpu_s"] / n}

    rep, bs = replicated(trainer.mesh), batch_sharding(trainer.mesh, per_group=False)
    fargs = [trainer.full, jax.device_put(x, bs), jax.device_put(y, bs), jax.device_put(key, rep),
             jax.device_put(np.float32(1e-3), rep)]
    full = trainer._full_step_program(*fargs)

    def raw_full():
        fargs[0] = jax.block_until_ready(full.compiled(*fargs)[0])

    rows.append({"part": "dp step (raw)", **_timed(raw_full, repeats)})
    trainer.full = fargs[0]
    rows.append({"part": "dp step (loop)", **per_step(_timed(loop_steps, max(2, repeats // 4)))})
    evals = {}
    for label, n, sync_per_batch in (("eval (before: 10000 images, a host sync per batch)", 10_000, True),
                                     ("eval (after, at syncs: 2000 images)", 2000, False),
                                     ("eval (after, final: 10000 images)", 10_000, False)):
        if sync_per_batch:
            def ev(n=n):
                for i in range(0, n, config.eval_batch):
                    r = trainer.evaluate(xte[i:i + config.eval_batch], yte[i:i + config.eval_batch],
                                         batch_size=config.eval_batch)
                    float(r["test_accuracy"])
        else:
            def ev(n=n):
                evals[n] = trainer.evaluate(xte[:n], yte[:n], batch_size=config.eval_batch)
        rows.append({"part": label, **_timed(ev, max(2, repeats // 4))})
    t0, c0 = time.perf_counter(), time.process_time()
    usv, _ = trainer._svd("probe")
    rows.append({"part": "svd program (both layers, incl. its compile)", "median_s": time.perf_counter() - t0,
                 "cpu_s": time.process_time() - c0})
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(trainer._svd("probe"))
    rows.append({"part": "svd program (both layers)", "median_s": time.perf_counter() - t0,
                 "cpu_s": time.process_time() - c0})
    trainer._to_groups(usv, dict(zip(trainer.layout.paths, (430, 310))), "probe", first=True)
    loop_steps(1)  # compiles the side programs at ranks 430, 310
    per_group = x.shape[0] // trainer.plan.num_groups
    sargs = []
    for side, groups in trainer.plan.sides:
        mesh = trainer.side_meshes[side]
        sb, srep = batch_sharding(mesh, per_group=True), replicated(mesh)
        lo, hi = groups[0] * per_group, (groups[-1] + 1) * per_group
        args = [trainer.sides[side], on_mesh(trainer.constants, mesh),
                jax.device_put(x[lo:hi].reshape(len(groups), per_group, *x.shape[1:]), sb),
                jax.device_put(y[lo:hi].reshape(len(groups), per_group), sb), jax.device_put(key, srep),
                jax.device_put(np.float32(1e-3), srep)]
        sargs.append((trainer._side_program(side, *args), args))

    def raw_ab():
        for prog, args in sargs:
            args[0] = prog.compiled(*args)[0]
        jax.block_until_ready([a[0] for _, a in sargs])

    rows.append({"part": "ab step at ranks 430,310 (raw, both sides)", **_timed(raw_ab, repeats)})
    for (side, _), (_, args) in zip(trainer.plan.sides, sargs):
        trainer.sides[side] = args[0]
    rows.append({"part": "ab step at ranks 430,310 (loop)", **per_step(_timed(loop_steps, max(2, repeats // 4)))})
    for k, prog in trainer.programs.items():
        rows.append({"part": f"compile {k}", "median_s": prog.compile_s})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default=None, help="tiny | vgg16 (default: vgg16 on a GPU, tiny otherwise)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-steps", action="store_true", help="only the low-rank matmul and SVD timings")
    ap.add_argument("--skip-profile", action="store_true", help="no loop profile of configs/abtrain/mlp_fashion.py")
    ap.add_argument("--json", default=None, help="output file (default bench/results/abtrain-<backend>.json)")
    args = ap.parse_args(argv)
    size = args.size or ("vgg16" if jax.default_backend() == "gpu" else "tiny")
    lowrank = lowrank_benchmark(size, repeats=args.repeats)
    print(f"{size}: dense forward {lowrank['dense']['forward']['median_s'] * 1e3:.3f} ms, "
          f"SVD {lowrank['svd']['median_s']:.3f} s")
    for r in lowrank["lowrank"]:
        print(f"  rank {r['rank']}: forward x{r['speedup_forward']:.2f}, train x{r['speedup_train']:.2f} "
              f"(flop ratio {r['flop_ratio']:.3f})")
    steps = [] if args.skip_steps else step_records(max(3, args.repeats // 2))
    for r in steps:
        print(f"  MLP {r['case']}: AB step inter/DP {r['ab_step_inter_over_dp']:.3f}, "
              f"intra/DP {r['ab_step_intra_over_dp']:.3f}, time/DP {r.get('ab_step_time_over_dp', float('nan')):.2f}")
    load0 = os.getloadavg()
    profile = [] if args.skip_steps or args.skip_profile else loop_profile(max(4, args.repeats))
    for r in profile:
        cpu = f", cpu {r['cpu_s'] * 1e3:.1f} ms" if "cpu_s" in r else ""
        print(f"  {r['part']}: {r['median_s'] * 1e3:.1f} ms{cpu}")
    path = save_benchmark("abtrain", steps, path=args.json, lowrank=lowrank, loop_profile=profile,
                          load_avg_start=list(load0), load_avg_end=list(os.getloadavg()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
