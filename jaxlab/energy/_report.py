"""The energy report: joules per device kind, wall time, GPU-hours, kWh with PUE, CO2; JSON and CSV."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import os
from pathlib import Path
from typing import Any, Sequence

from jaxlab.core import to_jsonable, write_json

#: Default carbon intensity, gCO2e per kWh: the world average of electricity generation (IEA, about
#: 2023). Set the value of your grid (perun uses 230 for Germany 2025).
DEFAULT_CARBON_G_PER_KWH = 475.0

KINDS = ("gpu", "cpu", "dram")

_J_PER_KWH = 3.6e6


@dataclasses.dataclass(frozen=True)
class EnergyReport:
    """What an :class:`EnergyMeter` measured.

    Attributes:
      energy_j: joules per device kind (``"gpu"``, ``"cpu"``, ``"dram"``) that could be measured.
      wall_s: wall time of the measurement.
      source: how each kind was measured, e.g. ``{"gpu": "nvml_energy", "cpu": "rapl"}``.
      estimated: True when any kind is an estimate (CPU time x TDP) rather than a measurement.
      per_sensor_j: joules per sensor (``"gpu:0"``, ``"rapl:package-0"``, ``"cpu:estimate"``).
      unavailable: sensor family -> reason it could not be read (``"nvml"``, ``"rapl"``).
      gpu_count: GPUs measured.
      device_count: jax devices of the run (GPUs, or CPU devices, fake ones included).
      pue: power usage effectiveness applied to the facility energy.
      carbon_g_per_kwh: carbon intensity used for ``co2_g``.
      idle_power_w: idle power per kind subtracted in ``dynamic_energy_j`` (empty: no baseline).
      tags: host, process index, device ids, start time.
    """

    energy_j: dict[str, float]
    wall_s: float
    source: dict[str, str]
    estimated: bool
    per_sensor_j: dict[str, float] = dataclasses.field(default_factory=dict)
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)
    gpu_count: int = 0
    device_count: int = 0
    pue: float = 1.0
    carbon_g_per_kwh: float = DEFAULT_CARBON_G_PER_KWH
    idle_power_w: dict[str, float] = dataclasses.field(default_factory=dict)
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def total_energy_j(self) -> float:
        """Sum over the measured kinds (IT energy, before PUE)."""
        return float(sum(self.energy_j.values()))

    @property
    def dynamic_energy_j(self) -> dict[str, float]:
        """Energy per kind minus the idle baseline ``idle_power_w * wall_s`` (equal without a baseline)."""
        return {k: v - self.idle_power_w.get(k, 0.0) * self.wall_s for k, v in self.energy_j.items()}

    @property
    def power_w(self) -> dict[str, float]:
        """Mean power per kind."""
        return {k: (v / self.wall_s if self.wall_s > 0 else 0.0) for k, v in self.energy_j.items()}

    @property
    def gpu_hours(self) -> float:
        return self.gpu_count * self.wall_s / 3600.0

    @property
    def device_hours(self) -> float:
        """jax devices x hours: the GPU-hours of a GPU run, the resource axis of CPU runs."""
        return self.device_count * self.wall_s / 3600.0

    @property
    def kwh(self) -> float:
        """Facility energy: total IT energy x PUE, in kWh."""
        return self.total_energy_j * self.pue / _J_PER_KWH

    @property
    def co2_g(self) -> float:
        return self.kwh * self.carbon_g_per_kwh

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(
            total_energy_j=self.total_energy_j,
            dynamic_energy_j=self.dynamic_energy_j,
            power_w=self.power_w,
            gpu_hours=self.gpu_hours,
            device_hours=self.device_hours,
            kwh=self.kwh,
            co2_g=self.co2_g,
        )
        return to_jsonable(d)

    def to_json(self, path: str | os.PathLike) -> Path:
        """Writes :meth:`to_dict` as indented JSON (atomically). Returns the path."""
        write_json(path, self.to_dict())
        return Path(path)

    def csv_row(self) -> dict[str, Any]:
        """One flat row with fixed columns (empty where a kind was not measured)."""
        row: dict[str, Any] = {
            "time_utc": self.tags.get("start_utc", ""),
            "host": self.tags.get("host", ""),
            "process_index": self.tags.get("process_index", ""),
            "wall_s": self.wall_s,
        }
        for k in KINDS:
            row[f"energy_j_{k}"] = self.energy_j.get(k, "")
        row.update(
            total_energy_j=self.total_energy_j,
            kwh=self.kwh,
            co2_g=self.co2_g,
            pue=self.pue,
            carbon_g_per_kwh=self.carbon_g_per_kwh,
            gpu_count=self.gpu_count,
            gpu_hours=self.gpu_hours,
            device_count=self.device_count,
            device_hours=self.device_hours,
            source="+".join(f"{k}:{v}" for k, v in sorted(self.source.items())),
            estimated=self.estimated,
            unavailable="; ".join(f"{k}: {v}" for k, v in sorted(self.unavailable.items())),
        )
        return row

    def to_csv(self, path: str | os.PathLike, *, append: bool = True) -> Path:
        """Writes :meth:`csv_row` to a CSV file, appending below an existing header when ``append``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        row = self.csv_row()
        new = not (append and path.exists() and path.stat().st_size > 0)
        with open(path, "w" if new else "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        return path

    def summary(self) -> str:
        """A few human-readable lines."""
        out = io.StringIO()
        flag = " (ESTIMATED)" if self.estimated else ""
        out.write(f"energy: {self.total_energy_j:.3f} J in {self.wall_s:.3f} s{flag}\n")
        for k, v in self.energy_j.items():
            out.write(f"  {k:5s} {v:12.3f} J  {self.power_w[k]:9.2f} W  [{self.source.get(k, '?')}]\n")
        out.write(f"  {self.kwh:.3e} kWh (PUE {self.pue:g}), {self.co2_g:.3e} gCO2e "
                  f"at {self.carbon_g_per_kwh:g} g/kWh, {self.gpu_hours:.3e} GPU-h\n")
        for k, v in self.unavailable.items():
            out.write(f"  unavailable {k}: {v}\n")
        return out.getvalue()


def combine_reports(reports: Sequence[EnergyReport]) -> EnergyReport:
    """One report for a multi-process run from each process's report (e.g. one per host).

    Energies add per kind and per sensor (sensor names are prefixed with the host and process
    index); the wall time is the longest; GPU and device counts add, so GPU-hours are those of the
    whole run; ``estimated`` holds if any part is estimated. PUE and carbon intensity must agree.

    Raises:
      ValueError: for no reports, or reports with different PUE or carbon intensity.
    """
    reports = list(reports)
    if not reports:
        raise ValueError("combine_reports needs at least one report")
    if len({(r.pue, r.carbon_g_per_kwh) for r in reports}) != 1:
        raise ValueError("reports use different pue / carbon_g_per_kwh; measure all processes with the same values")
    energy: dict[str, float] = {}
    source: dict[str, str] = {}
    per_sensor: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for r in reports:
        who = f"{r.tags.get('host', '?')}/{r.tags.get('process_index', '?')}"
        for k, v in r.energy_j.items():
            energy[k] = energy.get(k, 0.0) + v
        for k, v in r.source.items():
            source[k] = v if source.get(k, v) == v else "mixed"
        per_sensor.update({f"{who}/{k}": v for k, v in r.per_sensor_j.items()})
        unavailable.update({f"{who}/{k}": v for k, v in r.unavailable.items()})
    return EnergyReport(
        energy_j=energy,
        wall_s=max(r.wall_s for r in reports),
        source=source,
        estimated=any(r.estimated for r in reports),
        per_sensor_j=per_sensor,
        unavailable=unavailable,
        gpu_count=sum(r.gpu_count for r in reports),
        device_count=sum(r.device_count for r in reports),
        pue=reports[0].pue,
        carbon_g_per_kwh=reports[0].carbon_g_per_kwh,
        tags={"processes": [r.tags for r in reports]},
    )


def chain_reports(reports: Sequence[EnergyReport]) -> EnergyReport:
    """One report for a run done by several processes one after another (a run killed and resumed).

    Unlike :func:`combine_reports` (processes side by side), wall times add, and so do energies per
    kind and per sensor. The GPU and device counts are the largest of any part, so GPU-hours are
    exact when every part used the same devices (the usual resume) and an upper bound otherwise.
    ``tags["processes"]`` lists each part's tags.

    Raises:
      ValueError: for no reports, or reports with different PUE or carbon intensity.
    """
    reports = list(reports)
    if not reports:
        raise ValueError("chain_reports needs at least one report")
    if len({(r.pue, r.carbon_g_per_kwh) for r in reports}) != 1:
        raise ValueError("reports use different pue / carbon_g_per_kwh; measure every process with the same values")
    if len(reports) == 1:
        return reports[0]
    energy: dict[str, float] = {}
    source: dict[str, str] = {}
    per_sensor: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for r in reports:
        for k, v in r.energy_j.items():
            energy[k] = energy.get(k, 0.0) + v
        for k, v in r.source.items():
            source[k] = v if source.get(k, v) == v else "mixed"
        for k, v in r.per_sensor_j.items():
            per_sensor[k] = per_sensor.get(k, 0.0) + v
        unavailable.update(r.unavailable)
    last = reports[-1]
    return EnergyReport(
        energy_j=energy,
        wall_s=float(sum(r.wall_s for r in reports)),
        source=source,
        estimated=any(r.estimated for r in reports),
        per_sensor_j=per_sensor,
        unavailable=unavailable,
        gpu_count=max(r.gpu_count for r in reports),
        device_count=max(r.device_count for r in reports),
        pue=last.pue,
        carbon_g_per_kwh=last.carbon_g_per_kwh,
        idle_power_w=dict(last.idle_power_w),
        tags={**{k: v for k, v in last.tags.items() if k in ("host", "device_kind")},
              "start_utc": reports[0].tags.get("start_utc", ""), "processes": [r.tags for r in reports]},
    )


def report_from_dict(d: dict[str, Any]) -> EnergyReport:
    """Rebuilds an :class:`EnergyReport` from :meth:`EnergyReport.to_dict` (e.g. a loaded energy.json)."""
    fields = {f.name for f in dataclasses.fields(EnergyReport)}
    return EnergyReport(**{k: v for k, v in d.items() if k in fields})


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
