"""Where the source checkout's configs/ and scripts/ folders are."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The folder holding configs/ and scripts/: ``$JAXLAB_ROOT`` or the checkout this package is in."""
    env = os.environ.get("JAXLAB_ROOT")
    return Path(env) if env else Path(__file__).resolve().parent.parent


def configs_dir() -> Path:
    path = repo_root() / "configs"
    if not path.is_dir():
        raise FileNotFoundError(
            f"no configs folder at {str(path)!r}: install jaxlab from a source checkout with "
            "`pip install -e .`, or set JAXLAB_ROOT to the checkout"
        )
    return path


def scripts_dir() -> Path:
    path = repo_root() / "scripts"
    if not path.is_dir():
        raise FileNotFoundError(
            f"no scripts folder at {str(path)!r}: benchmarks need a source checkout "
            "(`pip install -e .`), or set JAXLAB_ROOT to it"
        )
    return path
