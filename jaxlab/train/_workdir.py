"""Preparing a run's workdir: writable, and not holding another experiment's results."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from jaxlab.core import to_jsonable, write_json
from jaxlab.core._environment import NUMERICS_FIELDS


class WorkdirError(RuntimeError):
    """The workdir cannot be used; the message says why and what to do."""


class ResumeProvenanceWarning(UserWarning):
    """A run resumes under other code, jax, device, CPU instructions, core count or ``XLA_FLAGS`` than it
    started with."""


#: Provenance fields (``jaxlab run`` writes them beside the config) whose change between a run's start and its
#: resumption can change what the resumed part computes, if only in the last bits.
RESUME_SENSITIVE: tuple[str, ...] = ("git_sha", *NUMERICS_FIELDS)


def changed_setting(workdir: str | os.PathLike, provenance: dict[str, Any]) -> tuple[list[str], str | None]:
    """The :data:`RESUME_SENSITIVE` fields of ``workdir/config.json`` that differ from ``provenance`` (a field
    missing on either side is not compared), and the message that says so (None when none differ)."""
    path = Path(workdir)
    try:
        old = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], None
    if not isinstance(old, dict):
        return [], None
    extra = to_jsonable(provenance)
    changed = [k for k in RESUME_SENSITIVE if k in old and k in extra and old[k] != extra[k]]
    if not changed:
        return [], None
    then = ", ".join(f"{k}={old[k]!r}" for k in changed)
    now = ", ".join(f"{k}={extra[k]!r}" for k in changed)
    return changed, (
        f"workdir {str(path)!r} was started with {then} and resumes with {now}: what is computed now can "
        "differ (at least in its last bits) from an uninterrupted run, since the code, the versions, the "
        "device, the CPU's instructions and cores and XLA_FLAGS all enter what XLA compiles. Use --fresh to "
        "recompute everything in one setting.")


def warn_on_changed_setting(workdir: str | os.PathLike, provenance: dict[str, Any]) -> list[str]:
    """Warns (:class:`ResumeProvenanceWarning`) when the run in ``workdir`` started in another setting than
    ``provenance`` (:func:`changed_setting`); ``jaxlab run`` says the same on one line when it resumes an
    unfinished run. Returns the fields that differ."""
    changed, message = changed_setting(workdir, provenance)
    if message:
        warnings.warn(ResumeProvenanceWarning(message), stacklevel=2)
    return changed


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


#: Files of a run that hold no result yet (a run that failed before its first record leaves only these).
_NO_RESULT = ("config.json", "config.json.tmp", "error.log", "energy.json", "energy.json.tmp", ".jaxlab.lock")


def holds_results(workdir: str | os.PathLike) -> bool:
    """Whether ``workdir`` holds anything a run produced: records, checkpoints, a summary, any other file.

    A folder holding only ``config.json`` (and an empty ``metrics.jsonl`` or ``checkpoints/``) belongs
    to a run that failed before recording anything.
    """
    path = Path(workdir)
    if not path.is_dir():
        return False
    for p in path.iterdir():
        if p.name in _NO_RESULT:
            continue
        if p.name == "metrics.jsonl" and p.is_file() and p.stat().st_size == 0:
            continue
        if p.name == "checkpoints" and p.is_dir() and not any(c.name.isdigit() for c in p.iterdir()):
            continue
        return True
    return False


class WorkdirLock:
    """An exclusive lock on a workdir for the life of one run: a second run in the same folder is refused.

    The lock is an ``fcntl.flock`` on ``<workdir>/.jaxlab.lock``, which the system releases when the
    process ends, however it ends (SIGKILL included): a killed run never leaves a stale lock.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir) / ".jaxlab.lock"
        self._file: Any = None

    def acquire(self) -> "WorkdirLock":
        """Takes the lock. Raises WorkdirError when another process holds it."""
        import fcntl

        try:
            self._file = open(self.path, "a", encoding="utf-8")  # never written: the file's times stay as they are
        except OSError as e:
            raise WorkdirError(f"cannot use workdir {str(self.path.parent)!r}: {e.strerror or e}. Choose another "
                               "--workdir.") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise WorkdirError(
                f"workdir {str(self.path.parent)!r} is in use by another run that is still going; wait for it to "
                "end, or use another --workdir."
            ) from None
        return self

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def prepare_workdir(workdir: str | os.PathLike, config: dict[str, Any], *, fresh: bool = False,
                    extra: dict[str, Any] | None = None) -> Path:
    """Creates ``workdir`` and writes ``config.json``, or checks it against the one already there.

    A workdir whose ``config.json`` differs from ``config`` holds a different experiment: it is refused
    rather than mixed with, unless ``fresh``, which moves the old contents to ``<workdir>.old-<time>``.
    A workdir whose run recorded nothing (see :func:`holds_results`: it failed at once, e.g. on bad
    data) is not a different experiment: its ``config.json`` is replaced.

    Args:
      workdir: the run's folder.
      config: the resolved config as a JSON-friendly dict.
      fresh: start over, keeping the old contents aside.
      extra: provenance written next to the config (git SHA, :func:`jaxlab.core.numerics_provenance`) and not
        compared (a resumed run compares it with :func:`warn_on_changed_setting`); a resume keeps the first.

    Raises:
      WorkdirError: unwritable folder, or a different experiment's config.
    """
    if not str(workdir).strip():
        raise WorkdirError("the workdir is an empty path; give a folder, e.g. --workdir runs/mine")
    path = Path(workdir)
    new = to_jsonable(config)
    cfg_file = path / "config.json"
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"workdir {str(path)!r} is an existing file, not a folder. Choose another --workdir.")
    if fresh and path.is_dir() and any(path.iterdir()):
        if path.resolve() == Path.cwd().resolve() or path.resolve() == Path(path.resolve().anchor):
            raise WorkdirError(f"--fresh would move {str(path)!r} (the current folder or the root) aside; "
                               "give the run its own --workdir")
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
            n += 1
        try:
            shutil.move(str(path), str(aside))
        except OSError as e:
            raise WorkdirError(f"--fresh cannot move {str(path)!r} aside: {e.strerror or e}") from None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create workdir {str(path)!r}: {e.strerror}. Choose another --workdir.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {str(path)!r} is not writable. Choose another --workdir or fix its permissions.")
    for name in ("config.json", "metrics.jsonl", "summary.json", "energy.json"):
        if (path / name).exists() and not (path / name).is_file():
            raise WorkdirError(f"{str(path / name)!r} is not a file; the workdir belongs to something else. "
                               "Use another --workdir.")
    if cfg_file.exists():
        try:
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise WorkdirError(
                f"{str(cfg_file)!r} is unreadable ({e}); the workdir may belong to another run. "
                "Use another --workdir, or --fresh to move its contents aside."
            ) from e
        old_cfg = old.get("config", old) if isinstance(old, dict) else old
        if old_cfg == new:
            return path
        if holds_results(path):
            keys = _diff_keys(old_cfg, new)
            raise WorkdirError(
                f"workdir {str(path)!r} holds a different experiment (config differs in: "
                f"{', '.join(keys[:10]) or 'structure'}). Use another --workdir, or --fresh to move its "
                "contents aside and start over."
            )
        # The earlier run recorded nothing (it failed at once): this one takes the folder over, without
        # the earlier run's energy (its totals would be added to this run's).
        for name in ("energy.json", "metrics.jsonl", "error.log"):
            stale = path / name
            if stale.is_file():
                stale.unlink()
    try:
        write_json(cfg_file, {"config": new, **(extra or {})})
    except OSError as e:
        raise WorkdirError(f"cannot write to workdir {str(path)!r}: {e.strerror}. Choose another --workdir.") from e
    return path
