"""Building any format by name, and converting between formats (host side, outside jit)."""

from __future__ import annotations

from typing import Any

from ._base import AbstractSparseMatrix, Transposed, canonical_csr
from ._csr import COO, CSR
from ._dense import Dense
from ._ell import ELL, SELLP, Hybrid
from ._select import choose_format, row_stats

FORMATS: dict[str, type[AbstractSparseMatrix]] = {
    cls.format_name: cls for cls in (CSR, COO, ELL, SELLP, Hybrid, Dense)
}
DEFAULT_FORMAT = "auto"
# Names for a format with options: "sellp_sorted" is SELL-P with its rows sorted by length (SELL-C-sigma).
FORMAT_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {"sellp_sorted": ("sellp", {"sort_rows": True})}


def _format_class(format: Any) -> tuple[type[AbstractSparseMatrix], dict[str, Any]]:
    if isinstance(format, type) and issubclass(format, AbstractSparseMatrix):
        return format, {}
    name = str(format).lower()
    name, options = FORMAT_ALIASES.get(name, (name, {}))
    try:
        return FORMATS[name], dict(options)
    except KeyError:
        choices = sorted(FORMATS) + sorted(FORMAT_ALIASES) + ["auto"]
        raise ValueError(f"unknown sparse format {format!r}; choose one of {choices}") from None


def from_scipy(S: Any, format: Any = DEFAULT_FORMAT, *, dtype: Any = None, backend: str | None = None,
               **options: Any) -> AbstractSparseMatrix:
    """Builds a ``jaxlab.sparse`` matrix of the named format from a SciPy matrix (outside jit).

    Args:
      S: a ``scipy.sparse`` matrix/array or a 2-D NumPy array.
      format: ``"auto"`` (default: chosen from the row-length statistics and the backend by a measured table,
        :func:`jaxlab.sparse.choose_format`), ``"csr"``, ``"coo"``, ``"ell"``, ``"sellp"``, ``"sellp_sorted"``
        (SELL-P with rows sorted by length), ``"hybrid"``, ``"dense"``, or a format class.
      dtype: value dtype (default: ``S``'s).
      backend: for ``"auto"``: the backend the matrix will run on (default: JAX's default backend).
      **options: passed to the format (``strategy``, ``width``, ``slice_size``, ``stride_factor``,
        ``ell_width``); not allowed with ``"auto"``, whose choice they would not fit.

    Examples:
      >>> import scipy.sparse as sp, jaxlab.sparse as jsparse
      >>> A = jsparse.from_scipy(sp.eye(3, format="csr"), format="sellp")
      >>> type(A).__name__, A.shape
      ('SELLP', (3, 3))
      >>> type(jsparse.from_scipy(jsparse.poisson2d(8), backend="cpu")).__name__  # rows of 3-5 entries
      'Hybrid'
    """
    if isinstance(format, str) and format.lower() == "auto":
        if options:
            raise ValueError(f"format options {sorted(options)} need an explicit format, not 'auto'")
        S = canonical_csr(S, dtype)
        format = choose_format(row_stats(S.indptr), backend)
    cls, preset = _format_class(format)
    return cls.from_scipy(S, dtype=dtype, **{**preset, **options})


def convert(A: AbstractSparseMatrix | Transposed, format: Any, **options: Any) -> AbstractSparseMatrix:
    """Converts a matrix to another format (host side, outside jit), e.g. ``convert(A, "ell")``."""
    if not isinstance(A, (AbstractSparseMatrix, Transposed)):
        raise TypeError(f"convert expects a jaxlab.sparse matrix, got {type(A).__name__}")
    return from_scipy(A.to_scipy(), format, dtype=A.dtype, **options)
