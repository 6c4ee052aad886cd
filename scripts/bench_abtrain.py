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

Results: bench/results/abtrain-<backend>.json.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse

import jax
import numpy as np

from jaxlab.core import save_benchmark
from jaxlab.methods.abtrain._experiment import ABTrainConfig, make_trainer
from jaxlab.methods.abtrain._gpu import lowrank_benchmark


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default=None, help="tiny | vgg16 (default: vgg16 on a GPU, tiny otherwise)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-steps", action="store_true", help="only the low-rank matmul and SVD timings")
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
    path = save_benchmark("abtrain", steps, path=args.json, lowrank=lowrank)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
