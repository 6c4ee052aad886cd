"""Meshes and the param-path -> PartitionSpec rules table."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

from jaxlab import parallel as jp


def test_resolve_sizes():
    assert jp.resolve_sizes((2, -1, 2), 8) == (2, 2, 2)
    assert jp.resolve_sizes((1, 1, -1), 8) == (1, 1, 8)
    with pytest.raises(ValueError, match="at most one"):
        jp.resolve_sizes((-1, -1, 2), 8)
    with pytest.raises(ValueError, match="use 4 devices but 8"):
        jp.resolve_sizes((1, 2, 2), 8)
    with pytest.raises(ValueError, match="do not divide"):
        jp.resolve_sizes((3, -1, 1), 8)


def test_make_mesh_axes_and_order():
    mesh = jp.make_mesh(data=2, space=-1, tensor=2)
    assert mesh.axis_names == ("data", "space", "tensor") == jp.MESH_AXES
    assert dict(mesh.shape) == {"data": 2, "space": 2, "tensor": 2}
    assert jp.mesh_sizes(mesh) == (2, 2, 2)
    # tensor is the innermost axis: neighbouring devices are tensor partners
    assert [d.id for d in mesh.devices[0, 0]] == [0, 1]


@pytest.mark.parametrize(
    "path, spec",
    [
        ("block_0/token_in/kernel", P("tensor", "space")),
        ("block_3/token_out/bias", P(("space", "tensor"))),
        ("block_0/channel_in/kernel", P("space", "tensor")),
        ("recovery/kernel_skip", P("space", "tensor")),
        ("block_1/norm1/scale", P(("tensor", "space"))),
        ("residual_norm/bias_state", P(("tensor", "space"))),
        # optimiser moments sit below the parameter path and get the same spec
        ("1/inner_states/core/inner_state/0/mu/block_0/token_in/kernel", P("tensor", "space")),
    ],
)
def test_rules_table(path, spec):
    assert jp.spec_for_path(path) == spec


def test_unknown_parameter_is_an_error():
    with pytest.raises(KeyError, match="no sharding rule"):
        jp.spec_for_path("block_0/mystery/weights")


def test_local_shape_and_divisibility_message():
    mesh_shape = {"data": 1, "space": 4, "tensor": 2}
    assert jp.local_shape((32, 16), P("tensor", "space"), mesh_shape) == (16, 4)
    assert jp.local_shape((16,), P(("tensor", "space")), mesh_shape) == (2,)
    mesh = jp.make_mesh(1, 4, 2)
    params = {"block_0": {"token_in": {"kernel": jnp.zeros((32, 10))}}}
    with pytest.raises(ValueError, match=r"'block_0/token_in/kernel' of shape \(32, 10\): dimension 1 of size 10"):
        jp.check_divisible(params, mesh)


def test_tree_shardings_replicates_scalars():
    mesh = jp.make_mesh(1, 2, 4)
    tree = {"count": jnp.zeros((), jnp.int32), "mu": {"embed": {"kernel": jnp.zeros((8, 8))}}}
    sh = jp.tree_shardings(tree, mesh)
    assert sh["count"].spec == P()
    assert sh["mu"]["embed"]["kernel"].spec == P("space", "tensor")
    placed = jax.device_put(tree, sh)
    assert placed["mu"]["embed"]["kernel"].addressable_shards[0].data.shape == (4, 2)
