"""Running one WeatherMixer on a mesh: Jigsaw (shard_map), GSPMD or plain data parallelism.

Strategies (``make_apply(model, mesh, strategy=...)``):

* ``"jigsaw"``: the model inside ``shard_map``; states ``P("data", "space", None, "tensor")``,
  parameters by ``jaxlab.parallel.JIGSAW_RULES``; every exchange is a named collective in
  ``jaxlab.parallel._jigsaw``.
* ``"gspmd"``: the same parameter and state shardings, ``jit`` with sharding annotations on the
  activations; XLA's partitioner chooses the collectives (the paper's suggested comparison).
* ``"local"``: plain ``jit``; with replicated parameters and a batch sharded over every device
  this is ordinary data parallelism.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.parallel import (
    SPACE,
    JigsawOps,
    LocalOps,
    check_divisible,
    mesh_sizes,
    param_shardings,
    param_specs,
    shard_map,
)

from ._model import STATE_SPEC, WeatherMixer

STRATEGIES = ("jigsaw", "gspmd", "local")
LAT_SPEC = P(SPACE)


def check_mesh(model: WeatherMixer, mesh: Mesh, batch_size: int | None = None) -> None:
    """Raises a ValueError naming the model or batch dimension that does not divide the mesh.

    Jigsaw needs: batch % data, lat % space, and tokens, channels, hidden, token_hidden,
    channel_hidden each divisible by space * tensor (every vector is split over both axes).
    """
    d, s, t = mesh_sizes(mesh)
    st = s * t
    checks = []
    if batch_size is not None:
        checks.append(("batch size", batch_size, d, "data"))
    lat, lon = model.grid
    checks += [
        ("longitude points (grid[1]) per patch", lon, model.patch, "patch"),
        ("latitude rows (grid[0])", lat, s, "space"),
        ("channels", model.channels, st, "space x tensor"),
        ("hidden", model.hidden, st, "space x tensor"),
        ("tokens (lat * lon / patch)", model.num_tokens if lon % model.patch == 0 else 0, st, "space x tensor"),
        ("token_hidden", model.token_hidden, st, "space x tensor"),
        ("channel_hidden", model.channel_hidden, st, "space x tensor"),
    ]
    for what, size, n, axes in checks:
        if size % n:
            raise ValueError(
                f"{what} = {size} does not divide by {axes} = {n} on mesh {dict(mesh.shape)}; "
                f"choose {what} divisible by {n} or a smaller mesh"
            )


def _dummy_state(model: WeatherMixer, batch_size: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((batch_size, *model.grid, model.channels), jnp.float32)


def init_params(model: WeatherMixer, *, key: jax.Array, mesh: Mesh | None = None, strategy: str = "jigsaw"):
    """Initialises the (global) parameters; with a mesh, each device creates only its own shards.

    The values do not depend on the mesh (JAX's partitionable threefry), so a sharded and a
    one-device initialisation with the same key agree.
    """
    local = model.clone(ops=LocalOps())
    x = _dummy_state(local, 1)

    def init(k):
        return local.init(k, jnp.zeros(x.shape, x.dtype))["params"]

    if mesh is None:
        return jax.jit(init)(key)
    shapes = jax.eval_shape(init, key)
    if strategy == "local":
        out = jax.tree.map(lambda _: NamedSharding(mesh, P()), shapes)
    else:
        check_mesh(model, mesh)
        check_divisible(shapes, mesh)
        out = param_shardings(shapes, mesh)
    return jax.jit(init, out_shardings=out)(key)


def make_apply(model: WeatherMixer, mesh: Mesh | None = None, *, strategy: str = "jigsaw",
               remat: bool = True) -> Callable:
    """``apply(params, state) -> next state`` for global arrays on ``mesh`` (not jitted).

    Args:
      model: the model (its ``ops`` field is replaced according to ``strategy``).
      mesh: a ``make_mesh`` mesh; None runs on one device.
      strategy: ``"jigsaw"``, ``"gspmd"`` or ``"local"`` (see the module docstring).
      remat: Jigsaw only: exchange the blocks again in the backward pass instead of keeping the
        gathered ones from the forward pass (``JigsawOps.remat``; the default). False keeps them
        (less communication, more memory) and is needed for forward-mode ``jax.jvp``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if mesh is None or strategy == "local":
        local = model.clone(ops=LocalOps())
        return lambda params, state: local.apply({"params": params}, state)
    check_mesh(model, mesh)
    if strategy == "gspmd":
        gmodel = model.clone(ops=LocalOps(mesh))
        return lambda params, state: gmodel.apply({"params": params}, state)
    ops = JigsawOps.from_mesh(mesh, remat=remat)
    jmodel = model.clone(ops=ops)

    def apply(params, state):
        fn = shard_map(
            lambda p, x: jmodel.apply({"params": ops.data_parallel(p)}, x),
            mesh=mesh,
            in_specs=(param_specs(params), STATE_SPEC),
            out_specs=STATE_SPEC,
        )
        return fn(params, state)

    return apply


def state_sharding(mesh: Mesh, strategy: str = "jigsaw") -> NamedSharding:
    """How states (and targets) are laid out: Jigsaw slabs, or the batch over every device (``local``)."""
    if strategy == "local":
        return NamedSharding(mesh, P(tuple(mesh.axis_names)))
    return NamedSharding(mesh, STATE_SPEC)


def shard_params(params: Any, mesh: Mesh, strategy: str = "jigsaw") -> Any:
    """Places global parameters on ``mesh`` (rules-table shards, or replicated for ``local``)."""
    if strategy == "local":
        return jax.device_put(params, NamedSharding(mesh, P()))
    return jax.device_put(params, param_shardings(params, mesh))


def lat_sharding(mesh: Mesh, strategy: str = "jigsaw") -> NamedSharding:
    """Latitude weights: split like the states' latitude rows (replicated for ``local``)."""
    return NamedSharding(mesh, P() if strategy == "local" else LAT_SPEC)


