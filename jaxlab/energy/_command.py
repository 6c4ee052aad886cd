"""``jaxlab energy -- COMMAND ...``: measure the energy of any command, like ``perun monitor``."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from ._meter import EnergyMeter


#: Longest idle baseline ``measure_command`` accepts (an hour; longer is a typo, not a baseline).
MAX_IDLE_S = 3600.0


def check_report_dir(report_dir: str | os.PathLike, report_name: str = "energy") -> Path:
    """Creates ``report_dir`` if needed and checks that the reports can be written there.

    Returns:
      The folder.

    Raises:
      ValueError: naming the folder or file that is in the way.
    """
    out = Path(report_dir)
    if not str(report_dir).strip():
        raise ValueError("the report folder is empty; give a folder, e.g. --report-dir .")
    if not report_name or "/" in report_name or report_name in (".", ".."):
        raise ValueError(f"report name {report_name!r} must be a plain file stem such as 'energy'")
    if out.exists() and not out.is_dir():
        raise ValueError(f"report folder {str(out)!r} is an existing file; give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the report folder {str(out)!r}: {e.strerror or e}; give another folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"report folder {str(out)!r} is not writable; give another folder")
    for suffix in (".json", ".csv"):
        target = out / f"{report_name}{suffix}"
        if target.exists() and not target.is_file():
            raise ValueError(f"{str(target)!r} exists and is not a file; remove it or give another report folder")
    return out


def measure_command(
    argv: Sequence[str],
    *,
    report_dir: str | os.PathLike = ".",
    report_name: str = "energy",
    quiet: bool = False,
    idle_s: float = 0.0,
    **meter_kwargs: Any,
) -> int:
    """Runs ``argv`` as a subprocess, measures the energy while it runs and writes the report.

    The GPUs measured are those the command can see (``CUDA_VISIBLE_DEVICES``, else all of the
    node's); CPU energy comes from RAPL or, where it cannot be read, from the command's CPU time
    (flagged ``estimated``). This process does not initialise any jax backend, so it takes no GPU
    memory from the command.

    Args:
      argv: the command and its arguments (no shell).
      report_dir: folder for ``<report_name>.json`` (overwritten) and ``<report_name>.csv`` (a row is
        appended per run).
      report_name: file stem of the reports.
      quiet: do not print the summary to stderr.
      idle_s: first measure the idle power for this long; the report's ``dynamic_energy_j`` then
        subtracts it (0: no baseline).
      **meter_kwargs: passed to :class:`EnergyMeter` (``cpu_tdp_w``, ``pue``, ``carbon_g_per_kwh``,
        ``gpu_indices``, ``nvml``, ``rapl_root`` ...).

    Returns:
      The command's exit status (127 when it cannot be started; 128 + N when killed by signal N).

    Raises:
      ValueError: for an empty ``argv``, a negative or non-finite ``idle_s``, bad meter settings, or a
        ``report_dir`` that cannot hold the reports; all of them before the command starts, so that
        no measurement is lost at the end.
    """
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ValueError("measure_command needs a command to run, e.g. ['python', 'train.py']")
    try:
        idle = float(idle_s)
    except (TypeError, ValueError):
        idle = math.nan
    if not (math.isfinite(idle) and 0 <= idle <= MAX_IDLE_S):
        raise ValueError(f"idle_s must be a number of seconds in [0, {MAX_IDLE_S:g}], got {idle_s!r}")
    out = check_report_dir(report_dir, report_name)
    meter_kwargs.setdefault("devices", ())
    meter_kwargs.setdefault("gpu_indices", "visible")
    meter = EnergyMeter(**meter_kwargs)
    if idle > 0:
        meter.measure_idle(idle)
    meter.start()
    try:
        proc = subprocess.Popen(argv)
    except OSError as e:
        meter.stop()
        print(f"jaxlab energy: cannot run {argv[0]!r}: {e.strerror or e}", file=sys.stderr)
        return 127
    # SIGTERM (a batch system ending the job) goes on to the command, and the report is still written.
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            # The child got the same SIGINT (same process group); let it finish and still write the report.
            rc = proc.wait()
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    meter.stop()
    report = meter.report()
    report = type(report)(**{**report.__dict__, "tags": {**report.tags, "command": argv, "returncode": rc}})
    report.to_json(out / f"{report_name}.json")
    report.to_csv(out / f"{report_name}.csv")
    if not quiet:
        print(f"jaxlab energy: {' '.join(argv)} -> exit {rc}\n" + report.summary()
              + f"  report: {out / (report_name + '.json')}", file=sys.stderr)
    return 128 - rc if rc < 0 else rc
