"""Matrix Market I/O through ``scipy.io`` (coordinate and array; real, integer, complex, pattern; general,
symmetric, skew-symmetric, hermitian; plain or gzip-compressed), with errors that name the file and line.

Reading is ``scipy.io.mmread`` (SciPy's C++ fast_matrix_market reader: about 20x faster and 15x leaner than
the line-by-line parser of the first version). Only when SciPy refuses a file is the file scanned line by line,
to say which line is wrong and why (SciPy's messages do not always name a line, and never the file); a file
SciPy accepts is read as SciPy reads it (e.g. an entry above the diagonal of a symmetric file is mirrored).
"""

from __future__ import annotations

import gzip
import inspect
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from ._base import AbstractSparseMatrix, Transposed

_FORMATS = ("coordinate", "array")
_FIELDS = ("real", "integer", "complex", "pattern")
_SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")


class MatrixMarketError(ValueError):
    """A malformed or unreadable Matrix Market file; the message reads ``FILE:LINE: problem``."""


def _err(path, line, problem) -> MatrixMarketError:
    return MatrixMarketError(f"{path}:{line}: {problem}")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _open_text(path: Path):
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8", errors="replace")


# -- the scanner: runs only after SciPy refused the file, to find the line ---------------------------------------

def _parse_header(path, line):
    head = line.split()
    if len(head) != 5 or head[0].lower() != "%%matrixmarket" or head[1].lower() != "matrix":
        raise _err(path, 1, f"bad header {line.strip()!r}; expected '%%MatrixMarket matrix <coordinate|array> "
                            "<real|integer|complex|pattern> <general|symmetric|skew-symmetric|hermitian>'")
    fmt, field, sym = (h.lower() for h in head[2:])
    if fmt not in _FORMATS:
        raise _err(path, 1, f"unsupported format {fmt!r}; expected one of {_FORMATS}")
    if field not in _FIELDS:
        raise _err(path, 1, f"unsupported field {field!r}; expected one of {_FIELDS}")
    if sym not in _SYMMETRIES:
        raise _err(path, 1, f"unsupported symmetry {sym!r}; expected one of {_SYMMETRIES}")
    if fmt == "array" and field == "pattern":
        raise _err(path, 1, "the array format cannot have the pattern field")
    if sym == "hermitian" and field != "complex":
        raise _err(path, 1, "the hermitian symmetry needs the complex field")
    return fmt, field, sym


def _numbers(path, no, parts, kinds):
    for p, kind in zip(parts, kinds):
        try:
            int(p) if kind == "i" else float(p)
        except ValueError:
            what = "an integer index" if kind == "i" else "a number"
            raise _err(path, no, f"expected {what}, got {p!r}") from None


def _scan(path: Path) -> None:
    """Raises a :class:`MatrixMarketError` naming the first malformed line; returns if none is found."""
    with _open_text(path) as f:
        lines = f.read().splitlines()
    if not lines:
        raise _err(path, 1, "empty file; expected a '%%MatrixMarket matrix ...' header")
    fmt, field, sym = _parse_header(path, lines[0])
    body = [(no, t.strip()) for no, t in enumerate(lines[1:], start=2) if t.strip() and not t.strip().startswith("%")]
    if not body:
        raise _err(path, len(lines) + 1, "truncated file: missing the size line")
    size_no, size_text = body[0]
    want = 3 if fmt == "coordinate" else 2
    parts = size_text.split()
    if len(parts) != want:
        raise _err(path, size_no, f"size line must hold {want} integers "
                                  f"({'rows cols entries' if want == 3 else 'rows cols'}), got {size_text!r}")
    _numbers(path, size_no, parts, "iii")
    sizes = [int(p) for p in parts]
    if min(sizes) < 0:
        raise _err(path, size_no, f"negative size in {size_text!r}")
    m, n = sizes[0], sizes[1]
    if sym != "general" and m != n:
        raise _err(path, size_no, f"a {sym} matrix must be square, got {m} x {n}")
    entries = body[1:]
    values = {"pattern": "", "integer": "i", "real": "f", "complex": "ff"}[field]
    if fmt == "coordinate":
        count, kinds = sizes[2], "ii" + values
    else:
        count = m * n if sym == "general" else (n * (n + 1) // 2 if sym in ("symmetric", "hermitian")
                                                 else n * (n - 1) // 2)
        kinds = values
    if len(entries) < count:
        at = entries[-1][0] + 1 if entries else size_no + 1
        raise _err(path, at, f"truncated file: expected {count} entries, found {len(entries)}")
    if len(entries) > count:
        raise _err(path, entries[count][0], f"wrong entry count: the size line announces {count} entries but "
                                            f"this line holds entry {count + 1}")
    for no, t in entries:
        ps = t.split()
        if len(ps) != len(kinds):
            raise _err(path, no, f"expected {len(kinds)} fields per entry, got {len(ps)}: {t!r}")
        _numbers(path, no, ps, kinds)
        if fmt == "coordinate":
            i, j = int(ps[0]), int(ps[1])
            if not (1 <= i <= m and 1 <= j <= n):
                raise _err(path, no, f"index out of range in {t!r}: the matrix is {m} x {n} (indices are 1-based)")


def _empty_array(path: Path) -> sp.csr_matrix | None:
    """The ``0 x n`` matrix of an array-format file with no rows, else None (reads only the header and the size line).

    SciPy 1.17's reader divides by the row count of an array-format file, so such a file kills the process with
    SIGFPE instead of raising; it is answered here without calling SciPy.
    """
    try:
        with _open_text(path) as f:
            head = f.readline().split()
            if len(head) != 5 or head[2].lower() != "array":
                return None
            for line in f:
                t = line.strip()
                if t and not t.startswith("%"):
                    parts = t.split()
                    if len(parts) == 2 and parts[0] == "0" and parts[1].isdigit():
                        dtype = np.complex128 if head[3].lower() == "complex" else np.float64
                        return sp.csr_matrix((0, int(parts[1])), dtype=dtype)
                    return None
    except (OSError, UnicodeError, EOFError):
        return None
    return None


def _byte_check(path: Path, chunk: int = 1 << 22) -> tuple[int | None, bool]:
    """``(line of the first NUL byte or None, whether the file ends with a newline)``, from one pass over the bytes.

    SciPy 1.17's reader (fast_matrix_market) crashes the process with a segmentation fault on a NUL byte in
    a value, and on a last line with anything after its value when the file does not end with a newline
    (``1 3 0.5 `` or ``1 3 0 5`` at the very end). Both were found by the CLI's fuzz test. The pass costs
    ``bytes.find`` (memchr speed, a small part of the parse), in 4 MiB chunks so that large files are never
    held whole. An unreadable file gives ``(None, True)``: SciPy's own error (and the scanner's) name it.
    """
    lines, last = 1, b"\n"
    try:
        with _open_binary(path) as f:
            while block := f.read(chunk):
                i = block.find(b"\0")
                if i >= 0:
                    return lines + block.count(b"\n", 0, i), True
                lines += block.count(b"\n")
                last = block[-1:]
    except (OSError, EOFError):
        return None, True
    return None, last == b"\n"


class _NewlineAtEnd(io.RawIOBase):
    """A binary file read as if it ended with one more newline (for SciPy's reader, see :func:`_byte_check`)."""

    def __init__(self, f):
        self._f, self._added = f, False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            return n
        if not self._added and len(b):
            self._added = True
            b[0:1] = b"\n"
            return 1
        return 0


def _scipy_line(message: str) -> int:
    match = re.search(r"[Ll]ine (\d+)", message)
    return int(match.group(1)) if match else 1


# SciPy 1.18 warns that mmread's default result turns from sparse matrices to sparse arrays in 1.20. Where
# mmread has the ``spmatrix`` keyword, ask for matrices, so that read_mtx_scipy's type does not follow
# SciPy's default; older SciPy (the project allows 1.13) returns matrices and lacks the keyword.
_MMREAD_TAKES_SPMATRIX = "spmatrix" in inspect.signature(scipy.io.mmread).parameters


def _mmread(source: Any) -> Any:
    return scipy.io.mmread(source, spmatrix=True) if _MMREAD_TAKES_SPMATRIX else scipy.io.mmread(source)


def read_mtx_scipy(path: str | os.PathLike) -> sp.csr_matrix:
    """Reads a Matrix Market file (``.mtx`` or ``.mtx.gz``) into a SciPy CSR matrix.

    Values are float64 (real, integer and pattern files) or complex128 (complex and hermitian files);
    duplicates are summed and column indices sorted.

    Raises:
      MatrixMarketError: an unreadable or malformed file; the message reads ``FILE:LINE: problem``.
    """
    path = Path(path)
    if not path.is_file():
        raise MatrixMarketError(f"{path}: cannot read the file (no such file)")
    empty = _empty_array(path)
    if empty is not None:
        return empty
    nul, newline_at_end = _byte_check(path)
    if nul is not None:
        if nul == 1:
            _scan(path)  # a binary file: its header is the first thing wrong, named as for any bad header
        raise _err(path, nul, "a NUL byte: Matrix Market files are text (is this a binary or corrupted file?)")
    try:
        if newline_at_end:
            M: Any = _mmread(path)
        else:
            with _open_binary(path) as raw:
                M = _mmread(io.BufferedReader(_NewlineAtEnd(raw)))
    except Exception as e:  # noqa: BLE001  (SciPy raises ValueError, OSError, EOFError, ... for bad files)
        try:
            _scan(path)
        except OSError as oe:
            raise MatrixMarketError(f"{path}: cannot read the file ({oe})") from e
        raise MatrixMarketError(f"{path}:{_scipy_line(str(e))}: {e}") from e
    S: Any = M.tocsr() if sp.issparse(M) else sp.csr_matrix(M)
    del M
    if S.dtype.kind not in "fc":
        S = S.astype(np.float64)
    elif S.dtype not in (np.float64, np.complex128):
        S = S.astype(np.complex128 if S.dtype.kind == "c" else np.float64)
    S.sum_duplicates()
    S.sort_indices()
    return S


def read_mtx(path: str | os.PathLike, format: str = "csr", dtype: Any = None, **options: Any):
    """Reads a Matrix Market file into a ``jaxlab.sparse`` matrix (outside jit).

    Args:
      path: the ``.mtx`` or ``.mtx.gz`` file.
      format: the format to build (``"csr"``, ``"coo"``, ``"ell"``, ``"sellp"``, ``"hybrid"``, ``"dense"``,
        ``"auto"``).
      dtype: value dtype (default: float64 if x64 is enabled, else float32; complex128/complex64 for complex
        files).
      **options: format options (see :func:`jaxlab.sparse.from_scipy`).

    Raises:
      MatrixMarketError: a malformed file; the message names the file, the line and the problem.
    """
    import jax

    from ._convert import from_scipy

    S = read_mtx_scipy(path)
    if dtype is None:
        wide = jax.config.read("jax_enable_x64")
        if S.dtype.kind == "c":
            dtype = np.complex128 if wide else np.complex64
        else:
            dtype = np.float64 if wide else np.float32
    return from_scipy(S, format, dtype=dtype, **options)


def write_mtx(path: str | os.PathLike, A: Any, *, field: str | None = None, symmetry: str = "general",
              comment: str = "") -> Path:
    """Writes a matrix as Matrix Market through ``scipy.io.mmwrite`` (gzip-compressed if ``path`` ends in ``.gz``).

    Args:
      path: the file to write.
      A: a ``jaxlab.sparse`` matrix, a SciPy sparse matrix or a 2-D array. ``Dense`` matrices and arrays are
        written in the array format, the rest in the coordinate format.
      field: ``"real"``, ``"integer"``, ``"complex"`` or ``"pattern"`` (default: from the dtype).
      symmetry: ``"general"``, ``"symmetric"``, ``"skew-symmetric"`` or ``"hermitian"`` (only the lower triangle
        is written; the matrix must have that symmetry).
      comment: text written as ``%`` comment lines after the header.

    Returns:
      The path written.

    Raises:
      ValueError: an unknown field or symmetry, a matrix that does not have the symmetry, or not 2-D.
    """
    from ._dense import Dense

    path = Path(path)
    if symmetry not in _SYMMETRIES:
        raise ValueError(f"unknown symmetry {symmetry!r}; choose one of {_SYMMETRIES}")
    if field is not None and field not in _FIELDS:
        raise ValueError(f"unknown field {field!r}; choose one of {_FIELDS}")
    if isinstance(A, Dense):
        M: Any = np.asarray(A.todense())
    elif isinstance(A, (AbstractSparseMatrix, Transposed)):
        M = A.to_scipy()
    elif sp.issparse(A):
        M = sp.coo_matrix(A)
    else:
        M = np.asarray(A)
        if M.ndim != 2:
            raise ValueError(f"write_mtx needs a 2-D matrix, got shape {M.shape}")
    if symmetry != "general":
        m, n = M.shape
        S = sp.csr_matrix(M)
        other = {"symmetric": S.T, "skew-symmetric": -S.T, "hermitian": S.conj().T}[symmetry]
        if m != n or (S.nnz and abs(S - other).max() != 0):
            raise ValueError(f"write_mtx(symmetry={symmetry!r}): the matrix is not {symmetry}")
    if field == "pattern" and not sp.issparse(M):
        M = sp.coo_matrix(M)  # the array format has no pattern field
    path.parent.mkdir(parents=True, exist_ok=True)
    target: Any = gzip.open(path, "wb") if path.suffix == ".gz" else path
    try:
        scipy.io.mmwrite(target, M, comment=comment, field=field, symmetry=symmetry)  # type: ignore[arg-type]
    finally:
        if target is not path:
            target.close()
    return path
