"""Meshes, sharding rules and Jigsaw (domain x tensor) parallel layers."""

from ._jigsaw import JigsawOps as JigsawOps
from ._jigsaw import LocalOps as LocalOps
from ._jigsaw import shard_map as shard_map
from ._mesh import DATA as DATA
from ._mesh import MESH_AXES as MESH_AXES
from ._mesh import SPACE as SPACE
from ._mesh import TENSOR as TENSOR
from ._mesh import make_mesh as make_mesh
from ._mesh import mesh_sizes as mesh_sizes
from ._mesh import resolve_sizes as resolve_sizes
from ._rules import CHANNEL_KERNEL as CHANNEL_KERNEL
from ._rules import CHANNEL_VECTOR as CHANNEL_VECTOR
from ._rules import JIGSAW_RULES as JIGSAW_RULES
from ._rules import TOKEN_KERNEL as TOKEN_KERNEL
from ._rules import TOKEN_VECTOR as TOKEN_VECTOR
from ._rules import check_divisible as check_divisible
from ._rules import local_shape as local_shape
from ._rules import param_shardings as param_shardings
from ._rules import param_specs as param_specs
from ._rules import path_str as path_str
from ._rules import spec_for_path as spec_for_path
from ._rules import tree_shardings as tree_shardings
from ._hlo import COLLECTIVES as COLLECTIVES
from ._hlo import Collective as Collective
from ._hlo import collective_stats as collective_stats
from ._hlo import summarize_collectives as summarize_collectives
