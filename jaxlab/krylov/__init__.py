"""Krylov solvers (CG, BiCGSTAB, GMRES, CGS, FCG, IR) with preconditioners: batched, differentiable in forward
and reverse mode, real and complex."""

from ._ilu import ILU as ILU
from ._ilu import ic0 as ic0
from ._ilu import ilu0 as ilu0
from ._ilu import ilu0_reference as ilu0_reference
from ._ilu import isai as isai
from ._operator import Operator as Operator
from ._operator import operator as operator
from ._precond import AbstractPreconditioner as AbstractPreconditioner
from ._precond import BlockJacobi as BlockJacobi
from ._precond import DensePreconditioner as DensePreconditioner
from ._precond import FunctionPreconditioner as FunctionPreconditioner
from ._precond import Identity as Identity
from ._precond import Jacobi as Jacobi
from ._precond import PRECONDITIONER_NAMES as PRECONDITIONER_NAMES
from ._precond import SparsePreconditioner as SparsePreconditioner
from ._precond import as_preconditioner as as_preconditioner
from ._precond import block_jacobi as block_jacobi
from ._precond import jacobi as jacobi
from ._precond import make_preconditioner as make_preconditioner
from ._solution import Solution as Solution
from ._solution import SolveError as SolveError
from ._solution import Status as Status
from ._solution import status_message as status_message
from ._solution import status_name as status_name
from ._solve import METHODS as METHODS
from ._solve import bicgstab as bicgstab
from ._solve import cg as cg
from ._solve import cgs as cgs
from ._solve import fcg as fcg
from ._solve import gmres as gmres
from ._solve import ir as ir
from ._solve import solve as solve

PRECONDITIONERS = {"jacobi": jacobi, "block_jacobi": block_jacobi, "ilu0": ilu0, "ic0": ic0, "isai": isai}
"""The named preconditioner builders, ``name -> builder(A, **options)``."""
