"""The energy of one run over every process that worked on it: a run killed and resumed is done by several."""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any, Mapping

from jaxlab._interrupts import deferring
from jaxlab.core import to_jsonable, write_json

from ._report import chain_reports, report_from_dict

#: Key of ``energy.json`` that lists the part of each process, oldest first.
PARTS_KEY = "process_reports"

_REPORT_KEYS = ("energy_j", "wall_s", "source", "estimated")


def _is_report(d: Mapping[str, Any]) -> bool:
    return all(k in d for k in _REPORT_KEYS) and isinstance(d["energy_j"], Mapping)


def _chain(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole run's figures from the parts: chained reports, or numeric fields added for other meters."""
    if len(parts) == 1:
        return dict(parts[0])
    if all(_is_report(p) for p in parts):
        try:
            return chain_reports([report_from_dict(p) for p in parts]).to_dict()
        except (ValueError, TypeError):  # parts measured with different PUE settings: add what adds
            pass
    out: dict[str, Any] = {}
    for p in parts:
        for k, v in p.items():
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and isinstance(out.get(k, 0.0), numbers.Real):
                out[k] = out.get(k, 0.0) + v
            else:
                out[k] = v
    return out


class EnergyLedger:
    """Keeps a run's ``energy.json`` as the total over every process that worked on the run.

    ``energy.json`` holds the total at its top level, in the form of one report (so readers of a
    single report keep working: ``report_from_dict`` reads it), and each process's own part under
    ``"process_reports"``, oldest first. A process calls :meth:`update` with its running figures
    whenever it records something (so a process killed with SIGKILL keeps the part it recorded
    last) and once more with its final figures.

    Examples:
      >>> import tempfile, pathlib
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "energy.json"
      >>> EnergyLedger(path).update({"energy_j": 2.0})["energy_j"]
      2.0
      >>> EnergyLedger(path).update({"energy_j": 3.0})["energy_j"]   # a second process: the total
      5.0
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.previous: list[dict[str, Any]] = self._load()
        self._current: dict[str, Any] | None = None

    def _load(self) -> list[dict[str, Any]]:
        try:
            d = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent, or not ours: the run starts its ledger afresh
            return []
        if not isinstance(d, dict):
            return []
        parts = d.get(PARTS_KEY)
        if isinstance(parts, list):
            return [p for p in parts if isinstance(p, dict)]
        return [d]  # one report written by an earlier version or by the run itself

    @property
    def num_processes(self) -> int:
        return len(self.previous) + (self._current is not None)

    def total(self) -> dict[str, Any] | None:
        """The whole run's figures (None before any process recorded any)."""
        parts = self.previous + ([self._current] if self._current is not None else [])
        return _chain(parts) if parts else None

    @deferring
    def update(self, part: Mapping[str, Any]) -> dict[str, Any]:
        """Sets this process's figures so far, rewrites ``energy.json`` (atomically) and returns the total."""
        self._current = to_jsonable(dict(part))
        total = self.total()
        assert total is not None
        record = dict(total)
        record[PARTS_KEY] = self.previous + [self._current]
        write_json(self.path, record)
        return total
