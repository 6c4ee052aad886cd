"""Throughput of the coincidence sorters and of the jitted PETNet forward, same device, same batch.

For each preset: ``--batch`` test samples are simulated; the jitted SCW (on compact hit lists and from
the dense input trains), SCW + geometry (both multiples policies), delay-calibrated SCW, the
reference-style per-sample Python loop, and PETNet's forward pass (reference-equivalent and 3-layer
nets, with the geometry channel, H = 240) are timed after compilation: median of ``--repeats`` calls,
``block_until_ready`` (``jaxlab.methods.petnet.measure_throughput``, which checks the jitted SCW against
the loop before timing). Throughput does not depend on the network's weight values, so an
initialised net (with the headline recipe's gains) is timed. Ratios ``petnet_over_<sorter>`` > 1 mean the
network is faster.

Usage: python scripts/bench_petnet.py [--presets reduced,clinical --batch 1000 --clinical-batch 100 --repeats 5]
       (the clinical batch is smaller: its dense input is 1000 x 480 floats per sample)
       (or ``jaxlab bench petnet``). Writes bench/results/petnet-<backend>.json.
"""

from __future__ import annotations

import argparse
import os

import jax

from jaxlab.core import save_benchmark
from jaxlab.methods.petnet import Variant, get_preset, measure_throughput, simulate
from jaxlab.methods.petnet._experiment import HEADLINE_RECIPE
from jaxlab.methods.petnet._train import init_params


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="reduced,clinical")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clinical-batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="output file (default bench/results/petnet-<backend>.json)")
    args = ap.parse_args(argv)
    records = []
    for name in args.presets.split(","):
        preset = get_preset(name)
        batch = args.batch if name == "reduced" else args.clinical_batch
        data = jax.device_get(simulate(jax.random.key(1), preset, batch))
        for arch in ("reference", "three_layer"):
            v = Variant("l1_vr", True, arch)
            net, params = init_params(preset, v, HEADLINE_RECIPE.settings(arch), key=jax.random.key(0))
            r = measure_throughput(preset, data, net, params, True, batch=batch, repeats=args.repeats)
            rec = {"preset": name, "architecture": arch, "num_steps": preset.num_steps,
                   "num_crystals": preset.num_crystals, **r}
            records.append(rec)
            print(f"[bench petnet] {name:9s} {arch:11s} PETNet forward {r['petnet_forward']['samples_per_s']:10.0f}/s"
                  f" | SCW jit (hits) {r['scw_jit_hits']['samples_per_s']:10.0f}/s"
                  f" | SCW jit (dense) {r['scw_jit_dense']['samples_per_s']:9.0f}/s"
                  f" | SCW loop {r['scw_reference_loop']['samples_per_s']:8.0f}/s", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    path = save_benchmark("petnet", records, args.json, load_average=load, repeats=args.repeats)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
