"""Energy sensors: NVML (energy counter or sampled power), RAPL through powercap, a CPU-time estimate.

Every sensor reports the energy in joules accumulated since its last ``reset()``. Readers are
injectable so tests can replay scripted traces: RAPL takes a sysfs root (any folder laid out like
``/sys/class/powercap``), NVML takes any object with the ``pynvml`` functions used here, and the
clocks and CPU-time functions are arguments.

Differences from perun / Zeus / CodeCarbon (see ``shared/papers/energy.md``):
  * a sensor that cannot be read is *reported* as unavailable with the reason (permission, missing
    library, no such file); nothing falls back silently to a constant;
  * the CPU-time estimate is used only where no RAPL counter is readable and is always flagged
    ``estimated``; it attributes power to this process (and its waited children), not the machine;
  * GPUs are chosen from the jax devices of the run, not every GPU of the node.
"""

from __future__ import annotations

import abc
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

#: Power zones counted: package (CPU) and DRAM. ``core``/``uncore`` are parts of the package and
#: ``psys`` overlaps everything, so they would double count.
_RAPL_KINDS = {"package": "cpu", "dram": "dram"}

DEFAULT_RAPL_ROOT = "/sys/class/powercap"


class AbstractSensor(abc.ABC):
    """One energy source. Subclasses are final.

    Attributes:
      name: unique label, e.g. ``"gpu:0"`` or ``"rapl:package-0"``.
      kind: device kind the energy is booked under: ``"gpu"``, ``"cpu"`` or ``"dram"``.
      source: how it is measured: ``"nvml_energy"``, ``"nvml_power"``, ``"rapl"``, ``"cpu_time_tdp"``.
      estimated: True when the value is a model, not a measurement.
      poll_interval_s: how often a background thread must call :meth:`poll` (None: never).
    """

    name: str
    kind: str
    source: str
    estimated: bool = False
    poll_interval_s: float | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @abc.abstractmethod
    def reset(self) -> None:
        """Sets the zero point to now."""

    def poll(self) -> None:
        """Takes one sample (power sensors) or catches a counter wrap (RAPL). Thread-safe."""

    @abc.abstractmethod
    def energy_j(self) -> float:
        """Joules since the last :meth:`reset`, up to now."""


# ----------------------------------------------------------------------------------------------
# RAPL through powercap.


def _read_int(path: Path) -> int:
    with open(path, encoding="ascii") as f:
        return int(f.read().strip())


class RaplSensor(AbstractSensor):
    """A powercap RAPL zone's ``energy_uj`` counter, corrected for wrap-around.

    The counter counts micro-joules modulo ``max_energy_range_uj``. A difference is taken modulo
    that range, so one wrap between two reads is corrected; a background poll every
    ``poll_interval_s`` (far shorter than the wrap period of minutes) makes sure there is never more.
    """

    source = "rapl"

    def __init__(self, zone: str | os.PathLike, *, kind: str, name: str, poll_interval_s: float = 1.0):
        super().__init__()
        self.zone = Path(zone)
        self.kind = kind
        self.name = name
        self.poll_interval_s = poll_interval_s
        self.max_range_uj = _read_int(self.zone / "max_energy_range_uj")
        if self.max_range_uj <= 0:
            raise ValueError(f"{self.zone / 'max_energy_range_uj'} holds {self.max_range_uj}; expected > 0")
        self._last_uj = _read_int(self.zone / "energy_uj")  # raises PermissionError where root-only
        # Kept open and re-read with pread at offset 0 (sysfs regenerates the value on every read):
        # one syscall per reading instead of open/read/close keeps per-step windows cheap.
        self._fd = os.open(self.zone / "energy_uj", os.O_RDONLY)
        self._acc_uj = 0

    def _read_uj(self) -> int:
        return int(os.pread(self._fd, 32, 0))

    def close(self) -> None:
        """Closes the counter file (also done when the sensor is garbage collected)."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def reset(self) -> None:
        with self._lock:
            self._last_uj = self._read_uj()
            self._acc_uj = 0

    def poll(self) -> None:
        with self._lock:
            now = self._read_uj()
            self._acc_uj += (now - self._last_uj) % self.max_range_uj
            self._last_uj = now

    def energy_j(self) -> float:
        self.poll()
        return self._acc_uj * 1e-6


def discover_rapl(root: str | os.PathLike = DEFAULT_RAPL_ROOT, *, poll_interval_s: float = 1.0
                  ) -> tuple[list[RaplSensor], str | None]:
    """Finds the readable package and DRAM zones under a powercap root.

    Args:
      root: the powercap folder (``/sys/class/powercap``, or a scripted copy in tests).
      poll_interval_s: wrap-check interval for the sensors' background poll.

    Returns:
      ``(sensors, reason)``: the sensors, and why RAPL is unavailable when there are none.
    """
    root = Path(root)
    if not root.is_dir():
        return [], (f"no RAPL: {root} does not exist (no powercap driver: not an Intel/AMD Linux host, "
                    "or a container without /sys/class/powercap)")
    zones = sorted(p for p in root.iterdir() if "rapl" in p.name and (p / "energy_uj").exists())
    # Sub-zones (intel-rapl:0:0) are symlinked at the top level on most kernels and also nested.
    sensors: list[RaplSensor] = []
    seen: set[str] = set()
    problems: list[str] = []
    for zone in zones:
        try:
            label = (zone / "name").read_text(encoding="ascii").strip()
        except OSError as e:
            problems.append(f"{zone / 'name'}: {e.strerror or e}")
            continue
        base = label.split("-")[0]
        if base not in _RAPL_KINDS:
            continue
        # intel-rapl:0 -> package-0; intel-rapl:0:1 -> dram-0 (socket index from the parent zone).
        parts = zone.name.split(":")
        socket = parts[1] if len(parts) > 1 else "0"
        name = f"rapl:{base}-{socket}"
        if name in seen:
            continue
        try:
            sensors.append(RaplSensor(zone, kind=_RAPL_KINDS[base], name=name, poll_interval_s=poll_interval_s))
            seen.add(name)
        except PermissionError:
            problems.append(
                f"permission denied reading {zone / 'energy_uj'} (root-only since Linux 5.10); run "
                f"`sudo chmod a+r {root}/*rapl*/energy_uj` or measure as root")
        except (OSError, ValueError) as e:
            problems.append(f"{zone}: {e}")
    if sensors:
        return sensors, None
    if problems:
        return [], "no RAPL: " + "; ".join(dict.fromkeys(problems))
    return [], f"no RAPL: no readable package/dram zone under {root}"


# ----------------------------------------------------------------------------------------------
# NVML.


class NvmlEnergySensor(AbstractSensor):
    """A GPU's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ; Volta and newer)."""

    kind = "gpu"
    source = "nvml_energy"

    def __init__(self, nvml: Any, handle: Any, index: int):
        super().__init__()
        self._nvml, self._handle, self.index = nvml, handle, index
        self.name = f"gpu:{index}"
        self._e0_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    def reset(self) -> None:
        self._e0_mj = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def energy_j(self) -> float:
        return (int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) - self._e0_mj) * 1e-3


class NvmlPowerSensor(AbstractSensor):
    """A GPU without an energy counter: power (``nvmlDeviceGetPowerUsage``, mW) sampled in a background
    thread every ``poll_interval_s`` and integrated with the trapezoid rule.

    :meth:`energy_j` takes one more sample, so the integral always reaches the present.
    """

    kind = "gpu"
    source = "nvml_power"

    def __init__(self, nvml: Any, handle: Any, index: int, *, poll_interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._nvml, self._handle, self.index = nvml, handle, index
        self.name = f"gpu:{index}"
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._nvml.nvmlDeviceGetPowerUsage(handle)  # raises here when power is not supported
        self.reset()

    def _sample(self) -> tuple[float, float]:
        return self._clock(), float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) * 1e-3

    def reset(self) -> None:
        with self._lock:
            self._t, self._p = self._sample()
            self._acc_j = 0.0
            self.num_samples = 1

    def poll(self) -> None:
        with self._lock:
            t, p = self._sample()
            self._acc_j += 0.5 * (p + self._p) * (t - self._t)
            self._t, self._p = t, p
            self.num_samples += 1

    def energy_j(self) -> float:
        self.poll()
        return self._acc_j


def _import_pynvml() -> Any:
    import pynvml  # noqa: PLC0415  (optional dependency, imported only when a GPU is measured)

    return pynvml


def visible_gpu_indices(nvml: Any, environ: dict[str, str] | None = None) -> list[int]:
    """NVML indices of the GPUs that ``CUDA_VISIBLE_DEVICES`` exposes (all GPUs when it is unset).

    Entries may be indices or UUIDs (``GPU-...``). NVML itself ignores ``CUDA_VISIBLE_DEVICES``, so
    this mapping is what keeps a meter to the GPUs its process can use.
    """
    environ = os.environ if environ is None else environ
    count = int(nvml.nvmlDeviceGetCount())
    spec = environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(count))
    uuids = None
    out: list[int] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        if entry.isdigit() or (entry.startswith("-") and entry[1:].isdigit()):
            i = int(entry)
            if i < 0 or i >= count:
                break  # CUDA stops at the first invalid entry.
            out.append(i)
            continue
        if uuids is None:
            uuids = []
            for i in range(count):
                u = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))
                uuids.append(u.decode() if isinstance(u, bytes) else str(u))
        match = [i for i, u in enumerate(uuids) if u.startswith(entry) or u.startswith("GPU-" + entry)]
        if len(match) != 1:
            break
        out.append(match[0])
    return out


def discover_nvml(indices: Sequence[int] | str, *, nvml: Any = None, poll_interval_s: float = 0.1,
                  clock: Callable[[], float] = time.monotonic) -> tuple[list[AbstractSensor], str | None]:
    """Opens NVML sensors for the given GPUs.

    Args:
      indices: NVML device indices; ``"visible"`` for every GPU ``CUDA_VISIBLE_DEVICES`` exposes; or
        ``("local", ordinals)`` for CUDA ordinals as a process sees them (jax's ``local_hardware_id``),
        mapped through ``CUDA_VISIBLE_DEVICES`` to NVML indices.
      nvml: a ``pynvml``-like object (default: ``import pynvml``, from the ``nvidia-ml-py`` package).
      poll_interval_s: sampling period for GPUs that only report power.
      clock: monotonic clock in seconds for power sampling.

    Returns:
      ``(sensors, reason)``; ``reason`` says what could not be measured (None when everything could).
    """
    local = isinstance(indices, tuple) and len(indices) == 2 and indices[0] == "local"
    if isinstance(indices, str) and indices != "visible":
        raise ValueError(f"indices must be a sequence of ints, 'visible' or ('local', ordinals), got {indices!r}")
    if (local and len(indices[1]) == 0) or (not local and not isinstance(indices, str) and len(indices) == 0):
        return [], None
    if nvml is None:
        try:
            nvml = _import_pynvml()
        except ImportError:
            return [], "no NVML: the nvidia-ml-py package is not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except Exception as e:  # pynvml raises NVMLError subclasses (library not found, driver not loaded)
        return [], f"no NVML: nvmlInit failed: {e}"
    try:
        if isinstance(indices, str):
            indices = visible_gpu_indices(nvml)
        elif local:
            visible = visible_gpu_indices(nvml)
            indices = [visible[o] if 0 <= o < len(visible) else -1 - o for o in indices[1]]
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as e:
        return [], f"no NVML: {e}"
    sensors: list[AbstractSensor] = []
    problems: list[str] = []
    for i in indices:
        if not 0 <= i < count:
            problems.append(f"gpu:{i if i >= 0 else -1 - i}: NVML sees {count} GPU(s) "
                            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
            continue
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
        except Exception as e:
            problems.append(f"gpu:{i}: {e}")
            continue
        try:
            sensors.append(NvmlEnergySensor(nvml, handle, i))
            continue
        except Exception:  # NVMLError_NotSupported on GPUs before Volta: fall back to power
            pass
        try:
            sensors.append(NvmlPowerSensor(nvml, handle, i, poll_interval_s=poll_interval_s, clock=clock))
        except Exception as e:
            problems.append(f"gpu:{i}: neither energy counter nor power reading: {e}")
    return sensors, ("; ".join(problems) if problems else None)


# ----------------------------------------------------------------------------------------------
# Estimate from CPU time.


def process_cpu_time_s() -> float:
    """User + system CPU seconds of this process (all threads, ns resolution) and its waited-for children."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


class CpuTimeEstimateSensor(AbstractSensor):
    """Estimated CPU energy: CPU seconds used x (TDP / logical cores). Always ``estimated``.

    A process that keeps one core busy for one second is charged ``tdp_w / cores`` joules. This is
    the process's share of the package's rated power; idle and uncore power are not included.
    """

    kind = "cpu"
    source = "cpu_time_tdp"
    estimated = True

    def __init__(self, *, tdp_w: float, cores: int | None = None,
                 cpu_time_fn: Callable[[], float] = process_cpu_time_s):
        super().__init__()
        if tdp_w <= 0:
            raise ValueError(f"tdp_w must be > 0 watts, got {tdp_w}")
        self.cores = int(cores or os.cpu_count() or 1)
        self.tdp_w = float(tdp_w)
        self.name = "cpu:estimate"
        self._cpu_time_fn = cpu_time_fn
        self._c0 = cpu_time_fn()

    @property
    def watts_per_core(self) -> float:
        return self.tdp_w / self.cores

    def reset(self) -> None:
        self._c0 = self._cpu_time_fn()

    def energy_j(self) -> float:
        return (self._cpu_time_fn() - self._c0) * self.watts_per_core
