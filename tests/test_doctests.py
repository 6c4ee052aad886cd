"""Runs the ``Examples:`` of every public docstring in jaxlab as doctests.

They compile at XLA's backend level 0 (``jax_disable_most_optimizations``): each example runs its
programs once on toy inputs, so optimising them costs more than it saves; the functions computed,
and the printed values, are the same.
"""

import doctest
import importlib
import pkgutil

import pytest

import jaxlab

from .compile_helpers import quick_compiles  # noqa: F401  (a fixture)

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(jaxlab.__path__, "jaxlab.")
    if not m.name.endswith(("cli", "__main__")) and ".methods." not in m.name  # __main__ runs the command
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, quick_compiles):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
