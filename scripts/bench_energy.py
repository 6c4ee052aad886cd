"""Overhead of jaxlab.energy's EnergyMeter on a synced training-like step (goal: <= 1% at >= 10 ms steps).

    python scripts/bench_energy.py [--size 448] [--steps 100] [--repeats 5] [--json FILE]
    (or: jaxlab bench energy)

The step is a jitted chain of matmuls sized to take about 10 ms or more. Every variant blocks on the
step's output each step (per-step windows need that sync, and the training loop syncs before each
read), so the difference to the bare synced loop is the meter's own cost:

* ``meter.read()`` per step (what ``jaxlab.train.train_loop`` does per window);
* ``begin_window``/``end_window`` per step (per-step J/step);
* each with the sensors this machine has, and with scripted sensors (a powercap tree on disk with
  package + DRAM zones and a Python NVML stand-in with a power-only GPU, whose background thread samples
  every 10 ms) so the RAPL file reads and the poller thread are in the figure even without hardware.
  Real NVML calls cost more than the stand-in (tens of microseconds each, not measured here).

Variants run interleaved (in a rotating order per repeat) and the overhead is the median over repeats
of the per-repeat ratio to the bare loop, which cancels most of the drift of a shared machine; a second
bare loop ("control") shows the noise floor. The per-call cost of one
``read()`` is also measured directly and reported as a fraction of the step time (the more robust
figure on a noisy machine). Correctness check first: per-step windows sum to the total.
Results: bench/results/energy-<backend>.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxlab import energy
from jaxlab.core import save_benchmark


class _PowerOnlyNvml:
    """Stand-in for pynvml: one GPU without an energy counter, drawing a constant 300 W."""

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        raise RuntimeError("Not Supported")

    def nvmlDeviceGetPowerUsage(self, h):
        return 300_000


def _powercap(root: Path) -> Path:
    for d, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:1", "dram")):
        z = root / d
        z.mkdir(parents=True)
        (z / "name").write_text(name + "\n")
        (z / "energy_uj").write_text("123456\n")
        (z / "max_energy_range_uj").write_text("262143328850\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=448, help="matrix size of the step (4 matmuls)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="output file (default bench/results/energy-<backend>.json)")
    args = ap.parse_args()

    n = args.size
    w = jax.random.normal(jax.random.key(0), (4, n, n), jnp.float32) / n**0.5

    @jax.jit
    def step(x):
        for i in range(4):
            x = jnp.tanh(x @ w[i])
        return x

    x0 = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    jax.block_until_ready(step(x0))

    def bare(meter=None):
        x = x0
        for _ in range(args.steps):
            x = jax.block_until_ready(step(x))
        return x

    def with_read(meter):
        x = x0
        for _ in range(args.steps):
            x = jax.block_until_ready(step(x))
            meter.read()
        return x

    def with_window(meter):
        x = x0
        for _ in range(args.steps):
            meter.begin_window("step")
            x = step(x)
            meter.end_window("step", x)
        return x

    tmp = Path(tempfile.mkdtemp())
    meters = {
        "this_machine": energy.EnergyMeter(),
        "scripted_rapl_nvml_power": energy.EnergyMeter(
            devices=(), gpu_indices=[0], nvml=_PowerOnlyNvml(), rapl_root=_powercap(tmp / "powercap"),
            power_interval_s=0.01),
    }

    # Correctness: per-step windows add up to the meter's total over the same span.
    m = meters["this_machine"]
    m.start()
    m.begin_window("all")
    parts = []
    x = x0
    for _ in range(5):
        m.begin_window("s")
        x = step(x)
        parts.append(m.end_window("s", x)["energy_j"])
    total = m.end_window("all")["energy_j"]
    m.stop()
    assert abs(sum(parts) - total) <= 1e-9 + 0.05 * total, (parts, total)

    # A second bare loop measures the noise floor of the comparison.
    variants = [("bare_synced", bare, None), ("bare_synced_control", bare, None)]
    for mname, meter in meters.items():
        variants += [(f"read_per_step/{mname}", with_read, meter), (f"window_per_step/{mname}", with_window, meter)]
    times: dict[str, list[float]] = {v[0]: [] for v in variants}
    for rep in range(args.repeats):
        # Rotate the order each repeat so no variant always runs first (or right after compilation).
        for name, fn, meter in variants[rep % len(variants):] + variants[:rep % len(variants)]:
            if meter is not None:
                meter.start()
            t0 = time.perf_counter()
            fn(meter)
            times[name].append((time.perf_counter() - t0) / args.steps)
            if meter is not None:
                meter.stop()

    # Direct cost of one read() (no step in between): median over 20 batches of 200 reads.
    read_cost = {}
    for mname, meter in meters.items():
        meter.start()
        batches = []
        for _ in range(20):
            t0 = time.perf_counter()
            for _ in range(200):
                meter.read()
            batches.append((time.perf_counter() - t0) / 200)
        read_cost[mname] = statistics.median(batches)
        meter.stop()

    step_s = statistics.median(times["bare_synced"])
    records = []
    for name, _, meter in variants:
        ratios = [t / b for t, b in zip(times[name], times["bare_synced"])]
        rec = {"variant": name, "steps": args.steps, "repeats": args.repeats,
               "step_ms_median": 1e3 * statistics.median(times[name]),
               "overhead_pct_median": 100 * (statistics.median(ratios) - 1.0)}
        if meter is not None:
            mname = name.split("/")[1]
            calls = 1 if name.startswith("read") else 2
            rec["sensors"] = [f"{s.name}[{s.source}]" for s in meter.sensors]
            rec["read_us"] = 1e6 * read_cost[mname]
            rec["direct_overhead_pct"] = 100 * calls * read_cost[mname] / step_s
        records.append(rec)
        extra = (f"  read {rec['read_us']:.1f} us = {rec['direct_overhead_pct']:.3f}% of a step"
                 if "read_us" in rec else "")
        print(f"{name:<44} {rec['step_ms_median']:8.2f} ms/step  {rec['overhead_pct_median']:+6.2f}%{extra}")
    path = save_benchmark("energy", records, args.json, size=n, step_ms=1e3 * step_s,
                          sensors_here=[f"{s.name}[{s.source}]" for s in meters["this_machine"].sensors],
                          unavailable_here=meters["this_machine"].unavailable)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
