"""Building any format by name, and converting between formats (host side, outside jit)."""

from __future__ import annotations

from ._base import AbstractSparseMatrix, Transposed
from ._csr import COO, CSR
from ._dense import Dense
from ._ell import ELL, SELLP, Hybrid

FORMATS: dict[str, type[AbstractSparseMatrix]] = {
    cls.format_name: cls for cls in (CSR, COO, ELL, SELLP, Hybrid, Dense)
}
DEFAULT_FORMAT = "hybrid"


def _format_class(format) -> type[AbstractSparseMatrix]:
    if isinstance(format, type) and issubclass(format, AbstractSparseMatrix):
        return format
    try:
        return FORMATS[str(format).lower()]
    except KeyError:
        raise ValueError(f"unknown sparse format {format!r}; choose one of {sorted(FORMATS)}") from None


def from_scipy(S, format=DEFAULT_FORMAT, *, dtype=None, **options) -> AbstractSparseMatrix:
    """Builds a ``jaxlab.sparse`` matrix of the named format from a SciPy matrix (outside jit).

    Args:
      S: a ``scipy.sparse`` matrix/array or a 2-D NumPy array.
      format: ``"hybrid"`` (default: ELL + COO split from the row lengths, the fastest general
        choice we measured on CPU), ``"csr"``, ``"coo"``, ``"ell"``, ``"sellp"``, ``"dense"``,
        or a format class.
      dtype: value dtype (default: ``S``'s).
      **options: passed to the format (``strategy``, ``width``, ``slice_size``, ``stride_factor``,
        ``ell_width``).

    Examples:
      >>> import scipy.sparse as sp, jaxlab.sparse as jsparse
      >>> A = jsparse.from_scipy(sp.eye(3, format="csr"), format="sellp")
      >>> type(A).__name__, A.shape
      ('SELLP', (3, 3))
    """
    return _format_class(format).from_scipy(S, dtype=dtype, **options)


def convert(A, format, **options) -> AbstractSparseMatrix:
    """Converts a matrix to another format (host side, outside jit), e.g. ``convert(A, "ell")``."""
    if isinstance(A, Transposed):
        A = A.matrix.__class__.from_scipy(A.to_scipy())
    if not isinstance(A, AbstractSparseMatrix):
        raise TypeError(f"convert expects a jaxlab.sparse matrix, got {type(A).__name__}")
    return from_scipy(A.to_scipy(), format, dtype=A.dtype, **options)
