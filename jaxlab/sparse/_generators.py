"""Test and benchmark matrices, built exactly as shared/PEERS.md describes (SciPy CSR, host side)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def _tridiag(n: int, lower: float, diag: float, upper: float, dtype: Any) -> sp.csr_matrix:
    offsets: Any = [-1, 0, 1]
    return sp.csr_matrix(sp.diags_array([np.full(n - 1, lower), np.full(n, diag), np.full(n - 1, upper)],
                                        offsets=offsets, shape=(n, n), dtype=dtype))


def poisson2d(n: int, dtype=np.float64) -> sp.csr_matrix:
    """5-point Laplacian on an ``n x n`` grid: ``kron(I, T) + kron(S, I)``.

    ``T = tridiag(-1, 4, -1)`` and ``S = tridiag(-1, 0, -1)``; shape ``(n^2, n^2)``.

    Examples:
      >>> poisson2d(3).shape, poisson2d(3).nnz
      ((9, 9), 33)
    """
    eye = sp.identity(n, dtype=np.dtype(dtype).name, format="csr")
    A = sp.kron(eye, _tridiag(n, -1, 4, -1, dtype)) + sp.kron(_tridiag(n, -1, 0, -1, dtype), eye)
    A = sp.csr_matrix(A)
    A.eliminate_zeros()
    A.sort_indices()
    return A


def poisson3d(n: int, dtype=np.float64) -> sp.csr_matrix:
    """7-point Laplacian on ``n^3``: the sum of three ``kron`` terms of ``tridiag(-1, 2, -1)``."""
    eye = sp.identity(n, dtype=np.dtype(dtype).name, format="csr")
    T = _tridiag(n, -1, 2, -1, dtype)
    A = (sp.kron(sp.kron(eye, eye), T) + sp.kron(sp.kron(eye, T), eye)
         + sp.kron(sp.kron(T, eye), eye))
    A = sp.csr_matrix(A)
    A.sum_duplicates()
    A.eliminate_zeros()
    A.sort_indices()
    return A


def _rows_to_csr(lengths, n_cols, rng, dtype) -> sp.csr_matrix:
    lengths = np.asarray(lengths, np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    cols = rng.integers(0, n_cols, size=int(indptr[-1]), dtype=np.int64)
    vals = rng.standard_normal(int(indptr[-1])).astype(dtype)
    A = sp.csr_matrix((vals, cols.astype(np.int32), indptr), shape=(len(lengths), n_cols))
    A.sum_duplicates()  # also sorts the columns of each row
    return A


def random_rows(n: int, per_row: int = 8, *, seed: int = 0, dtype=np.float64) -> sp.csr_matrix:
    """``n x n`` with ``per_row`` uniformly random columns in every row and N(0, 1) values.

    ``random_1M_r8`` of PEERS.md is ``random_rows(1_000_000, 8, seed=0)``. Repeated columns in a
    row are summed (a row may then hold fewer entries).
    """
    rng = np.random.default_rng(seed)
    return _rows_to_csr(np.full(n, per_row), n, rng, dtype)


def powerlaw_rows(n: int, mean: float = 16.0, *, exponent: float = 1.8, cap: int = 2000,
                  seed: int = 0, dtype=np.float64) -> sp.csr_matrix:
    """``n x n`` with Zipf(``exponent``) row lengths capped at ``cap``, rescaled to ``mean``.

    ``powerlaw_2M_d16`` of PEERS.md is ``powerlaw_rows(2_000_000, 16, seed=0)``. Columns are
    uniformly random, values N(0, 1).
    """
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.zipf(exponent, size=n), cap).astype(np.float64)
    lengths = np.maximum(1, np.rint(lengths * (mean / lengths.mean()))).astype(np.int64)
    return _rows_to_csr(np.minimum(lengths, n), n, rng, dtype)


def mesh_laplacian(points: int, dim: int = 2, *, seed: int = 0, dtype=np.float64) -> sp.csr_matrix:
    """FEM-like matrix: the graph Laplacian plus identity of a Delaunay mesh of random points (SPD).

    ``dim=2`` gives triangle meshes (rows of 4-15 entries, mean 7), ``dim=3`` tetrahedral meshes (rows of
    about 5-40 entries, mean 15): the moderately irregular rows of unstructured finite elements, between the
    stencils and the power-law matrices. Built with ``scipy.spatial.Delaunay`` (qhull).
    """
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    simplices = Delaunay(rng.random((points, dim))).simplices
    k = simplices.shape[1]
    i = np.repeat(simplices, k, axis=1).reshape(-1)
    j = np.tile(simplices, (1, k)).reshape(-1)
    off = i != j
    adj = sp.csr_matrix((np.ones(int(off.sum())), (i[off], j[off])), shape=(points, points))
    adj.data[:] = -1.0  # one entry per edge (duplicates from shared faces summed, then reset)
    deg = -np.asarray(adj.sum(axis=1)).ravel()
    A = (adj + sp.diags(deg + 1.0)).tocsr().astype(dtype)
    A.sort_indices()
    return A


def peer_matrix(name: str, dtype=np.float64) -> sp.csr_matrix:
    """The PEERS.md matrices by name: ``poisson2d_N``, ``poisson3d_N``, ``random_1M_r8``,
    ``powerlaw_2M_d16`` (and smaller variants such as ``random_10K_r8``, ``powerlaw_20K_d16``), and the
    FEM-like ``mesh2d_<n>`` / ``mesh3d_<n>`` (:func:`mesh_laplacian` of n points, e.g. ``mesh2d_1M``)."""
    kind, _, rest = name.partition("_")
    try:
        if kind in ("mesh2d", "mesh3d"):
            n = int(float(rest.replace("M", "e6").replace("K", "e3")))
            return mesh_laplacian(n, 2 if kind == "mesh2d" else 3, seed=0, dtype=dtype)
        if kind == "poisson2d":
            return poisson2d(int(rest), dtype)
        if kind == "poisson3d":
            return poisson3d(int(rest), dtype)
        size, param = rest.split("_")
        n = int(float(size.replace("M", "e6").replace("K", "e3")))
        if kind == "random" and param.startswith("r"):
            return random_rows(n, int(param[1:]), seed=0, dtype=dtype)
        if kind == "powerlaw" and param.startswith("d"):
            return powerlaw_rows(n, float(param[1:]), seed=0, dtype=dtype)
    except ValueError:
        pass
    raise ValueError(
        f"unknown matrix name {name!r}; use poisson2d_N, poisson3d_N, random_<n>_r<k>, "
        "powerlaw_<n>_d<mean>, mesh2d_<n> or mesh3d_<n> (n like 1M or 20K)"
    )
