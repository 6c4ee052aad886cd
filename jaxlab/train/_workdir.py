"""Preparing a run's workdir: writable, and not holding another experiment's results."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from jaxlab.core import to_jsonable, write_json


class WorkdirError(RuntimeError):
    """The workdir cannot be used; the message says why and what to do."""


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def prepare_workdir(workdir: str | os.PathLike, config: dict[str, Any], *, fresh: bool = False,
                    extra: dict[str, Any] | None = None) -> Path:
    """Creates ``workdir`` and writes ``config.json``, or checks it against the one already there.

    A workdir whose ``config.json`` differs from ``config`` holds a different experiment: it is refused
    rather than mixed with, unless ``fresh``, which moves the old contents to ``<workdir>.old-<time>``.

    Args:
      workdir: the run's folder.
      config: the resolved config as a JSON-friendly dict.
      fresh: start over, keeping the old contents aside.
      extra: provenance written next to the config (git SHA, jax version) and not compared.

    Raises:
      WorkdirError: unwritable folder, or a different experiment's config.
    """
    path = Path(workdir)
    new = to_jsonable(config)
    cfg_file = path / "config.json"
    if fresh and path.exists() and any(path.iterdir()):
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(path), str(aside))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create workdir {str(path)!r}: {e.strerror}. Choose another --workdir.") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {str(path)!r} is not writable. Choose another --workdir or fix its permissions.")
    if cfg_file.exists():
        try:
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise WorkdirError(
                f"{str(cfg_file)!r} is unreadable ({e}); the workdir may belong to another run. "
                "Use another --workdir, or --fresh to move its contents aside."
            ) from e
        old_cfg = old.get("config", old)
        if old_cfg != new:
            keys = _diff_keys(old_cfg, new)
            raise WorkdirError(
                f"workdir {str(path)!r} holds a different experiment (config differs in: "
                f"{', '.join(keys[:10]) or 'structure'}). Use another --workdir, or --fresh to move its "
                "contents aside and start over."
            )
        return path
    try:
        write_json(cfg_file, {"config": new, **(extra or {})})
    except OSError as e:
        raise WorkdirError(f"cannot write to workdir {str(path)!r}: {e.strerror}. Choose another --workdir.") from e
    return path
