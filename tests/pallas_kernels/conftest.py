"""These tests compile at backend level 0 (tests/compile_helpers.py; see tests/sparse/conftest.py)."""

from ..compile_helpers import _quick_compiles  # noqa: F401  (an autouse fixture of this package)
