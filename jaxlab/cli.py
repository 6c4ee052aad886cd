"""The ``jaxlab`` command: parse arguments, call the library. Heavy imports happen inside commands.

Every bad input ends with exit status 2 and one line that names the input and what to do, never a
Python traceback. Anything unexpected ends with one line too (exit 1); its traceback goes to a file
that the line names (``JAXLAB_DEBUG=1`` prints it as well). SIGTERM is handled like Ctrl-C: a run
checkpoints its last finished step and says what a rerun will do.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any, Sequence

from . import __version__, _interrupts

#: Summary key that ``jaxlab run`` adds once the run's own ``run()`` has returned: the run is complete.
COMPLETED_KEY = "completed_utc"


class CLIError(Exception):
    """An error to print without a traceback (exit status 2)."""


class RunDivergedError(Exception):
    """A run stopped because its loss became non-finite (exit status 1)."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from jaxlab.core import ConfigError
    from jaxlab.data import DataNotFoundError
    from jaxlab.sparse import MatrixMarketError
    from jaxlab.train import CheckpointError, DistributedError, WorkdirError

    return (CLIError, ConfigError, WorkdirError, CheckpointError, DataNotFoundError, MatrixMarketError,
            DistributedError)


def _one_line(message: Any, limit: int = 800) -> str:
    """The message on one line, printable characters only, at most ``limit`` characters."""
    text = " ".join(str(message).split())
    text = "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``jaxlab solve: error: ... (see jaxlab solve --help)``, exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _provenance() -> dict:
    from jaxlab.core import git_sha, numerics_provenance

    return {"git_sha": git_sha(), "jaxlab_version": __version__, **numerics_provenance()}


def _default_workdir(spec: str) -> Path:
    from jaxlab.core import split_spec

    path, arg = split_spec(spec)
    name = path.stem + (f"-{arg}" if arg else "")
    return Path("runs") / name.replace("/", "_").replace(",", "_").replace("=", "")


def _read_summary(workdir: Path) -> dict | None:
    try:
        d = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _learning_rate_hint(config: Any) -> str:
    """``" Try e.g. --set learning_rate=0.0001 --fresh."``: a rate 10x lower, for configs that have one."""
    import dataclasses

    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if "learning_rate" in f.name or f.name in ("lr", "afno_lr"):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return f" Try e.g. --set {f.name}={v / 10:g} --fresh."
    return ""


def _run_experiment(spec: str, overrides: Sequence[str], workdir: Path, fresh: bool) -> tuple[dict, str]:
    """Runs (or resumes) one experiment. Returns ``(summary, how)``, ``how`` in ``ran``/``completed``.

    A completed run is not run again and nothing in its workdir changes. Config values are checked
    before the workdir is touched.

    Raises:
      RunDivergedError: the run diverged, now or in an earlier process.
    """
    from jaxlab.core import ConfigError, apply_overrides, config_to_dict, load_config
    from jaxlab.train import DivergedError, WorkdirLock, barrier, is_writer, prepare_workdir
    from jaxlab.train._workdir import changed_setting

    config, module = load_config(spec)
    config = apply_overrides(config, overrides)  # every value validated here, before the workdir is touched
    run = getattr(module, "run", None)
    if not callable(run):
        raise ConfigError(
            f"config file {spec!r} does not import a run(config, workdir) function; add e.g. "
            "`from jaxlab.methods.classify import run` to it"
        )
    # One run per workdir (a second would double the records): the lock is taken before anything is written.
    # Across processes, process 0 takes it and prepares the workdir; the others wait (bounded) for it.
    writer = is_writer()
    lock = WorkdirLock(workdir)
    if workdir.is_dir() and writer:
        lock.acquire()
    try:
        provenance = _provenance() if writer else {}
        if writer:
            prepare_workdir(workdir, config_to_dict(config), fresh=fresh, extra=provenance)
            if fresh or not lock.held:
                lock.release()  # --fresh moved the old folder (and its lock) aside, or there was no folder yet
                lock = WorkdirLock(workdir).acquire()
        barrier("jaxlab_workdir_ready")
        print(f"jaxlab run {spec} -> {workdir}", file=sys.stderr)
        previous = _read_summary(workdir)
        if previous is not None and previous.get("status") == "completed" and COMPLETED_KEY in previous:
            return previous, "completed"
        if previous is not None and previous.get("status") == "diverged":
            raise RunDivergedError(f"this run diverged in an earlier attempt, so nothing was rerun: "
                                   f"{previous.get('error', '')}{_learning_rate_hint(config)}")
        if writer and (message := changed_setting(workdir, provenance)[1]):  # a resumed part in another setting
            print(f"jaxlab: warning: {message}", file=sys.stderr)
        try:
            return _measured(run, config, workdir), "ran"
        except KeyboardInterrupt as e:
            # What the method resumes from besides checkpoints, for a true interrupt message (_interrupt_message).
            records = getattr(run, "__globals__", {}).get("RESUME_RECORDS", ())
            e.resume_records = tuple(records)  # type: ignore[attr-defined]
            raise
        except DivergedError as e:
            raise RunDivergedError(f"{e}{_learning_rate_hint(config)}") from None
    finally:
        lock.release()


def _measured(run, config, workdir: Path) -> dict:
    """Runs ``run(config, workdir)`` under an energy meter, then marks the summary complete.

    Runs that measure themselves (an ``energy`` entry in their summary, or an ``energy.json`` they
    wrote) keep their figures; for the others the meter's figures, added to those of earlier
    processes of the same run, go to ``energy.json`` and the summary, also when interrupted.
    """
    from jaxlab.core import write_json
    from jaxlab.energy import EnergyLedger, EnergyMeter

    energy_file = workdir / "energy.json"

    def snapshot() -> bytes | None:
        try:
            return energy_file.read_bytes()
        except OSError:
            return None

    from jaxlab.train import is_writer

    writer = is_writer()  # across processes, only process 0 writes the summary and energy.json
    before = snapshot()
    ledger = EnergyLedger(energy_file)
    meter = EnergyMeter()
    meter.start()
    summary: Any = None
    total = None
    try:
        summary = run(config, workdir)
    except KeyboardInterrupt:
        # Interrupted: this process's energy still counts towards the run, which it will resume.
        report = meter.stop()
        if snapshot() == before and writer:
            ledger.update(report)
        raise
    except BaseException:
        meter.stop()  # a failed attempt (bad data, a bug) is not part of the run's energy
        raise
    report = meter.stop()
    if writer and not ((isinstance(summary, dict) and "energy" in summary) or snapshot() != before):
        total = ledger.update(report)
    if not isinstance(summary, dict):
        summary = {"result": summary}
    if total is not None:
        summary["energy"] = total
    summary.setdefault("status", "completed")
    if summary.get("status") == "completed":
        summary[COMPLETED_KEY] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if writer:
        write_json(workdir / "summary.json", summary)
    return summary


def _finished_parts(workdir: Path, patterns: Sequence[str]) -> tuple[int, list[str]]:
    """Finished parts in the files matching ``patterns`` (workdir-relative globs): complete lines of a
    ``.jsonl`` file, one per other file. Returns ``(count, names of the files or folders holding them)``."""
    count, names = 0, []
    for pattern in patterns:
        for p in sorted(workdir.glob(pattern)):
            if not p.is_file():
                continue
            if p.suffix == ".jsonl":
                found = sum(1 for line in p.read_bytes().split(b"\n")[:-1] if line.strip())
            else:
                found = 1
            top = p.relative_to(workdir).parts[0]     # the file, or the top folder holding it
            if found:
                count += found
                if top not in names:
                    names.append(top)
    return count, names


def _interrupt_message(workdir: Path, signame: str, records: Sequence[str] = ()) -> str:
    """What an interrupted run left behind and what the same command will do: read from the disk.

    ``records``: the workdir-relative globs of the files a method resumes from besides checkpoints
    (its module's ``RESUME_RECORDS``, e.g. ``("runs.jsonl",)``).
    """
    if not workdir.is_dir():
        return f"{signame}: stopped before the run started; nothing was written"
    ckpt = workdir / "checkpoints"
    steps = sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []
    summary = _read_summary(workdir) or {}
    if steps:
        reached = summary.get("step") if summary.get("status") == "interrupted" else None
        redo = (f"; steps {steps[-1] + 1}-{reached} will be redone" if isinstance(reached, int)
                and reached > steps[-1] else "")
        return (f"{signame}: the checkpoint of step {steps[-1]} is kept in {ckpt}{redo}. Run the same command "
                "to resume from it.")
    if ckpt.is_dir():
        return f"{signame}: stopped before the first checkpoint, so nothing is kept; the same command starts over"
    n, names = _finished_parts(workdir, records)
    if n:
        return (f"{signame}: {n} finished part(s) recorded in {', '.join(str(workdir / m) for m in names)} are "
                "kept; the same command continues after them")
    log = workdir / "metrics.jsonl"
    if log.is_file() and log.stat().st_size > 0:
        from jaxlab.core import read_metrics

        n = len(read_metrics(log))
        return (f"{signame}: {n} finished part(s) recorded in {log} are kept; the same command continues after "
                "them")
    return f"{signame}: nothing was saved in {workdir}; the same command starts over"


def _flush_streams(timeout: float) -> None:
    """Flushes stdout and stderr, giving up after ``timeout`` seconds (a stream's lock may be held)."""
    def flush():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    thread = threading.Thread(target=flush, daemon=True)
    thread.start()
    thread.join(timeout)


def cmd_run(args: argparse.Namespace) -> int:
    if args.workdir is not None and not args.workdir.strip():
        raise CLIError("--workdir is empty; give a folder, e.g. --workdir runs/mine")
    workdir = Path(args.workdir) if args.workdir else _default_workdir(args.config)
    _start_processes(args)
    try:
        summary, how = _run_experiment(args.config, args.set or [], workdir, args.fresh)
        from jaxlab.train import PeerWatchdog, barrier

        barrier("jaxlab_run_done")  # across processes: the others wait while process 0 writes the records
        PeerWatchdog.finished.set()  # from here on, a process that exits has finished
    except KeyboardInterrupt as e:
        message = "\n" + _interrupt_message(workdir, _Signals.name(), getattr(e, "resume_records", ()))
        if _Signals.program:
            # Everything the message names is on disk. Freeing the interrupted frames (orbax's event loop,
            # device buffers) has hung a loaded machine for minutes in C code, so the process ends here. The
            # interrupt can leave sys.stderr's buffer lock held (a print to it then blocks forever, seen in CI),
            # so the streams are flushed from a thread with a time limit and the message goes to fd 2 directly.
            _flush_streams(timeout=5.0)
            os.write(2, (message + "\n").encode())
            os._exit(_Signals.exit_code())
        print(message, file=sys.stderr)
        return _Signals.exit_code()
    except RunDivergedError as e:
        print(f"jaxlab: error: {_one_line(e)}", file=sys.stderr)
        return 1
    if how == "completed":
        print(f"already completed in {workdir}: nothing was run or changed (use --fresh to start over)",
              file=sys.stderr)
    _print_summary(summary)
    print(f"results in {workdir}/ (summary.json, metrics.jsonl)", file=sys.stderr)
    return 0


def _start_processes(args: argparse.Namespace) -> None:
    """Joins a multi-process run (``--coordinator/--num-processes/--process-id`` or ``--auto-cluster``)."""
    if args.peer_timeout is not None and not (math.isfinite(args.peer_timeout) and args.peer_timeout >= 1):
        raise CLIError(f"--peer-timeout must be a number of seconds >= 1, got {args.peer_timeout!r}")
    if args.coordinator is None and args.num_processes is None and args.process_id is None and not args.auto_cluster:
        return
    from jaxlab.train import initialize_distributed
    from jaxlab.train._distributed import DEFAULT_PEER_TIMEOUT_S

    initialize_distributed(args.coordinator, args.num_processes, args.process_id, auto=args.auto_cluster,
                           peer_timeout_s=args.peer_timeout or DEFAULT_PEER_TIMEOUT_S)


def _print_summary(summary: dict) -> None:
    skip = {"table", "train", "eval", "plots", "energy"}
    for k, v in summary.items():
        if k in skip or isinstance(v, (dict, list)):
            continue
        print(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")


def _configs_dir() -> Path:
    from ._paths import configs_dir

    try:
        return configs_dir()
    except FileNotFoundError as e:
        raise CLIError(str(e)) from None


def cmd_list(args: argparse.Namespace) -> int:
    from ._registry import EXPERIMENTS

    root = _configs_dir()
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
    except (SyntaxError, ValueError, OSError):
        return "(unreadable)"


def cmd_reproduce(args: argparse.Namespace) -> int:
    from jaxlab.core import environment_info

    from ._registry import EXPERIMENTS
    from ._report import write_report

    experiments = list(EXPERIMENTS)
    if args.only:
        names = {e.name for e in experiments}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise CLIError(f"unknown experiment(s) {unknown}; choose from {sorted(names)}")
        experiments = [e for e in experiments if e.name in args.only]
    if not args.workdir.strip():
        raise CLIError("--workdir is empty; give a folder, e.g. --workdir runs/reproduce")
    root = Path(args.workdir)
    if root.exists() and not root.is_dir():
        raise CLIError(f"--workdir {str(root)!r} is an existing file; give a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create --workdir {str(root)!r}: {e.strerror or e}; give another folder") from None
    configs = _configs_dir()
    results = []
    known = _known_errors() + (RunDivergedError, ValueError)
    for i, exp in enumerate(experiments, 1):
        arg = exp.quick_arg if args.quick else exp.full_arg
        spec = str(configs / exp.config) + (f":{arg}" if arg else "")
        print(f"[{i}/{len(experiments)}] {exp.name}: {exp.description}", file=sys.stderr)
        try:
            summary, how = _run_experiment(spec, [], root / exp.name, args.fresh)
            if how == "completed":
                print(f"  already completed in {root / exp.name} (use --fresh to rerun)", file=sys.stderr)
            results.append((exp, summary, None))
        except KeyboardInterrupt as e:
            print(f"\n{_Signals.name()}: finished experiments are kept; "
                  + _interrupt_message(root / exp.name, exp.name, getattr(e, "resume_records", ())), file=sys.stderr)
            return _Signals.exit_code()
        except known as e:
            print(f"  error: {_one_line(e)}", file=sys.stderr)
            results.append((exp, None, str(e)))
        except Exception as e:  # noqa: BLE001 - one experiment's bug must not stop the others
            where = _save_traceback(root / exp.name)
            print(f"  error: {_one_line(f'{type(e).__name__}: {e}')} (traceback in {where})", file=sys.stderr)
            results.append((exp, None, traceback.format_exc()))
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
    rest = list(args.args)
    targets = [args.json] if args.json is not None else []
    for i, a in enumerate(rest):  # --json after the name lands among the script's arguments
        if a == "--json" and i + 1 < len(rest):
            targets.append(rest[i + 1])
        elif a.startswith("--json="):
            targets.append(a.split("=", 1)[1])
    for t in targets:
        _check_output_file("--json", t, create_parents=True)
    try:
        script = scripts_dir() / BENCHMARKS[args.name]
    except FileNotFoundError as e:
        raise CLIError(str(e)) from None
    argv = list(args.args)
    if args.json:
        argv += ["--json", args.json]
    old = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        if isinstance(e.code, str):
            print(f"jaxlab bench {args.name}: {_one_line(e.code)}", file=sys.stderr)
            return 1
        return int(e.code or 0)
    finally:
        sys.argv = old
    return 0


# ------------------------------------------------------------------------------------------------
# jaxlab solve


def _check_output_file(option: str, value: str, *, create_parents: bool) -> Path:
    """Checks that ``value`` can name a new file: not empty, not a folder, no file among its parents."""
    target = Path(value)
    if not value.strip() or target.is_dir():
        raise CLIError(f"{option} {value!r} must name a file, not a folder")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"{option} {value!r}: {str(parent)!r} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CLIError(f"{option} {value!r}: the folder {str(parent)!r} is not writable")
            break
    if not create_parents and not target.parent.is_dir():
        raise CLIError(f"{option} {value!r}: the folder {str(target.parent)!r} does not exist; create it first")
    return target


def _finite_at_least(name: str, value: float, low: float) -> None:
    if not (math.isfinite(value) and value >= low):
        raise CLIError(f"{name} must be a finite number >= {low:g}, got {value!r}")


def _check_solve_args(args: argparse.Namespace) -> Path:
    """Checks every argument that can be checked without the matrix; returns the solution's path."""
    import jaxlab.sparse as jsparse

    _finite_at_least("--rtol", args.rtol, 0.0)
    _finite_at_least("--atol", args.atol, 0.0)
    if args.maxiter is not None and args.maxiter < 1:
        raise CLIError(f"--maxiter must be >= 1 (iterations), got {args.maxiter}; leave it out for 10 n")
    if args.restart < 1:
        raise CLIError(f"--restart must be >= 1 (the GMRES basis size), got {args.restart}")
    if args.format.lower() not in jsparse.FORMATS:
        raise CLIError(f"--format {args.format!r} is not a sparse format; choose one of {sorted(jsparse.FORMATS)}")
    path = Path(args.matrix)
    if path.is_dir():
        raise CLIError(f"matrix {str(path)!r} is a folder; give a Matrix Market file (.mtx or .mtx.gz)")
    if not path.is_file():
        raise CLIError(f"matrix file {str(path)!r} not found; give a Matrix Market file (.mtx or .mtx.gz), "
                       "e.g. examples/poisson2d_20.mtx")
    if args.rhs is not None and not Path(args.rhs).is_file():
        raise CLIError(f"right-hand side file {args.rhs!r} not found" + (" (it is a folder)"
                                                                        if Path(args.rhs).is_dir() else ""))
    if args.output is not None:
        return _check_output_file("--output", args.output, create_parents=False)
    stem = path.name[: -len(".mtx.gz")] if path.name.endswith(".mtx.gz") else path.stem
    out = path.with_name(stem + ".solution.txt")
    if out.is_dir() or not os.access(out.parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write the solution next to the matrix, as {str(out)!r}; give --output FILE")
    return out


def _read_matrix(path: Path):
    """A SciPy CSR matrix from a Matrix Market file, gzip-compressed ones included (``jaxlab.sparse.read_mtx_scipy``,
    whose checks keep SciPy's reader from crashing on malformed files)."""
    import jaxlab.sparse as jsparse

    try:
        return jsparse.read_mtx_scipy(path)
    except MemoryError:
        raise CLIError(f"matrix {str(path)!r} does not fit in memory (its header announces it that large)") from None
    except jsparse.MatrixMarketError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever else the reader raises, one line naming the file
        raise CLIError(f"cannot read {str(path)!r} as Matrix Market: {type(e).__name__}: {e}") from None


def _load_vector(path: Path, n: int, dtype):
    import numpy as np

    if not path.is_file():
        raise CLIError(f"right-hand side file {str(path)!r} not found")
    try:
        if path.suffix == ".npy":
            v = np.load(path, allow_pickle=False)
        elif path.suffix == ".mtx" or path.name.endswith(".mtx.gz"):
            v = np.asarray(_read_matrix(path).toarray())
        else:
            v = np.loadtxt(path, ndmin=1)
    except CLIError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy raises ValueError, EOFError, OSError ... for bad files
        raise CLIError(f"cannot read the right-hand side {str(path)!r}: {type(e).__name__}: {e}") from None
    if v.ndim == 0 or v.ndim > 2 or v.size == 0:
        raise CLIError(f"right-hand side {str(path)!r} has shape {v.shape}; give a vector of {n} numbers")
    if not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
        raise CLIError(f"right-hand side {str(path)!r} holds {v.dtype} values; give real numbers")
    v = np.asarray(v, dtype).reshape(v.shape[0], -1)
    if v.shape[0] != n:
        raise CLIError(f"right-hand side {str(path)!r} has {v.shape[0]} rows, the matrix has {n}")
    if not np.all(np.isfinite(v)):
        raise CLIError(f"right-hand side {str(path)!r} holds non-finite values (nan or inf)")
    return v[:, 0] if v.shape[1] == 1 else v


def cmd_solve(args: argparse.Namespace) -> int:
    import time

    import jax

    jax.config.update("jax_enable_x64", True)  # a command-line tool, not library code
    import numpy as np

    import jaxlab.sparse as jsparse
    from jaxlab import krylov

    out = _check_solve_args(args)
    dtype = np.dtype(args.dtype)
    path = Path(args.matrix)
    t0 = time.perf_counter()
    S = _read_matrix(path)
    m, n = S.shape
    if m == 0 or n == 0:
        raise CLIError(f"matrix {str(path)!r} is {m} x {n}: there is nothing to solve")
    if m != n:
        raise CLIError(f"matrix {str(path)!r} is {m} x {n}; a Krylov solve needs a square matrix")
    if not np.all(np.isfinite(S.data)):
        raise CLIError(f"matrix {str(path)!r} holds non-finite values (nan or inf)")
    b = _load_vector(Path(args.rhs), n, dtype) if args.rhs else np.ones(n, dtype)
    A = jsparse.from_scipy(S, format=args.format.lower(), dtype=dtype)
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
    try:
        t0 = time.perf_counter()
        sol = jax.block_until_ready(run(A, b, M))
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        sol = jax.block_until_ready(run(A, b, M))
        t_solve = time.perf_counter() - t0
    except (ValueError, TypeError) as e:
        raise CLIError(f"cannot solve {str(path)!r} with {args.method}: {e}") from None
    x = np.asarray(sol.x)
    true_res = float(np.linalg.norm(b - S @ x) / max(np.linalg.norm(b), np.finfo(dtype).tiny))
    status = krylov.status_name(np.max(np.asarray(sol.status)))
    print(f"matrix      {path} ({n} x {n}, {S.nnz} nonzeros, {args.format}, {dtype.name})")
    print(f"method      {args.method} + {args.preconditioner or 'no preconditioner'}, rtol {args.rtol:g}")
    print(f"status      {status}")
    print(f"iterations  {np.asarray(sol.iterations).tolist()}")
    print(f"residual    {true_res:.3e} (relative, recomputed as ||b - A x|| / ||b||)")
    print(f"time        read {t_read:.3f} s, setup {t_setup:.3f} s, first solve {t_first:.3f} s (with compile), "
          f"solve {t_solve:.4f} s")
    try:
        if out.suffix == ".npy":
            np.save(out, x)
        else:
            np.savetxt(out, x.reshape(n, -1), fmt="%.17g")
    except OSError as e:
        raise CLIError(f"cannot write the solution {str(out)!r}: {e.strerror or e}") from None
    print(f"solution    {out}")
    return 0 if status == "CONVERGED" else 1


# ------------------------------------------------------------------------------------------------
# jaxlab energy


def cmd_energy(args: argparse.Namespace) -> int:
    from jaxlab.energy import measure_command
    from jaxlab.energy._command import MAX_IDLE_S, check_report_dir

    # Every argument is checked before the command starts: afterwards the measurement would be lost.
    _finite_at_least("--pue", args.pue, 1.0)
    if not (math.isfinite(args.cpu_tdp_w) and args.cpu_tdp_w > 0):
        raise CLIError(f"--cpu-tdp-w must be a finite number of watts > 0, got {args.cpu_tdp_w!r}")
    _finite_at_least("--carbon-g-per-kwh", args.carbon_g_per_kwh, 0.0)
    if not (math.isfinite(args.idle_s) and 0 <= args.idle_s <= MAX_IDLE_S):
        raise CLIError(f"--idle-s must be a number of seconds in [0, {MAX_IDLE_S:g}], got {args.idle_s!r}")
    try:
        check_report_dir(args.report_dir)
    except ValueError as e:
        raise CLIError(f"--report-dir: {e}") from None
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CLIError("give the command to measure after --, e.g. jaxlab energy -- python train.py")
    return measure_command(cmd, report_dir=args.report_dir, cpu_tdp_w=args.cpu_tdp_w, pue=args.pue,
                           carbon_g_per_kwh=args.carbon_g_per_kwh, idle_s=args.idle_s)


# ------------------------------------------------------------------------------------------------
# The parser and main


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    g = p.add_argument_group("several processes (machines), on jax.distributed")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordination service")
    g.add_argument("--num-processes", type=int, metavar="N", help="number of processes of the run")
    g.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1")
    g.add_argument("--auto-cluster", action="store_true",
                   help="let JAX detect the cluster (SLURM, Open MPI, ...) instead of the three flags above")
    g.add_argument("--peer-timeout", type=float, metavar="S",
                   help="a process silent this long ends the run with an error (default 60 s)")
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
    p.add_argument("matrix", help="Matrix Market file (.mtx, or .mtx.gz)")
    p.add_argument("--rhs", help="right-hand side: .npy, .mtx (array) or text (default: all ones)")
    p.add_argument("--method", default="gmres", choices=["cg", "bicgstab", "gmres", "cgs", "fcg", "ir"])
    p.add_argument("--preconditioner", default=None,
                   choices=["jacobi", "block_jacobi", "ilu0", "ic0", "isai"], help="default: none")
    p.add_argument("--rtol", type=float, default=1e-8, help="relative tolerance, >= 0")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance, >= 0")
    p.add_argument("--maxiter", type=int, default=None, help="iterations, >= 1 (default: 10 n)")
    p.add_argument("--restart", type=int, default=30, help="GMRES restart length, >= 1")
    p.add_argument("--format", default="csr", help="sparse format: csr, coo, ell, sellp, hybrid, dense")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--output", help="solution file (.npy or text; default MATRIX.solution.txt); its folder must exist")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("energy", help="measure the energy of any command, like perun monitor: "
                                      "jaxlab energy -- python train.py")
    p.add_argument("--report-dir", default=".", help="folder for energy.json (overwritten) and energy.csv "
                                                     "(a row appended per run); created if missing")
    p.add_argument("--cpu-tdp-w", type=float, default=100.0,
                   help="CPU package watts (> 0) for the CPU-time estimate used where RAPL is unreadable")
    p.add_argument("--pue", type=float, default=1.0, help="power usage effectiveness (>= 1) applied to the kWh")
    p.add_argument("--carbon-g-per-kwh", type=float, default=475.0,
                   help="grid carbon intensity (>= 0) for the reported CO2")
    p.add_argument("--idle-s", type=float, default=0.0,
                   help="measure idle power this long first (0-3600 s); dynamic_energy_j subtracts it")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to measure, after --")
    p.set_defaults(func=cmd_energy)

    p = sub.add_parser("bench", help="benchmarks against peers (results in bench/results/)")
    p.add_argument("name", help="benchmark name (see jaxlab/_registry.py BENCHMARKS)")
    p.add_argument("--json", help="write the results to this JSON file (its folder must exist)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark script")
    p.set_defaults(func=cmd_bench)
    return parser


class _Signals:
    """SIGTERM handled as Ctrl-C (so a run checkpoints), remembering which signal it was for the exit status.

    Both go through :func:`jaxlab._interrupts.on_signal`: inside a save or a record (``defer_interrupts``) the
    ``KeyboardInterrupt`` waits until it is complete, so it never lands in a half-started thread or a held lock.
    """

    last = signal.SIGINT
    program = False  # main() runs as the jaxlab program (its own argv), not called from Python

    @classmethod
    def install(cls) -> dict:
        """Installs the handlers; returns the previous ones for :meth:`restore`."""

        def on_signal(signum, frame):
            cls.last = signal.Signals(signum)
            _interrupts.on_signal(signum, frame)  # raises now, or where a save or a record is complete

        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {signal.SIGTERM: signal.getsignal(signal.SIGTERM), signal.SIGINT: signal.getsignal(signal.SIGINT)}
        signal.signal(signal.SIGTERM, on_signal)
        if old[signal.SIGINT] in (signal.SIG_IGN, signal.default_int_handler):
            # SIG_IGN: started in the background by a non-interactive shell, which ignores SIGINT for its
            # children: `kill -INT` must still checkpoint and stop the run (the terminal's Ctrl-C never reaches
            # it). A handler someone else installed (a test harness) is left alone.
            signal.signal(signal.SIGINT, on_signal)
        return old

    @staticmethod
    def restore(old: dict) -> None:
        for signum, handler in old.items():
            try:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, TypeError):
                pass

    @classmethod
    def name(cls) -> str:
        return "interrupted (SIGTERM)" if cls.last == signal.SIGTERM else "interrupted"

    @classmethod
    def exit_code(cls) -> int:
        return 128 + int(cls.last)


def _save_traceback(folder: Path | None = None) -> str:
    """Writes the current exception's traceback to ``folder/error.log`` (or a temp file); returns the path."""
    text = traceback.format_exc()
    for target in ([folder / "error.log"] if folder is not None and folder.is_dir() else []) + [
            Path(tempfile.gettempdir()) / f"jaxlab-error-{os.getpid()}.log"]:
        try:
            target.write_text(text, encoding="utf-8")
            return str(target)
        except OSError:
            continue
    return "(nowhere: no writable folder)"


#: Set in the worker process that a supervising ``jaxlab run`` of a multi-process run starts.
WORKER_ENV = "JAXLAB_DISTRIBUTED_WORKER"

#: Exit status of a process whose peer was lost (== jaxlab.train.LOST_PEER_EXIT; here without importing jax).
LOST_PEER_EXIT = 75

#: Words in a worker's last lines that show its collectives or coordination failed (a lost peer).
_PEER_WORDS = ("gloo", "distributed service", "coordination service", "nccl", "heartbeat")


#: What the runtime's last lines say when this process could not reach the coordination service (process 0):
#: a refused or closed connection (process 0 died) or heartbeats past their deadline (it stopped answering).
_COORDINATOR_LOST = re.compile(r"failed to send rpc to coordination service|leader task was preempted|"
                               r"deadline_exceeded[^\n]*\n(?:[^\n]*\n){0,3}[^\n]*coordinationservice/heartbeat",
                               re.IGNORECASE)


def _runtime_cause(lines: Sequence[str]) -> str:
    """The status that the runtime's fatal line gives (XLA's ``absl::Status: ...``), without the stack trace."""
    body = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith(("@", "***"))]
    for i, line in enumerate(body):
        if "absl::Status:" in line:
            return " ".join([line.split("absl::Status:", 1)[1].strip(), *body[i + 1:i + 3]])
    return next((l for l in reversed(body) if any(w in l.lower() for w in _PEER_WORDS)), "")


def _die_with_parent() -> None:
    """In the worker, before exec: the system kills it when the supervisor dies (Linux), as a lost machine would."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _supervise(argv: Sequence[str], args: argparse.Namespace) -> int:
    """Runs this ``jaxlab run`` of a multi-process run in a worker process and reports how it ended.

    When a peer dies in the middle of a collective, the collectives library (gloo, NCCL) aborts the
    process from a thread Python cannot reach. The supervisor (which imports no jax) turns such an end
    into one clear line and the exit status ``LOST_PEER_EXIT``; it passes SIGINT and SIGTERM on to the
    worker, and the worker's output through.
    """
    import collections
    import subprocess

    from jaxlab.train._distributed import check_arguments, detect_cluster

    check_arguments(args.coordinator, args.num_processes, args.process_id)  # before a worker starts
    if args.auto_cluster and args.coordinator is None:
        detect_cluster()  # no cluster: one line now, not after a worker has started
    if args.peer_timeout is not None and not (math.isfinite(args.peer_timeout) and args.peer_timeout >= 1):
        raise CLIError(f"--peer-timeout must be a number of seconds >= 1, got {args.peer_timeout!r}")
    env = dict(os.environ, **{WORKER_ENV: "1"})
    proc = subprocess.Popen([sys.executable, "-m", "jaxlab", *argv], env=env, stderr=subprocess.PIPE,
                            text=True, errors="replace", bufsize=1, preexec_fn=_die_with_parent)

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    last: collections.deque[str] = collections.deque(maxlen=40)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            last.append(line)
        rc = proc.wait()
    finally:
        _Signals.restore(old)
    if rc >= 0:
        return rc
    who = f"process {args.process_id}" if args.process_id is not None else "this process"
    try:
        how = signal.Signals(-rc).name
    except ValueError:
        how = f"signal {-rc}"
    text = "".join(last)
    if -rc in (signal.SIGINT, signal.SIGTERM):
        return 128 - rc
    if any(w in text.lower() for w in _PEER_WORDS):
        cause = _runtime_cause(list(last))
        if args.process_id != 0 and _COORDINATOR_LOST.search(text):
            at = f" at {args.coordinator}" if args.coordinator else ""
            print(f"jaxlab: error: {who} of the multi-process run lost the coordinator (process 0{at}): it died or "
                  f"stopped answering for --peer-timeout ({how}: {_one_line(cause, 240)}). Restart all processes "
                  "with the same command to resume from the last checkpoint.", file=sys.stderr)
            return LOST_PEER_EXIT
        print(f"jaxlab: error: {who} of the multi-process run lost a peer: its collectives aborted ({how}: "
              f"{_one_line(cause, 240)}). Restart all processes with the same command to resume from the last "
              "checkpoint.", file=sys.stderr)
        return LOST_PEER_EXIT
    print(f"jaxlab: error: {who} of the multi-process run crashed ({how}); see the lines above. Restart all "
          "processes with the same command to resume from the last checkpoint.", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    supervise = (args.command == "run" and (args.coordinator is not None or args.auto_cluster)
                 and not os.environ.get(WORKER_ENV))
    if args.command == "reproduce" and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # Mesh experiments run on 8 fake CPU devices when there is no accelerator; set before jax loads.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    _Signals.last = signal.SIGINT
    _Signals.program = argv is None
    old_handlers = _Signals.install()
    try:
        if supervise:
            _Signals.restore(old_handlers)
            old_handlers = {}
            return _supervise(raw, args)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"\n{_Signals.name()}", file=sys.stderr)
        return _Signals.exit_code()
    except _known_errors() as e:
        print(f"jaxlab: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ValueError, RunDivergedError) as e:  # a library check on an input the command passed on
        print(f"jaxlab: error: {_one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    except Exception as e:  # noqa: BLE001 - one line, never a traceback; the traceback goes to a file
        workdir = getattr(args, "workdir", None)
        where = _save_traceback(Path(workdir) if workdir else None)
        if os.environ.get("JAXLAB_DEBUG"):
            traceback.print_exc()
        print(f"jaxlab: internal error: {_one_line(f'{type(e).__name__}: {e}')} (traceback in {where}; "
              "please report it)", file=sys.stderr)
        return 1
    finally:
        _Signals.restore(old_handlers)


if __name__ == "__main__":
    sys.exit(main())
