"""Scripted sensor traces: a fake NVML module, a fake powercap tree, fake jax devices, a scripted clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path


class NVMLError(Exception):
    pass


class FakeNvml:
    """pynvml-like object replaying traces. ``energy_mj[i]``/``power_mw[i]``: list of successive readings
    (the last one repeats), or None when the GPU does not support the query."""

    def __init__(self, count, energy_mj=None, power_mw=None, init_error=None, uuids=None):
        self.count = count
        self.energy_mj = energy_mj or {}
        self.power_mw = power_mw or {}
        self.init_error = init_error
        self.uuids = uuids or [f"GPU-{i:04d}aaaa" for i in range(count)]
        self.calls: dict[int, int] = {}

    def nvmlInit(self):
        if self.init_error:
            raise NVMLError(self.init_error)

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, h):
        return self.uuids[h]

    @staticmethod
    def _next(trace, h, what):
        if trace.get(h) is None:
            raise NVMLError(f"Not Supported ({what})")
        seq = trace[h]
        return seq.pop(0) if len(seq) > 1 else seq[0]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self._next(self.energy_mj, h, "energy")

    def nvmlDeviceGetPowerUsage(self, h):
        return self._next(self.power_mw, h, "power")


def make_powercap(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """Writes a powercap tree: ``zones[dirname] = (name, energy_uj, max_energy_range_uj)``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "intel-rapl").mkdir(exist_ok=True)  # the control type folder (no energy_uj)
    for d, (name, e, m) in zones.items():
        z = root / d
        z.mkdir()
        (z / "name").write_text(name + "\n")
        (z / "energy_uj").write_text(f"{e}\n")
        (z / "max_energy_range_uj").write_text(f"{m}\n")
    return root


def set_energy(root: Path, zone: str, uj: int) -> None:
    (root / zone / "energy_uj").write_text(f"{uj}\n")


@dataclasses.dataclass
class FakeDevice:
    id: int
    platform: str = "gpu"
    local_hardware_id: int | None = None
    process_index: int = 0
    device_kind: str = "Fake GPU"


class ScriptedClock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]
