"""Every device check of the project in one short GPU window (``jaxlab bench gpu``).

    python scripts/gpu_suite.py                        # all checks, on the GPU, within --budget-s (480)
    python scripts/gpu_suite.py --only spmv,nvml       # some checks
    python scripts/gpu_suite.py --budget-s 90          # an early run that catches errors cheaply
    python scripts/gpu_suite.py --tiny                 # every check at toy sizes, on CPU, in about a minute
    python scripts/gpu_suite.py --list                 # the checks and their time estimates

Each check runs in its own process (a failure, a hang or an out-of-memory stays in that check; the
suite goes on), under a timeout taken from what is left of the budget. Before a check starts the
suite prints its estimate; a check whose estimate no longer fits the budget is skipped and says so.
Each check writes one JSON, and the suite wraps it with the device, the versions, the command and
the wall time into ``bench/results/gpu/<date>/<check>.json`` (``--tiny``: ``bench/results/gpu-tiny/``,
not committed), plus ``summary.json`` and a Markdown table on stdout.

NVML comes from ``nvidia-ml-py`` (pure Python). A GPU machine may have no package registry: install
it into ``.gpu_vendor/`` here (``pip install --target .gpu_vendor nvidia-ml-py``, git-ignored) and carry
that folder along; the suite puts it on ``sys.path`` of every check. Without NVML the energy checks
say so in their JSON (``nvml: unavailable``) instead of reporting an estimate as a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python scripts/gpu_suite.py`` from a checkout that is not installed
    sys.path.insert(0, str(ROOT))
VENDOR = ROOT / ".gpu_vendor"


@dataclasses.dataclass(frozen=True)
class Check:
    """One device check: a command that writes a JSON to the path it is given.

    ``full``/``tiny`` are argument lists after ``python``; ``{json}`` and ``{workdir}`` are filled in.
    ``estimate_s`` is the expected GPU wall time of the full check (including compilation),
    ``tiny_estimate_s`` the CPU time of the tiny one. ``verdict`` reads the check's JSON and returns
    the figures for the summary table (and, where the issue sets one, a pass/fail).
    """

    name: str
    description: str
    estimate_s: float
    tiny_estimate_s: float
    full: tuple[str, ...]
    tiny: tuple[str, ...]
    verdict: Callable[[dict], dict] | None = None


def _records(payload: dict) -> list[dict]:
    return payload.get("records", []) if isinstance(payload, dict) else []


def _spmv_verdict(p: dict) -> dict:
    rows = [r for r in _records(p) if "speedup_vs_cupy" in r or "median_ms" in r]
    best = {}
    for r in rows:
        key = f"{r.get('matrix')} {r.get('dtype')}"
        if r.get("impl", "").startswith("jaxlab") or r.get("format"):
            cur = best.get(key)
            if cur is None or r["median_ms"] < cur["median_ms"]:
                best[key] = r
    return {"matrices": len({r.get('matrix') for r in rows}), "rows": len(rows),
            "best_ms": {k: round(v["median_ms"], 4) for k, v in best.items()}}


def _csr_kernels_verdict(p: dict) -> dict:
    """Issue 13 item 14: the merge-path kernel against cuSPARSE (CuPy) per matrix and dtype, from the same run."""
    rows = _records(p)
    cupy = {(r.get("matrix"), r.get("dtype")): r["median_ms"] for r in rows
            if r.get("impl") == "CuPy cuSPARSE" and "median_ms" in r}
    out = {}
    for r in rows:
        key = (r.get("matrix"), r.get("dtype"))
        if r.get("format") == "csr_merge_path" and "median_ms" in r and key in cupy:
            out[f"{key[0]} {key[1]}"] = round(cupy[key] / r["median_ms"], 3)
    return {"merge_path_speedup_vs_cusparse": out,
            "goal_1.5x": bool(out) and all(v >= 1.5 for v in out.values())}


def _energy_scaling_verdict(p: dict) -> dict:
    return p.get("criteria", {})


def _sharded_cg_verdict(p: dict) -> dict:
    rows = _records(p)
    ratios = {r.get("matrix"): round(r["ratio_sharded_over_plain"], 3) for r in rows if "ratio_sharded_over_plain" in r}
    return {"ratio_sharded_over_plain": ratios, "passed": bool(rows) and all(r.get("passed") for r in rows)}


def _nvml_verdict(p: dict) -> dict:
    return {k: p.get(k) for k in ("nvml", "source", "power_w", "wall_s", "passed")}


def _fwdgrad_verdict(p: dict) -> dict:
    rows = [r for r in _records(p) if r.get("method") != "backprop" and "peak_ratio_vs_backprop" in r]
    if not rows:
        return {}
    worst_peak = max(r.get("runtime_peak_ratio_vs_backprop", r["peak_ratio_vs_backprop"]) for r in rows)
    worst_temp = max(r["temp_ratio_vs_backprop"] for r in rows)
    # issue 14 (a): at batch 8192, peak <= 0.5x and temp <= 0.35x backprop's for every k
    return {"worst_peak_ratio": round(worst_peak, 3), "worst_temp_ratio": round(worst_temp, 3),
            "passed": (bool(worst_peak <= 0.5 and worst_temp <= 0.35)
                       if min(r.get("batch", 0) for r in rows) >= 8192 else None)}  # tiny sizes: no goal


def _petnet_verdict(p: dict) -> dict:
    return {k: p.get(k) for k in ("preset", "epochs", "s_per_epoch", "f1", "scw_f1", "beats_scw")}


def _abtrain_verdict(p: dict) -> dict:
    low = p.get("lowrank", {}) if isinstance(p, dict) else {}
    return {"svd_shape": low.get("svd", {}).get("shape"), "svd_s": low.get("svd", {}).get("median_s"),
            "speedup_forward_by_rank": {r["rank"]: round(r["speedup_forward"], 3) for r in low.get("lowrank", [])},
            "speedup_train_by_rank": {r["rank"]: round(r["speedup_train"], 3) for r in low.get("lowrank", [])},
            "max_rel_error": max((r["max_rel_error"] for r in low.get("lowrank", [])), default=None)}


def _tsprune_verdict(p: dict) -> dict:
    rows = [r for r in _records(p) if r.get("part") == "latency"]
    top = max((r["batch"] for r in rows), default=None)
    return {"batch": top, "speedup": {r["model"]: round(r["speedup"], 3) for r in rows if r["batch"] == top},
            "flop_ratio": {r["model"]: round(r["flop_ratio"], 3) for r in rows if r["batch"] == top}}


def checks() -> list[Check]:
    py = ("-u",)
    return [
        Check("spmv", "SpMV of every format against cuSPARSE (CuPy), jax BCOO/CSR and torch; f32 and f64",
              150, 25,
              py + ("scripts/bench_spmv.py", "--matrices", "poisson2d_2000,poisson3d_160,powerlaw_2M_d16",
                    "--repeats", "10", "--json", "{json}"),
              py + ("scripts/bench_spmv.py", "--quick", "--repeats", "2", "--peers", "scipy,bcoo",
                    "--dtypes", "float32", "--json", "{json}"),
              _spmv_verdict),
        Check("spmv_csr_kernels", "CSR's three Pallas kernels (classical, load_balance, merge_path) against "
              "cuSPARSE (CuPy) on power-law rows and a stencil; f32 and f64 (issue 13 item 14)",
              60, 10,
              py + ("scripts/bench_spmv.py", "--matrices", "powerlaw_2M_d16,poisson2d_2000", "--formats",
                    "csr_classical,csr_load_balance,csr_merge_path", "--impl", "pallas", "--peers", "cupy",
                    "--repeats", "10", "--json", "{json}"),
              py + ("scripts/bench_spmv.py", "--matrices", "powerlaw_20K_d16", "--formats",
                    "csr_classical,csr_load_balance,csr_merge_path", "--impl", "pallas_interpret", "--peers",
                    "scipy", "--dtypes", "float32", "--repeats", "2", "--json", "{json}"),
              _csr_kernels_verdict),
        Check("krylov", "CG, BiCGSTAB and GMRES time per iteration against CuPy and jax (f64)",
              90, 20,
              py + ("scripts/bench_krylov.py", "--fixed-only", "--problems", "poisson2d_2000,poisson3d_160",
                    "--iters", "300", "--json", "{json}"),
              py + ("scripts/bench_krylov.py", "--quick", "--repeats", "1", "--iters", "5", "--json", "{json}")),
        Check("mfu", "WeatherMixer step at the paper's C1 size: fraction of the measured bf16 matmul rate and MFU "
              "against the spec peak", 150, 15,
              py + ("scripts/bench_mfu.py", "--sizes", "c1", "--precisions", "bf16,mixed", "--json", "{json}"),
              py + ("scripts/bench_mfu.py", "--quick", "--precisions", "bf16", "--grad-only", "none",
                    "--json", "{json}")),
        Check("nvml", "EnergyMeter on the GPU: NVML energy of a timed matmul chain, plausible board power",
              25, 8,
              py + (__file__, "--internal", "nvml", "--json", "{json}"),
              py + (__file__, "--internal", "nvml", "--tiny", "--json", "{json}"),
              _nvml_verdict),
        Check("fwdgrad", "Forward-gradient memory at batch 8192 (depth 16, width 1024, f32, SGD, donated): peak and "
              "temp from the compiled steps, peak_bytes_in_use of each step in a fresh process, against backprop",
              70, 12,
              py + ("scripts/bench_fwdgrad.py", "--batch", "8192", "--ks", "1,4,16", "--tangent-batch-sizes", "1",
                    "--no-time-held", "--repeats", "3", "--json", "{json}"),
              py + ("scripts/bench_fwdgrad.py", "--tiny", "--ks", "1,4", "--tangent-batch-sizes", "1",
                    "--aggregations", "projection", "--repeats", "1", "--json", "{json}"),
              _fwdgrad_verdict),
        Check("petnet", "PETNet seconds per epoch on the clinical preset (the headline recipe) and its F1 after the "
              "epochs that fit, against the SCW sorters",
              60, 10,
              py + (__file__, "--internal", "petnet", "--json", "{json}"),
              py + (__file__, "--internal", "petnet", "--tiny", "--json", "{json}"),
              _petnet_verdict),
        Check("sharded_cg", "CG with jaxlab.sparse.shard_rows on one device against the plain CSR path: time per "
              "iteration (goal: within 1.1x)", 60, 20,
              py + ("scripts/bench_distributed_cg.py", "--one-device", "--iters", "200", "--json", "{json}"),
              py + ("scripts/bench_distributed_cg.py", "--one-device", "--tiny", "--iters", "20", "--repeats", "2",
                    "--json", "{json}"),
              _sharded_cg_verdict),
        Check("tsprune", "Time-series transformers with 50% of heads and FFN units removed: latency against the dense "
              "model at batch 1/32/256 (interleaved medians), FLOPs from XLA, per-op profiles",
              80, 12,
              py + ("scripts/bench_tsprune.py", "--width", "paper", "--batches", "1,32,256", "--repeats", "20",
                    "--profile", "--json", "{json}"),
              py + ("scripts/bench_tsprune.py", "--width", "cpu", "--models", "transformer", "--batches", "1,4",
                    "--channels", "3", "--repeats", "20", "--json", "{json}"),
              _tsprune_verdict),
        Check("energy_scaling", "One-GPU slice of the energy-scaling study (ResNet50, AFNO; local batch 16-256, "
              "global 256/1024 by accumulation; f32 and bf16): fit E = a h + b, R^2, slopes, Spearman",
              200, 40,
              py + (__file__, "--internal", "energy_scaling", "--json", "{json}", "--workdir", "{workdir}"),
              py + (__file__, "--internal", "energy_scaling", "--tiny", "--json", "{json}",
                    "--workdir", "{workdir}"),
              _energy_scaling_verdict),
        Check("abtrain", "AB-training: x @ A @ B against x @ W in bf16 (timm VGG16's fc1, 25088 x 4096, ranks 64-1024) "
              "and the float32 SVD of that layer", 60, 15,
              py + ("scripts/bench_abtrain.py", "--size", "vgg16", "--skip-steps", "--json", "{json}"),
              py + ("scripts/bench_abtrain.py", "--size", "tiny", "--skip-steps", "--repeats", "1", "--json", "{json}"),
              _abtrain_verdict),
    ]


# --- checks that live in this file ------------------------------------------------------------------

def _internal_nvml(tiny: bool) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxlab import energy

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    devices = gpus[:1] if gpus else jax.devices()[:1]
    meter = energy.EnergyMeter(devices=devices)
    kinds = [s.kind for s in meter.sensors]
    n = 256 if tiny else 8192
    x = jax.device_put(jnp.ones((n, n), jnp.bfloat16 if gpus else jnp.float32), devices[0])
    f = jax.jit(lambda a: (a @ a) * (1.0 / n))
    jax.block_until_ready(f(x))
    t0 = time.perf_counter()
    steps = 5 if tiny else 2000
    with meter:
        for _ in range(steps):
            x = f(x)
        jax.block_until_ready(x)
    wall = time.perf_counter() - t0
    rep = meter.report().to_dict()
    out = {"nvml": "available" if "gpu" in kinds else "unavailable", "sensor_kinds": kinds,
           "unavailable": getattr(meter, "unavailable", None), "steps": steps, "n": n,
           "wall_s": wall, "report": rep, "source": rep.get("source"), "power_w": rep.get("power_w")}
    if gpus:
        gpu_power = (rep.get("power_w") or {}).get("gpu")
        out["passed"] = bool(out["nvml"] == "available" and gpu_power and 20.0 < gpu_power < 1500.0
                             and rep.get("wall_s", 0) >= 0.9 * wall)
    else:
        out["passed"] = None  # no GPU: nothing to check against NVML
    return out


def _internal_energy_scaling(tiny: bool, workdir: Path) -> dict:
    import dataclasses as dc

    from jaxlab.core import load_config
    from jaxlab.methods.energy_scaling import run, slice_criteria

    arg = "gpu1_tiny" if tiny else "gpu1"
    results = {}
    # Tiny: bf16 alone (the fragile path: AFNO's FFT runs in f32 inside a bf16 model); f32 is the study's
    # own end-to-end test.
    for precision in (("bf16",) if tiny else ("f32", "bf16")):
        config, _ = load_config(str(ROOT / "configs" / "energy_scaling" / f"grid.py:{arg}"))
        config = dc.replace(config, bf16=precision == "bf16")
        results[precision] = run(config, workdir / precision, progress=False)
    return {"summaries": {k: {kk: v[kk] for kk in ("fits", "table", "estimated", "device_kind", "wall_s")}
                          for k, v in results.items()},
            "criteria": {k: slice_criteria(v) for k, v in results.items()}}


def _internal_petnet(tiny: bool) -> dict:
    from jaxlab.methods import petnet

    # Seconds per epoch need two epochs (the first one compiles); the 10-epoch clinical run is
    # petnet.gpu_check(budget_s=480), a window of its own.
    return petnet.gpu_check(budget_s=300.0 if tiny else 60.0, tiny=tiny, epochs=2 if tiny else 3)


INTERNAL = {"nvml": _internal_nvml, "energy_scaling": _internal_energy_scaling, "petnet": _internal_petnet}


# --- the driver ---------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(ROOT)] + ([str(VENDOR)] if VENDOR.is_dir() else [])
    env["PYTHONPATH"] = os.pathsep.join(parts + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _fill(args: tuple[str, ...], json_path: Path, workdir: Path) -> list[str]:
    return [a.replace("{json}", str(json_path)).replace("{workdir}", str(workdir)) for a in args]


def run_suite(names: list[str] | None, budget_s: float, tiny: bool, out_dir: Path, *, log=print) -> dict:
    """Runs the checks in order within ``budget_s``; returns the summary (also written to ``out_dir``)."""
    from jaxlab.core import environment_info, to_jsonable

    all_checks = {c.name: c for c in checks()}
    if names:
        unknown = [n for n in names if n not in all_checks]
        if unknown:
            raise SystemExit(f"gpu_suite: unknown checks {unknown}; choose from {sorted(all_checks)}")
    selected = [all_checks[n] for n in (names or all_checks)]
    out_dir.mkdir(parents=True, exist_ok=True)
    env_info = environment_info()
    start = time.perf_counter()
    rows = []
    for c in selected:
        est = c.tiny_estimate_s if tiny else c.estimate_s
        left = budget_s - (time.perf_counter() - start)
        row = {"check": c.name, "estimate_s": est}
        if est > left:
            row.update(status="skipped", reason=f"estimate {est:.0f} s > {left:.0f} s left of the budget")
            log(f"[{c.name}] skipped: {row['reason']}")
            rows.append(row)
            continue
        log(f"[{c.name}] {c.description} (estimate {est:.0f} s, {left:.0f} s left)")
        raw = out_dir / f"{c.name}.raw.json"
        work = out_dir / f"{c.name}.work"
        cmd = [sys.executable] + _fill(c.tiny if tiny else c.full, raw, work)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                                  timeout=max(5.0, left))
            status = "ok" if proc.returncode == 0 and raw.exists() else "failed"
            tail = (proc.stdout[-2000:] + proc.stderr[-3000:]) if status != "ok" else proc.stdout[-1500:]
            rc = proc.returncode
        except subprocess.TimeoutExpired as e:
            status, rc = "timeout", None
            tail = ((e.stdout or b"").decode(errors="replace")[-1500:] if isinstance(e.stdout, bytes)
                    else (e.stdout or "")[-1500:])
        wall = time.perf_counter() - t0
        payload = json.loads(raw.read_text()) if raw.exists() else None
        row.update(status=status, wall_s=round(wall, 2), returncode=rc)
        if payload is not None and c.verdict is not None:
            try:
                row["figures"] = c.verdict(payload)
            except Exception as e:  # noqa: BLE001  (a verdict bug must not lose the measurement)
                row["figures"] = {"verdict_error": f"{type(e).__name__}: {e}"}
        record = {"check": c.name, "description": c.description, "command": cmd[1:], "status": status,
                  "wall_s": wall, "estimate_s": est, "tiny": tiny, "environment": env_info,
                  "output_tail": tail, "result": payload}
        (out_dir / f"{c.name}.json").write_text(json.dumps(to_jsonable(record), indent=2) + "\n")
        raw.unlink(missing_ok=True)
        log(f"[{c.name}] {status} in {wall:.1f} s" + ("" if status == "ok" else f"\n{tail[-1500:]}"))
        rows.append(row)
    summary = {"tiny": tiny, "budget_s": budget_s, "wall_s": time.perf_counter() - start,
               "environment": env_info, "checks": rows}
    (out_dir / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
    log("\n| check | status | wall s | estimate s | figures |\n|---|---|---|---|---|")
    for r in rows:
        figs = json.dumps(to_jsonable(r.get("figures", r.get("reason", ""))))[:200]
        log(f"| {r['check']} | {r['status']} | {r.get('wall_s', '-')} | {r['estimate_s']:.0f} | {figs} |")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated check names (default: all)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall-time budget of the whole suite")
    ap.add_argument("--tiny", action="store_true", help="toy sizes on CPU (the suite's own test)")
    ap.add_argument("--list", action="store_true", help="print the checks and exit")
    ap.add_argument("--out", default=None, help="output folder (default bench/results/gpu/<date>/)")
    ap.add_argument("--internal", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.budget_s > 0:
        ap.error(f"--budget-s must be > 0, got {args.budget_s}")
    if args.internal:
        if args.tiny:
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
        if VENDOR.is_dir() and str(VENDOR) not in sys.path:
            sys.path.insert(0, str(VENDOR))
        fn = INTERNAL[args.internal]
        result = fn(args.tiny, Path(args.workdir)) if args.internal == "energy_scaling" else fn(args.tiny)
        from jaxlab.core import to_jsonable

        Path(args.json).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
        return 0
    if args.list:
        for c in checks():
            print(f"{c.name:16s} {c.estimate_s:5.0f} s (tiny {c.tiny_estimate_s:3.0f} s)  {c.description}")
        return 0
    if args.tiny:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / (
        "gpu-tiny" if args.tiny else f"gpu/{_dt.date.today().isoformat()}")
    summary = run_suite([n for n in args.only.split(",") if n] or None, args.budget_s, args.tiny, out)
    failed = [r["check"] for r in summary["checks"] if r["status"] in ("failed", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
