"""Matrix Market I/O: round trips (hypothesis), agreement with scipy.io.mmread (gz, complex, hermitian), and
errors that name file, line and problem."""

import gzip
import inspect

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlab.sparse as jsparse
from jaxlab.sparse import MatrixMarketError

# SciPy 1.18 warns that mmread's default result becomes a sparse array in 1.20: the references ask for
# matrices where mmread takes the keyword (older SciPy returns matrices and lacks it).
MMREAD_MATRIX = {"spmatrix": True} if "spmatrix" in inspect.signature(scipy.io.mmread).parameters else {}


@st.composite
def small_matrices(draw):
    m = draw(st.integers(0, 6))
    n = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**16))
    density = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((m, n)) < density, rng.standard_normal((m, n)), 0.0)
    return dense


@settings(max_examples=25, deadline=None)
@given(dense=small_matrices(), kind=st.sampled_from(["coordinate", "array", "integer"]))
def test_write_read_roundtrip(tmp_path_factory, dense, kind):
    path = tmp_path_factory.mktemp("mtx") / "a.mtx"
    if kind == "integer":
        dense = np.round(dense * 10)
        jsparse.write_mtx(path, sp.csr_matrix(dense.astype(np.int64)))
    elif kind == "array":
        jsparse.write_mtx(path, dense)
    else:
        jsparse.write_mtx(path, sp.csr_matrix(dense))
    back = jsparse.read_mtx_scipy(path).toarray()
    np.testing.assert_array_equal(back, dense)


@settings(max_examples=15, deadline=None)
@given(dense=small_matrices(), sym=st.sampled_from(["symmetric", "skew-symmetric"]),
       array=st.booleans())
def test_symmetric_roundtrip(tmp_path_factory, dense, sym, array):
    k = min(dense.shape)
    dense = dense[:k, :k]
    dense = dense + dense.T if sym == "symmetric" else dense - dense.T
    path = tmp_path_factory.mktemp("mtx") / "s.mtx"
    jsparse.write_mtx(path, dense if array else sp.csr_matrix(dense), symmetry=sym)
    np.testing.assert_array_equal(jsparse.read_mtx_scipy(path).toarray(), dense)


def test_read_mtx_formats_and_pattern(tmp_path):
    path = tmp_path / "p.mtx"
    path.write_text("%%MatrixMarket matrix coordinate pattern general\n% a comment\n3 3 2\n1 1\n3 2\n")
    A = jsparse.read_mtx(path, format="ell")
    assert isinstance(A, jsparse.ELL)
    np.testing.assert_array_equal(np.asarray(A.todense()), [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    B = jsparse.read_mtx(path, format="csr", dtype=np.float32)
    assert B.dtype == np.float32


def test_write_jaxlab_matrix(tmp_path):
    S = jsparse.poisson2d(3)
    for fmt in ("csr", "sellp", "dense"):
        path = tmp_path / f"{fmt}.mtx"
        jsparse.write_mtx(path, jsparse.from_scipy(S, fmt))
        np.testing.assert_array_equal(jsparse.read_mtx_scipy(path).toarray(), S.toarray())
    with pytest.raises(ValueError, match="not symmetric"):
        jsparse.write_mtx(tmp_path / "x.mtx", sp.csr_matrix(np.triu(np.ones((3, 3)))),
                          symmetry="symmetric")


BAD = {
    "bad header": ("%%MatrixMarket tensor coordinate real general\n1 1 1\n1 1 1\n", 1, "bad header"),
    "bad field": ("%%MatrixMarket matrix coordinate quaternion general\n1 1 1\n1 1 1 0 0 0\n", 1,
                  "unsupported field"),
    "too few": ("%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 1.0\n2 2 1.0\n", 5,
                "truncated file"),
    "too many": ("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 1.0\n2 2 1.0\n", 4,
                 "wrong entry count"),
    "out of range": ("%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.0\n3 1 2.0\n", 4,
                     "index out of range"),
    "zero index": ("%%MatrixMarket matrix coordinate real general\n2 2 1\n0 1 1.0\n", 3,
                   "index out of range"),
    "non numeric": ("%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.0\n2 2 abc\n", 4,
                    "expected a number"),
    "missing value": ("%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.0\n2 2\n", 4,
                      "fields per entry"),
    "bad size": ("%%MatrixMarket matrix coordinate real general\n2 x 2\n1 1 1.0\n", 2,
                 "expected an integer"),
    "no size line": ("%%MatrixMarket matrix array real general\n% only comments\n", 3,
                     "missing the size line"),
    "array truncated": ("%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n", 6,
                        "truncated file"),
    "negative size": ("%%MatrixMarket matrix coordinate real general\n-2 2 1\n1 1 1.5\n", 2, "negative size"),
    "empty": ("", 1, "empty file"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_files_name_file_line_problem(tmp_path, name):
    text, line, problem = BAD[name]
    path = tmp_path / "bad.mtx"
    path.write_text(text)
    with pytest.raises(MatrixMarketError) as info:
        jsparse.read_mtx_scipy(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert problem in msg, msg


def test_complex_hermitian_and_gzip_files_read_as_scipy_reads_them(tmp_path):
    text = ("%%MatrixMarket matrix coordinate complex hermitian\n% a comment\n3 3 3\n1 1 2.0 0.0\n"
            "3 1 1.5 -2.0\n3 3 -1.0 0.0\n")
    plain, packed = tmp_path / "h.mtx", tmp_path / "h.mtx.gz"
    plain.write_text(text)
    with gzip.open(packed, "wt") as f:
        f.write(text)
    want = scipy.io.mmread(plain, **MMREAD_MATRIX).toarray()
    assert want[0, 2] == 1.5 + 2.0j  # the mirrored entry is conjugated
    for path in (plain, packed):
        S = jsparse.read_mtx_scipy(path)
        assert S.dtype == np.complex128
        np.testing.assert_array_equal(S.toarray(), want)
    A = jsparse.read_mtx(packed, format="csr")
    assert A.dtype == np.complex128
    out = tmp_path / "w.mtx.gz"
    jsparse.write_mtx(out, A, symmetry="hermitian")
    np.testing.assert_array_equal(jsparse.read_mtx_scipy(out).toarray(), want)
    # An entry above the diagonal of a symmetric file is mirrored, as SciPy does.
    upper = tmp_path / "u.mtx"
    upper.write_text("%%MatrixMarket matrix coordinate real symmetric\n2 2 1\n1 2 1.0\n")
    np.testing.assert_array_equal(jsparse.read_mtx_scipy(upper).toarray(), [[0, 1], [1, 0]])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(MatrixMarketError, match="no such file"):
        jsparse.read_mtx_scipy(tmp_path / "nothing.mtx")


@pytest.mark.parametrize("name", ["n.mtx", "n.mtx.gz"])
def test_a_nul_byte_is_an_error_on_its_line(tmp_path, name):
    # scipy.io.mmread (SciPy 1.17) dies of a segmentation fault on this file (found by the CLI fuzz test); the
    # reader refuses it before SciPy sees it. Small chunks: the line count carries across chunk boundaries.
    body = b"%%MatrixMarket matrix coordinate real general\n% a comment\n3 3 4\n1 1 4.0\n2 2 3.\x00\n3 3 2.0\n1 3 0.5\n"
    path = tmp_path / name
    write = lambda b: path.write_bytes(gzip.compress(b) if name.endswith(".gz") else b)  # noqa: E731
    write(body)
    with pytest.raises(MatrixMarketError, match=rf"{name}:5: a NUL byte"):
        jsparse.read_mtx_scipy(path)
    from jaxlab.sparse._mtx import _byte_check
    assert [_byte_check(path, chunk)[0] for chunk in (1, 7, 1 << 22)] == [5, 5, 5]
    write(body.replace(b"\x00", b"0"))
    assert _byte_check(path, 7) == (None, True) and jsparse.read_mtx_scipy(path).nnz == 4


@pytest.mark.parametrize("name", ["t.mtx", "t.mtx.gz"])
@pytest.mark.parametrize("last", [b"1 3 0.5", b"1 3 0.5 ", b"1 3 0.5 7"])
def test_a_last_line_without_a_newline_reads_as_with_one(tmp_path, name, last):
    # scipy.io.mmread (SciPy 1.17) dies of a segmentation fault when the last line has anything after its value
    # and no newline (found by the CLI fuzz test); such files are read as if they ended with a newline.
    body = b"%%MatrixMarket matrix coordinate real general\n3 3 4\n1 1 4.0\n2 2 3.0\n3 3 2.0\n" + last
    path, with_newline = tmp_path / name, tmp_path / ("n" + name)
    for p, b in ((path, body), (with_newline, body + b"\n")):
        p.write_bytes(gzip.compress(b) if name.endswith(".gz") else b)
    from jaxlab.sparse._mtx import _byte_check
    assert _byte_check(path, 5) == (None, False) and _byte_check(with_newline, 5) == (None, True)
    got, want = jsparse.read_mtx_scipy(path), jsparse.read_mtx_scipy(with_newline)
    np.testing.assert_array_equal(got.toarray(), want.toarray())
    assert got.toarray()[0, 2] == 0.5


@pytest.mark.parametrize("field", ["real", "integer", "complex"])
def test_array_file_without_rows(tmp_path, field):
    # scipy.io.mmread kills the process (SIGFPE) on these; read_mtx_scipy answers them itself.
    path = tmp_path / "e.mtx"
    path.write_text(f"%%MatrixMarket matrix array {field} general\n% nothing\n0 3\n")
    S = jsparse.read_mtx_scipy(path)
    assert S.shape == (0, 3) and S.nnz == 0
    assert S.dtype == (np.complex128 if field == "complex" else np.float64)


@pytest.mark.parametrize("name", ["t.mtx", "t.mtx.gz"])
def test_the_result_is_a_scipy_csr_matrix_without_a_deprecation_warning(tmp_path, name):
    # SciPy 1.18's mmread warns that its default result becomes a sparse array in 1.20; read_mtx_scipy asks
    # for matrices where mmread takes the keyword, so its result type does not change with SciPy.
    import warnings

    body = b"%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 4.0\n2 1 3.0\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        S = jsparse.read_mtx_scipy(path)
    assert isinstance(S, sp.csr_matrix) and S.toarray().tolist() == [[4.0, 0.0], [3.0, 0.0]]
