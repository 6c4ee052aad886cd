"""Runs the ``Examples:`` of every public docstring in jaxlab as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import jaxlab

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(jaxlab.__path__, "jaxlab.")
    if not m.name.endswith(("cli", "__main__")) and ".methods." not in m.name  # __main__ runs the command
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
