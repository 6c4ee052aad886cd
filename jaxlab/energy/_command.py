"""``jaxlab energy -- COMMAND ...``: measure the energy of any command, like ``perun monitor``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from ._meter import EnergyMeter


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
      ValueError: for an empty ``argv``.
    """
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ValueError("measure_command needs a command to run, e.g. ['python', 'train.py']")
    meter_kwargs.setdefault("devices", ())
    meter_kwargs.setdefault("gpu_indices", "visible")
    meter = EnergyMeter(**meter_kwargs)
    if idle_s > 0:
        meter.measure_idle(idle_s)
    meter.start()
    try:
        proc = subprocess.Popen(argv)
    except OSError as e:
        meter.stop()
        print(f"jaxlab energy: cannot run {argv[0]!r}: {e.strerror or e}", file=sys.stderr)
        return 127
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        # The child got the same SIGINT (same process group); let it finish and still write the report.
        rc = proc.wait()
    meter.stop()
    report = meter.report()
    report = type(report)(**{**report.__dict__, "tags": {**report.tags, "command": argv, "returncode": rc}})
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.to_json(out / f"{report_name}.json")
    report.to_csv(out / f"{report_name}.csv")
    if not quiet:
        print(f"jaxlab energy: {' '.join(argv)} -> exit {rc}\n" + report.summary()
              + f"  report: {out / (report_name + '.json')}", file=sys.stderr)
    return 128 - rc if rc < 0 else rc
