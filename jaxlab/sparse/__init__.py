"""Sparse matrices as pytrees and the sparse matrix-vector product.

Formats (Ginkgo's, see shared/papers/sparse.md): :class:`CSR`, :class:`COO`, :class:`ELL`,
:class:`SELLP`, :class:`Hybrid` and :class:`Dense`, each a registered pytree with its values in
``A.data`` and its shape and strategy as static data. ``A @ x`` (``== spmv(A, x)``) and
``A.T @ x`` work under ``jit``, ``vmap`` and ``grad``; on GPU each format's Pallas kernel runs
behind the same call (CSR: vector or load-balanced kernel, chosen from the row statistics at
construction), on CPU the fastest XLA formulation we measured. ``from_scipy(S)`` builds the
default format, chosen from the row-length statistics and the backend by a measured table
(:func:`choose_format`, :data:`FORMAT_TABLE`).
Matrix Market files: :func:`read_mtx`, :func:`write_mtx`. Test and benchmark matrices:
:func:`poisson2d`, :func:`poisson3d`, :func:`random_rows`, :func:`powerlaw_rows`,
:func:`mesh_laplacian`, :func:`peer_matrix`.

Examples:
  >>> import numpy as np, jaxlab.sparse as jsparse
  >>> A = jsparse.from_scipy(jsparse.poisson2d(4), format="ell")
  >>> y = A @ np.ones(16)
  >>> float(y[0]), float(y[5])
  (2.0, 0.0)
"""

from ._base import AbstractSparseMatrix as AbstractSparseMatrix
from ._base import Transposed as Transposed
from ._convert import DEFAULT_FORMAT as DEFAULT_FORMAT
from ._convert import FORMAT_ALIASES as FORMAT_ALIASES
from ._convert import FORMATS as FORMATS
from ._convert import convert as convert
from ._convert import from_scipy as from_scipy
from ._csr import COO as COO
from ._csr import CSR as CSR
from ._csr import choose_csr_strategy as choose_csr_strategy
from ._dense import Dense as Dense
from ._ell import ELL as ELL
from ._ell import SELLP as SELLP
from ._ell import Hybrid as Hybrid
from ._ell import hybrid_ell_width as hybrid_ell_width
from ._generators import mesh_laplacian as mesh_laplacian
from ._generators import peer_matrix as peer_matrix
from ._generators import poisson2d as poisson2d
from ._generators import poisson3d as poisson3d
from ._generators import powerlaw_rows as powerlaw_rows
from ._generators import random_rows as random_rows
from ._mtx import MatrixMarketError as MatrixMarketError
from ._mtx import read_mtx as read_mtx
from ._mtx import read_mtx_scipy as read_mtx_scipy
from ._mtx import write_mtx as write_mtx
from ._select import FORMAT_TABLE as FORMAT_TABLE
from ._select import ROW_CLASSES as ROW_CLASSES
from ._select import RowStats as RowStats
from ._select import choose_format as choose_format
from ._select import row_stats as row_stats
from ._spmv import spmv as spmv
from ._spmv import spmv_reference as spmv_reference
from ._distributed import HaloPlan as HaloPlan
from ._distributed import ShardedRows as ShardedRows
from ._distributed import shard_rows as shard_rows
