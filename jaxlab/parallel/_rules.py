"""One table from parameter paths to PartitionSpecs (first matching regex wins).

The Jigsaw layout shards every parameter over *both* model axes, so nothing is replicated inside a
model instance (only across ``data``):

* a channel-mixing kernel ``(in, out)`` (contraction over channels, which live on ``tensor``) is
  split ``P("space", "tensor")``: rows over ``space``, columns over ``tensor``;
* a token-mixing kernel ``(tokens_in, tokens_out)`` (contraction over tokens, which live on
  ``space``) is split ``P("tensor", "space")``;
* vectors (biases, LayerNorm scales) are split over both axes at once, the axis their layer's
  output lives on first: ``P(("tensor", "space"))`` for channel vectors and
  ``P(("space", "tensor"))`` for token vectors.

This mirrors google-research/big_vision's ``sharding.py`` (regex -> spec), with specs fixed by the
Jigsaw scheme rather than chosen per run.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._mesh import SPACE, TENSOR

CHANNEL_KERNEL = P(SPACE, TENSOR)
TOKEN_KERNEL = P(TENSOR, SPACE)
CHANNEL_VECTOR = P((TENSOR, SPACE))
TOKEN_VECTOR = P((SPACE, TENSOR))

# (regex searched in the "/"-joined parameter path, spec). Order matters: first match wins.
JIGSAW_RULES: tuple[tuple[str, P], ...] = (
    (r"(^|/)token_\w+/kernel\w*$", TOKEN_KERNEL),
    (r"(^|/)token_\w+/bias\w*$", TOKEN_VECTOR),
    (r"(^|/)kernel\w*$", CHANNEL_KERNEL),
    (r"(^|/)(bias|scale)\w*$", CHANNEL_VECTOR),
)


def path_str(path: Sequence[Any]) -> str:
    """``"a/b/c"`` from a tuple of names or a ``jax.tree_util`` key path."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:
            parts.append(str(k))
    return "/".join(parts)


def spec_for_path(path: str, rules: Sequence[tuple[str, P]] = JIGSAW_RULES) -> P:
    """The PartitionSpec of the parameter at ``path`` ("/"-separated).

    Raises:
      KeyError: when no rule matches; add a rule to the table rather than replicating silently.

    Examples:
      >>> spec_for_path("block_0/token_in/kernel") == P("tensor", "space")
      True
      >>> spec_for_path("block_0/channel_in/bias") == P(("tensor", "space"))
      True
    """
    for pattern, spec in rules:
        if re.search(pattern, path):
            return spec
    raise KeyError(f"no sharding rule matches parameter {path!r}; add one to the rules table")


def param_specs(params: Any, rules: Sequence[tuple[str, P]] = JIGSAW_RULES) -> Any:
    """A pytree of PartitionSpecs with the structure of ``params`` (leaves: arrays or shapes)."""
    return jax.tree_util.tree_map_with_path(lambda kp, _: spec_for_path(path_str(kp), rules), params)


def param_shardings(params: Any, mesh: Mesh, rules: Sequence[tuple[str, P]] = JIGSAW_RULES) -> Any:
    """``NamedSharding``s on ``mesh`` for every leaf of ``params`` (from the rules table)."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs(params, rules))


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, P]] = JIGSAW_RULES) -> Any:
    """``NamedSharding``s for any pytree whose array leaves sit at parameter paths.

    Works for parameters, gradients and optimiser states (an Adam moment at
    ``.../mu/block_0/channel_in/kernel`` matches the same rule as the parameter); scalar leaves
    (step counters) are replicated.
    """

    def one(kp, leaf):
        if len(getattr(leaf, "shape", ())) == 0:
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, spec_for_path(path_str(kp), rules))

    return jax.tree_util.tree_map_with_path(one, tree)


def axis_product(mesh_shape: dict[str, int], entry: Any) -> int:
    """Total size of the mesh axes named by one PartitionSpec entry (None, a name or a tuple)."""
    if entry is None:
        return 1
    names = entry if isinstance(entry, tuple) else (entry,)
    return math.prod(int(mesh_shape.get(n, 1)) for n in names)


def local_shape(shape: Sequence[int], spec: P, mesh_shape: dict[str, int]) -> tuple[int, ...]:
    """Shape of one device's shard of an array of ``shape`` laid out by ``spec``.

    Raises:
      ValueError: naming the dimension that does not divide by its mesh axes.
    """
    out = []
    for d, size in enumerate(shape):
        entry = spec[d] if d < len(spec) else None
        n = axis_product(mesh_shape, entry)
        if size % n:
            raise ValueError(f"dimension {d} of size {size} does not divide over mesh axes {entry} of size {n}")
        out.append(size // n)
    return tuple(out)


def check_divisible(params: Any, mesh: Mesh, rules: Sequence[tuple[str, P]] = JIGSAW_RULES) -> None:
    """Raises a ValueError naming the first parameter and dimension that do not divide the mesh."""
    mesh_shape = dict(mesh.shape)

    def check(kp, leaf):
        path = path_str(kp)
        try:
            local_shape(leaf.shape, spec_for_path(path, rules), mesh_shape)
        except ValueError as e:
            raise ValueError(f"parameter {path!r} of shape {tuple(leaf.shape)}: {e}") from None

    jax.tree_util.tree_map_with_path(check, params)
