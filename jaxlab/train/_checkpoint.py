"""Orbax checkpoints of a TrainState, with errors that name the broken file instead of silent restarts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read; the message names it and says how to start fresh."""


def _quiet_orbax() -> None:
    for name in ("absl", "orbax", "orbax.checkpoint"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Checkpointer:
    """Saves and restores a pytree state every N steps in ``directory``, keeping the last ``keep``.

    Saving is asynchronous (the step loop goes on); a save interrupted by a kill leaves only a temporary
    folder, which orbax ignores, so the previous checkpoint stays usable.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 checkpoint, got {keep}")
        _quiet_orbax()
        self.directory = Path(directory).resolve()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, step: int, like: Any) -> Any:
        """Restores checkpoint ``step`` into the structure, dtypes and shardings of ``like``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        path = self.directory / str(step)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # orbax raises many types for truncated or foreign files
            raise CheckpointError(
                f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: {str(e)[:300]}). It may be "
                "truncated or corrupt, or written by a different model. Delete that folder to resume from an "
                "earlier checkpoint, or rerun with --fresh to move the old checkpoints aside and start over."
            ) from e

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
