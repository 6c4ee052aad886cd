"""Replica groups in every HLO format, and the intra/inter-node split of a program's bytes."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxlab import parallel as jp


def test_replica_groups_formats():
    rg = jp.replica_groups
    assert rg("x = f32[4] all-reduce(y), replica_groups={{0,1},{2,3}}, to_apply=add", 4) == ((0, 1), (2, 3))
    assert rg("x = f32[4] all-reduce(y), replica_groups={}, to_apply=add", 4) == ((0, 1, 2, 3),)
    assert rg("x = f32[4] all-reduce(y), to_apply=add", 3) == ((0, 1, 2),)
    assert rg("x = f32[4] all-reduce(y), replica_groups=[2,4]<=[8], to_apply=add", 8) == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert rg("x = f32[4] all-reduce(y), replica_groups=[4,2]<=[2,4]T(1,0), to", 8) == ((0, 4), (1, 5), (2, 6), (3, 7))
    mesh = "replica_groups=mesh['axis_0'=2,'axis_1'=1,'axis_2'=4] {'axis_0'}, use_global_device_ids=true"
    assert rg("x = f32[4] all-reduce(y), " + mesh, 8) == ((0, 4), (1, 5), (2, 6), (3, 7))
    assert rg("x = f32[4] all-reduce(y), replica_groups=mesh['a'=8] {'a':(2)2}, use", 8) == (
        (0, 2), (1, 3), (4, 6), (5, 7))
    ids = "replica_groups=mesh['a'=2,'b'=2], device_ids=([[3,2],[1,0]]) {'a'}, use"
    assert rg("x = f32[4] all-reduce(y), " + ids, 4) == ((3, 1), (2, 0))
    pairs = "x = f32[4] collective-permute(y), source_target_pairs={{0,5},{5,0}}"
    assert rg(pairs, 8) == ((0, 5), (5, 0))


def test_node_traffic_of_a_ring():
    line = "x = f32[256]{0} all-reduce(y), replica_groups={{0,1,2,3,4,5,6,7}}, to_apply=add"
    stats = jp.collective_stats(line, 8)
    t = jp.node_traffic(stats, node_size=4)
    per_device = 2 * 1024 * 7 / 8
    assert t["inter_bytes"] == 2 * per_device and t["intra_bytes"] == 6 * per_device
    inside = jp.node_traffic(jp.collective_stats(line.replace("0,1,2,3,4,5,6,7", "0,1,2,3},{4,5,6,7"), 8), node_size=4)
    assert inside["inter_bytes"] == 0 and inside["intra_bytes"] == 8 * 2 * 1024 * 3 / 4
    # partitions of a program on devices 4..7 (a sub-mesh) all sit on node 1
    sub = jp.node_traffic(stats[:0] + jp.collective_stats(line.replace("0,1,2,3,4,5,6,7", "0,1,2,3"), 4),
                          node_size=4, device_ids=[4, 5, 6, 7])
    assert sub["inter_bytes"] == 0
    # a permute between nodes, and all-to-all
    perm = jp.collective_stats("x = f32[10]{0} collective-permute(y), source_target_pairs={{0,5},{1,2}}", 8)
    assert jp.node_traffic(perm, node_size=4) == {"intra_bytes": 40.0, "inter_bytes": 40.0, "total_bytes": 80.0}
    a2a = jp.collective_stats("x = f32[8]{0} all-to-all(y), replica_groups={{0,1,4,5}}, dimensions={0}", 8)
    t = jp.node_traffic(a2a, node_size=4)
    assert t["inter_bytes"] == 8 * 8 and t["intra_bytes"] == 8 * 4  # 8 of 12 ordered pairs cross, 8 bytes each


def test_node_traffic_of_compiled_programs():
    devices = np.asarray(jax.devices()[:8]).reshape(2, 4)
    mesh = Mesh(devices, ("node", "local"))
    x = jnp.ones((8, 64), jnp.float32)

    def run(axes):
        f = jax.jit(jp.shard_map(lambda v: lax.psum(v, axes), mesh=mesh, in_specs=P(("node", "local")),
                                 out_specs=P(("node", "local"))))
        stats = jp.collective_stats(f.lower(x).compile().as_text(), 8)
        return jp.node_traffic(stats, node_size=4, device_ids=[d.id for d in devices.flat])

    local, world = run("local"), run(("node", "local"))
    assert local["inter_bytes"] == 0 and local["intra_bytes"] == 8 * 2 * 256 * 3 / 4
    assert world["inter_bytes"] == 2 * 2 * 256 * 7 / 8
