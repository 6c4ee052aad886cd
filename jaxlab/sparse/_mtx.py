"""Matrix Market I/O: coordinate (real, integer, pattern) and array formats, with the general,
symmetric and skew-symmetric symmetries. Errors name the file, the line and the problem."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ._base import AbstractSparseMatrix, Transposed

_FORMATS = ("coordinate", "array")
_FIELDS = ("real", "integer", "pattern")
_SYMMETRIES = ("general", "symmetric", "skew-symmetric")


class MatrixMarketError(ValueError):
    """A malformed Matrix Market file; the message reads ``FILE:LINE: problem``."""


def _err(path, line, problem) -> MatrixMarketError:
    return MatrixMarketError(f"{path}:{line}: {problem}")


def _parse_header(path, lines):
    if not lines:
        raise _err(path, 1, "empty file; expected a '%%MatrixMarket matrix ...' header")
    head = lines[0].split()
    if len(head) != 5 or head[0].lower() != "%%matrixmarket" or head[1].lower() != "matrix":
        raise _err(path, 1, f"bad header {lines[0].strip()!r}; expected '%%MatrixMarket matrix "
                            "<coordinate|array> <real|integer|pattern> <general|symmetric|"
                            "skew-symmetric>'")
    fmt, field, sym = (h.lower() for h in head[2:])
    if fmt not in _FORMATS:
        raise _err(path, 1, f"unsupported format {fmt!r}; expected one of {_FORMATS}")
    if field not in _FIELDS:
        raise _err(path, 1, f"unsupported field {field!r}; expected one of real, integer, pattern")
    if sym not in _SYMMETRIES:
        raise _err(path, 1, f"unsupported symmetry {sym!r}; expected one of {_SYMMETRIES}")
    if fmt == "array" and field == "pattern":
        raise _err(path, 1, "the array format cannot have the pattern field")
    return fmt, field, sym


def _data_lines(lines):
    """(line number, stripped text) of every line after the header that is not a comment/blank."""
    out = []
    for no, text in enumerate(lines[1:], start=2):
        t = text.strip()
        if t and not t.startswith("%"):
            out.append((no, t))
    return out


def _numbers(path, no, parts, kinds):
    vals = []
    for p, kind in zip(parts, kinds):
        try:
            vals.append(int(p) if kind == "i" else float(p))
        except ValueError:
            what = "an integer index" if kind == "i" else "a number"
            raise _err(path, no, f"expected {what}, got {p!r}") from None
    return vals


def _parse_body(path, fmt, field, sym, body, last_line):
    if not body:
        raise _err(path, last_line + 1, "truncated file: missing the size line")
    size_no, size_text = body[0]
    parts = size_text.split()
    want = 3 if fmt == "coordinate" else 2
    if len(parts) != want:
        raise _err(path, size_no, f"size line must hold {want} integers "
                                  f"({'rows cols entries' if want == 3 else 'rows cols'}), "
                                  f"got {size_text!r}")
    sizes = _numbers(path, size_no, parts, "iii")
    if min(sizes) < 0:
        raise _err(path, size_no, f"negative size in {size_text!r}")
    m, n = sizes[0], sizes[1]
    entries = body[1:]
    if fmt == "coordinate":
        count = sizes[2]
        per = 2 if field == "pattern" else 3
    else:
        per = 1
        if sym == "general":
            count = m * n
        elif sym == "symmetric":
            count = n * (n + 1) // 2
        else:
            count = n * (n - 1) // 2
    if fmt == "array" and sym != "general" and m != n:
        raise _err(path, size_no, f"a {sym} matrix must be square, got {m} x {n}")
    if len(entries) < count:
        at = entries[-1][0] + 1 if entries else size_no + 1
        raise _err(path, max(at, last_line), f"truncated file: expected {count} entries, found "
                                             f"{len(entries)}")
    if len(entries) > count:
        raise _err(path, entries[count][0], f"wrong entry count: the size line announces {count} "
                                            f"entries but this line holds entry {count + 1}")
    kinds = ("ii" if fmt == "coordinate" else "") + ("" if field == "pattern" else
                                                     ("i" if field == "integer" else "f"))
    # Fast path: one vectorised conversion; on any failure, scan line by line for the culprit.
    tokens = " ".join(t for _, t in entries).split()
    table = None
    if len(tokens) == per * count:
        try:
            table = np.array(tokens, dtype=np.float64).reshape(count, per) if count else \
                np.zeros((0, per))
        except ValueError:
            table = None
    if table is None:
        for no, t in entries:
            ps = t.split()
            if len(ps) != per:
                raise _err(path, no, f"expected {per} fields per entry, got {len(ps)}: {t!r}")
            _numbers(path, no, ps, kinds)
        raise _err(path, entries[0][0], "could not parse the entries")  # pragma: no cover
    if field == "integer" or fmt == "coordinate":
        ints = table[:, :2] if fmt == "coordinate" else table[:, :0]
        check = table if field == "integer" else ints
        bad = np.nonzero(check != np.round(check))[0]
        if bad.size:
            no, t = entries[bad[0]]
            raise _err(path, no, f"expected integers, got {t!r}")
    if fmt == "array":
        values = table[:, 0]
        dense = np.zeros((m, n))
        if sym == "general":
            dense[:] = values.reshape(n, m).T
        else:
            cols, rows = np.nonzero(np.tril(np.ones((n, n), bool), 0 if sym == "symmetric" else -1).T)
            dense[rows, cols] = values
            dense[cols, rows] = values if sym == "symmetric" else -values
        return sp.csr_matrix(dense), field
    rows = table[:, 0].astype(np.int64) - 1
    cols = table[:, 1].astype(np.int64) - 1
    vals = np.ones(count) if field == "pattern" else table[:, 2]
    bad = np.nonzero((rows < 0) | (rows >= m) | (cols < 0) | (cols >= n))[0]
    if bad.size:
        no, t = entries[bad[0]]
        raise _err(path, no, f"index out of range in {t!r}: the matrix is {m} x {n} (indices are "
                             "1-based)")
    if sym != "general":
        if m != n:
            raise _err(path, size_no, f"a {sym} matrix must be square, got {m} x {n}")
        upper = np.nonzero(cols > rows)[0]
        if upper.size:
            no, t = entries[upper[0]]
            raise _err(path, no, f"entry {t!r} lies above the diagonal; a {sym} file stores the "
                                 "lower triangle only")
        diag = rows == cols
        if sym == "skew-symmetric" and diag.any():
            no, t = entries[np.nonzero(diag)[0][0]]
            raise _err(path, no, f"entry {t!r} lies on the diagonal of a skew-symmetric matrix")
        off = ~diag
        sign = 1.0 if sym == "symmetric" else -1.0
        rows, cols, vals = (np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]]),
                            np.concatenate([vals, sign * vals[off]]))
    return sp.csr_matrix((vals, (rows, cols)), shape=(m, n)), field


def read_mtx_scipy(path: str | os.PathLike) -> sp.csr_matrix:
    """Reads a Matrix Market file into a SciPy CSR matrix (float64 values; duplicates summed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise MatrixMarketError(f"{path}: cannot read the file ({e.strerror})") from None
    lines = text.splitlines()
    fmt, field, sym = _parse_header(path, lines)
    S, _ = _parse_body(path, fmt, field, sym, _data_lines(lines), len(lines))
    S.sort_indices()
    return S


def read_mtx(path: str | os.PathLike, format: str = "csr", dtype=None, **options):
    """Reads a Matrix Market file into a ``jaxlab.sparse`` matrix (outside jit).

    Args:
      path: the ``.mtx`` file.
      format: the format to build (``"csr"``, ``"coo"``, ``"ell"``, ``"sellp"``, ``"hybrid"``,
        ``"dense"``).
      dtype: value dtype (default float64 if x64 is enabled, else float32).
      **options: format options (see :func:`jaxlab.sparse.from_scipy`).

    Raises:
      MatrixMarketError: a malformed file; the message names the file, the line and the problem.
    """
    import jax

    from ._convert import from_scipy

    if dtype is None:
        dtype = np.float64 if jax.config.read("jax_enable_x64") else np.float32
    return from_scipy(read_mtx_scipy(path), format, dtype=dtype, **options)


def _fmt_value(v, kind):
    return str(int(v)) if kind == "integer" else repr(float(v))


def write_mtx(path: str | os.PathLike, A, *, field: str | None = None, symmetry: str = "general",
              comment: str = "") -> Path:
    """Writes a matrix as Matrix Market.

    Args:
      path: the file to write.
      A: a ``jaxlab.sparse`` matrix, a SciPy sparse matrix or a 2-D array. ``Dense`` matrices and
        arrays are written in the array format, the rest in the coordinate format.
      field: ``"real"``, ``"integer"`` or ``"pattern"`` (default: integer for integer dtypes,
        else real).
      symmetry: ``"general"``, ``"symmetric"`` or ``"skew-symmetric"`` (only the lower triangle is
        written; the matrix must have that symmetry).
      comment: text written as ``%`` comment lines after the header.

    Returns:
      The path written.
    """
    from ._dense import Dense

    path = Path(path)
    if symmetry not in _SYMMETRIES:
        raise ValueError(f"unknown symmetry {symmetry!r}; choose one of {_SYMMETRIES}")
    array = isinstance(A, Dense) or (not sp.issparse(A) and not isinstance(
        A, (AbstractSparseMatrix, Transposed)))
    if isinstance(A, (AbstractSparseMatrix, Transposed)):
        S = A.to_scipy()
    elif sp.issparse(A):
        S = sp.csr_matrix(A)
    else:
        dense = np.asarray(A)
        if dense.ndim != 2:
            raise ValueError(f"write_mtx needs a 2-D matrix, got shape {dense.shape}")
        S = sp.csr_matrix(dense)
    if field is None:
        field = "integer" if S.dtype.kind in "iub" else "real"
    if field not in ("real", "integer", "pattern"):
        raise ValueError(f"unknown field {field!r}; choose real, integer or pattern")
    if array and field == "pattern":
        array = False
    m, n = S.shape
    if symmetry != "general":
        sign = 1 if symmetry == "symmetric" else -1
        if m != n or (S.nnz and abs(S - sign * S.T).max() != 0):
            raise ValueError(f"write_mtx(symmetry={symmetry!r}): the matrix is not {symmetry}")
    head = [f"%%MatrixMarket matrix {'array' if array else 'coordinate'} {field} {symmetry}"]
    head += [f"% {c}" for c in comment.splitlines()]
    out = []
    if array:
        dense = S.toarray()
        out.append(f"{m} {n}")
        if symmetry == "general":
            vals = dense.T.reshape(-1)
        else:
            cols, rows = np.nonzero(np.tril(np.ones((n, n), bool), 0 if symmetry == "symmetric"
                                            else -1).T)
            vals = dense[rows, cols]
        out += [_fmt_value(v, field) for v in vals]
    else:
        C = S.tocoo()
        r, c, v = C.row, C.col, C.data
        if symmetry != "general":
            keep = (r > c) if symmetry == "skew-symmetric" else (r >= c)
            r, c, v = r[keep], c[keep], v[keep]
        order = np.lexsort((r, c))
        r, c, v = r[order], c[order], v[order]
        out.append(f"{m} {n} {len(r)}")
        if field == "pattern":
            out += [f"{i + 1} {j + 1}" for i, j in zip(r, c)]
        else:
            out += [f"{i + 1} {j + 1} {_fmt_value(x, field)}" for i, j, x in zip(r, c, v)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head + out) + "\n", encoding="utf-8")
    return path
