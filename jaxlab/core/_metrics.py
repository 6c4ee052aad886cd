"""The metrics log: one JSON object per line in ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from jaxlab._interrupts import deferring


def to_jsonable(value: Any) -> Any:
    """Converts numpy/jax scalars and arrays (and containers of them) to plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    arr = np.asarray(value)
    if arr.ndim == 0:
        return to_jsonable(arr.item())
    return to_jsonable(arr.tolist())


class MetricsWriter:
    """Appends metric records to a JSON-lines file, flushing each line so a killed run loses nothing.

    Examples:
      >>> import tempfile, pathlib
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
      >>> with MetricsWriter(path) as w:
      ...     w.write(step=1, split="train", loss=0.5)
      >>> read_metrics(path)
      [{'step': 1, 'split': 'train', 'loss': 0.5}]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    @deferring
    def write(self, record: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        rec = dict(record or {})
        rec.update(fields)
        self._file.write(json.dumps(to_jsonable(rec)) + "\n")
        self._file.flush()

    @deferring
    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Drops records with ``step > step`` and torn lines (a run resuming from the checkpoint of ``step``).

        The file is replaced atomically, so a kill during the rewrite loses nothing. Records without a
        numeric ``step`` are kept.

        Returns:
          The records kept.
        """
        self._file.close()
        kept = [r for r in read_metrics(self.path)
                if not isinstance(r.get("step"), (int, float)) or isinstance(r.get("step"), bool) or r["step"] <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        return kept

    @deferring
    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_metrics(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yields the records of a ``metrics.jsonl`` file; a torn last line (killed writer) is skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                yield rec


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads all records of a ``metrics.jsonl`` file."""
    return list(iter_metrics(path))


@deferring
def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
