"""The ``jaxlab`` command: parse arguments, call the library. Heavy imports happen inside commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from . import __version__


class CLIError(Exception):
    """An error to print without a traceback (exit status 2)."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from jaxlab.core import ConfigError
    from jaxlab.data import DataNotFoundError
    from jaxlab.sparse import MatrixMarketError
    from jaxlab.train import CheckpointError, WorkdirError

    return (CLIError, ConfigError, WorkdirError, CheckpointError, DataNotFoundError, MatrixMarketError)


def _provenance() -> dict:
    import jax

    from jaxlab.core import git_sha

    return {"git_sha": git_sha(), "jax_version": jax.__version__, "jaxlab_version": __version__}


def _default_workdir(spec: str) -> Path:
    from jaxlab.core import split_spec

    path, arg = split_spec(spec)
    name = path.stem + (f"-{arg}" if arg else "")
    return Path("runs") / name.replace("/", "_").replace(",", "_").replace("=", "")


def _run_experiment(spec: str, overrides: Sequence[str], workdir: Path, fresh: bool,
                    reuse_completed: bool = False) -> dict:
    from jaxlab.core import ConfigError, apply_overrides, config_to_dict, load_config
    from jaxlab.train import prepare_workdir

    config, module = load_config(spec)
    config = apply_overrides(config, overrides)
    run = getattr(module, "run", None)
    if not callable(run):
        raise ConfigError(
            f"config file {spec!r} does not import a run(config, workdir) function; add e.g. "
            "`from jaxlab.methods.classify import run` to it"
        )
    prepare_workdir(workdir, config_to_dict(config), fresh=fresh, extra=_provenance())
    done = workdir / "summary.json"
    if reuse_completed and done.is_file():
        summary = json.loads(done.read_text(encoding="utf-8"))
        if summary.get("status") == "completed":
            print(f"  already completed in {workdir} (use --fresh to rerun)", file=sys.stderr)
            return summary
    return _measured(run, config, workdir)


def _measured(run, config, workdir: Path) -> dict:
    """Runs ``run(config, workdir)`` under an energy meter; runs that measure themselves keep their figures."""
    from jaxlab.core import write_json
    from jaxlab.energy import EnergyMeter

    with EnergyMeter() as meter:
        summary = run(config, workdir)
    if isinstance(summary, dict) and "energy" not in summary:
        report = meter.report().to_dict()
        summary["energy"] = report
        write_json(workdir / "summary.json", summary)
        if not (workdir / "energy.json").exists():
            write_json(workdir / "energy.json", report)
    return summary


def cmd_run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else _default_workdir(args.config)
    print(f"jaxlab run {args.config} -> {workdir}", file=sys.stderr)
    try:
        summary = _run_experiment(args.config, args.set or [], workdir, args.fresh)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the last finished step is checkpointed in {workdir}; run the same command to "
              "resume", file=sys.stderr)
        return 130
    _print_summary(summary)
    print(f"results in {workdir}/ (summary.json, metrics.jsonl)", file=sys.stderr)
    return 0


def _print_summary(summary: dict) -> None:
    skip = {"table", "train", "eval", "plots", "energy"}
    for k, v in summary.items():
        if k in skip or isinstance(v, (dict, list)):
            continue
        print(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")


def cmd_list(args: argparse.Namespace) -> int:
    from ._paths import configs_dir
    from ._registry import EXPERIMENTS

    root = configs_dir()
    headline = {e.config: e.name for e in EXPERIMENTS}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if path.name.startswith("_"):
            continue
        doc = _module_docstring(path)
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        expected = next((l.split(":", 1)[1].strip() for l in doc.splitlines() if l.startswith("Expected:")), "")
        mark = f"  [reproduce: {headline[rel]}]" if rel in headline else ""
        print(f"configs/{rel}{mark}\n    {first}" + (f"\n    expected: {expected}" if expected else ""))
    return 0


def _module_docstring(path: Path) -> str:
    import ast

    try:
        return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        return "(syntax error)"


def cmd_reproduce(args: argparse.Namespace) -> int:
    from jaxlab.core import environment_info

    from ._paths import configs_dir
    from ._registry import EXPERIMENTS
    from ._report import write_report

    experiments = list(EXPERIMENTS)
    if args.only:
        names = {e.name for e in experiments}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise CLIError(f"unknown experiment(s) {unknown}; choose from {sorted(names)}")
        experiments = [e for e in experiments if e.name in args.only]
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    known = _known_errors()
    for i, exp in enumerate(experiments, 1):
        arg = exp.quick_arg if args.quick else exp.full_arg
        spec = str(configs_dir() / exp.config) + (f":{arg}" if arg else "")
        print(f"[{i}/{len(experiments)}] {exp.name}: {exp.description}", file=sys.stderr)
        try:
            summary = _run_experiment(spec, [], root / exp.name, args.fresh, reuse_completed=True)
            results.append((exp, summary, None))
        except KeyboardInterrupt:
            print("\ninterrupted: finished experiments are kept; run the same command to resume", file=sys.stderr)
            return 130
        except known as e:
            print(f"  error: {e}", file=sys.stderr)
            results.append((exp, None, str(e)))
        except Exception:
            tb = traceback.format_exc()
            print(tb, file=sys.stderr)
            results.append((exp, None, tb))
    report = write_report(root, results, quick=args.quick, environment=environment_info())
    failed = [e.name for e, _, err in results if err]
    print(f"report: {report}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    from ._paths import scripts_dir
    from ._registry import BENCHMARKS

    if args.name not in BENCHMARKS:
        raise CLIError(f"unknown benchmark {args.name!r}; choose from {sorted(BENCHMARKS)}")
    script = scripts_dir() / BENCHMARKS[args.name]
    argv = list(args.args)
    if args.json:
        argv += ["--json", args.json]
    old = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    finally:
        sys.argv = old
    return 0


def _load_vector(path: Path, n: int, dtype):
    import numpy as np

    if not path.is_file():
        raise CLIError(f"right-hand side file {str(path)!r} not found")
    if path.suffix == ".npy":
        v = np.load(path)
    elif path.suffix == ".mtx":
        import jaxlab.sparse as jsparse

        v = np.asarray(jsparse.read_mtx_scipy(path).toarray())
    else:
        try:
            v = np.loadtxt(path, ndmin=1)
        except ValueError as e:
            raise CLIError(f"cannot read {str(path)!r} as numbers: {e}") from None
    v = np.asarray(v, dtype).reshape(v.shape[0], -1)
    if v.shape[0] != n:
        raise CLIError(f"right-hand side {str(path)!r} has {v.shape[0]} rows, the matrix has {n}")
    return v[:, 0] if v.shape[1] == 1 else v


def cmd_solve(args: argparse.Namespace) -> int:
    import time

    import jax

    jax.config.update("jax_enable_x64", True)  # a command-line tool, not library code
    import numpy as np

    import jaxlab.sparse as jsparse
    from jaxlab import krylov

    dtype = np.dtype(args.dtype)
    path = Path(args.matrix)
    t0 = time.perf_counter()
    A = jsparse.read_mtx(path, format=args.format, dtype=dtype)
    n = A.shape[0]
    b = _load_vector(Path(args.rhs), n, dtype) if args.rhs else np.ones(n, dtype)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        M = krylov.make_preconditioner(A, args.preconditioner)
    except (ValueError, TypeError) as e:  # e.g. a zero diagonal: say so without a traceback
        raise CLIError(f"preconditioner {args.preconditioner!r} for {str(path)!r}: {e}") from None
    t_setup = time.perf_counter() - t0
    kw = dict(method=args.method, preconditioner=M, rtol=args.rtol, atol=args.atol, maxiter=args.maxiter,
              restart=args.restart)
    run = jax.jit(lambda A, b, M: krylov.solve(A, b, **{**kw, "preconditioner": M}))
    t0 = time.perf_counter()
    sol = jax.block_until_ready(run(A, b, M))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = jax.block_until_ready(run(A, b, M))
    t_solve = time.perf_counter() - t0
    x = np.asarray(sol.x)
    S = A.to_scipy()
    true_res = float(np.linalg.norm(b - S @ x) / max(np.linalg.norm(b), np.finfo(dtype).tiny))
    status = krylov.status_name(np.max(np.asarray(sol.status)))
    print(f"matrix      {path} ({n} x {n}, {S.nnz} nonzeros, {args.format}, {dtype.name})")
    print(f"method      {args.method} + {args.preconditioner or 'no preconditioner'}, rtol {args.rtol:g}")
    print(f"status      {status}")
    print(f"iterations  {np.asarray(sol.iterations).tolist()}")
    print(f"residual    {true_res:.3e} (relative, recomputed as ||b - A x|| / ||b||)")
    print(f"time        read {t_read:.3f} s, setup {t_setup:.3f} s, first solve {t_first:.3f} s (with compile), "
          f"solve {t_solve:.4f} s")
    out = Path(args.output) if args.output else path.with_name(path.stem + ".solution.txt")
    if out.suffix == ".npy":
        np.save(out, x)
    else:
        np.savetxt(out, x.reshape(n, -1), fmt="%.17g")
    print(f"solution    {out}")
    return 0 if status == "CONVERGED" else 1


def cmd_energy(args: argparse.Namespace) -> int:
    from jaxlab.energy import measure_command

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CLIError("give the command to measure after --, e.g. jaxlab energy -- python train.py")
    return measure_command(cmd, report_dir=args.report_dir, cpu_tdp_w=args.cpu_tdp_w, pue=args.pue,
                           carbon_g_per_kwh=args.carbon_g_per_kwh, idle_s=args.idle_s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxlab",
        description="Sustainable and scalable ML methods as pure JAX functions: run, reproduce, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"jaxlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train/evaluate one experiment from a config file")
    p.add_argument("config", help="config file, optionally with an argument: configs/examples/mlp_digits.py:quick")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--workdir", help="output folder (default: runs/<config name>); rerun to resume")
    p.add_argument("--fresh", action="store_true", help="move an existing workdir aside and start over")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="list the configs and what each reproduces")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("reproduce", help="run every method's headline experiment and write REPORT.md")
    p.add_argument("--quick", action="store_true", help="small settings: a few CPU minutes in all")
    p.add_argument("--only", action="append", metavar="NAME", help="run only this experiment (repeatable)")
    p.add_argument("--workdir", default="runs/reproduce", help="output folder (default: runs/reproduce)")
    p.add_argument("--fresh", action="store_true", help="rerun experiments instead of resuming them")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("solve", help="solve A x = b for a Matrix Market matrix with a Krylov method")
    p.add_argument("matrix", help="Matrix Market file (.mtx)")
    p.add_argument("--rhs", help="right-hand side: .npy, .mtx (array) or text (default: all ones)")
    p.add_argument("--method", default="gmres", choices=["cg", "bicgstab", "gmres", "cgs", "fcg", "ir"])
    p.add_argument("--preconditioner", default=None,
                   choices=["jacobi", "block_jacobi", "ilu0", "ic0", "isai"], help="default: none")
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("--maxiter", type=int, default=None, help="default: 10 n")
    p.add_argument("--restart", type=int, default=30, help="GMRES restart length")
    p.add_argument("--format", default="csr", help="sparse format: csr, coo, ell, sellp, hybrid, dense")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--output", help="solution file (.npy or text; default MATRIX.solution.txt)")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("energy", help="measure the energy of any command, like perun monitor: "
                                      "jaxlab energy -- python train.py")
    p.add_argument("--report-dir", default=".", help="folder for energy.json (overwritten) and energy.csv "
                                                     "(a row appended per run)")
    p.add_argument("--cpu-tdp-w", type=float, default=100.0,
                   help="CPU package watts for the CPU-time estimate used where RAPL is unreadable")
    p.add_argument("--pue", type=float, default=1.0, help="power usage effectiveness applied to the reported kWh")
    p.add_argument("--carbon-g-per-kwh", type=float, default=475.0, help="grid carbon intensity for the reported CO2")
    p.add_argument("--idle-s", type=float, default=0.0,
                   help="measure idle power this long first; dynamic_energy_j subtracts it")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to measure, after --")
    p.set_defaults(func=cmd_energy)

    p = sub.add_parser("bench", help="benchmarks against peers (results in bench/results/)")
    p.add_argument("name", help="benchmark name (see jaxlab/_registry.py BENCHMARKS)")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark script")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "reproduce" and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # Mesh experiments run on 8 fake CPU devices when there is no accelerator; set before jax loads.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    try:
        return args.func(args)
    except _known_errors() as e:
        print(f"jaxlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
