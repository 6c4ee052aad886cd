"""Counting collectives and their bytes in optimized HLO text."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxlab import parallel as jp

HLO = """
  %all-gather.1 = f32[2,16]{1,0} all-gather(%p), channel_id=1, replica_groups={{0,1},{2,3}}, dimensions={1}
  %all-reduce.2 = (f32[8]{0}, f32[4,4]{1,0}) all-reduce(%a, %b), replica_groups=[2,4]<=[8], to_apply=%add
  %reduce-scatter.3 = f32[4]{0} reduce-scatter(%c), replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_1'}
  %collective-permute.4 = bf16[10]{0} collective-permute(%d), source_target_pairs={{0,1},{1,0}}
  %all-gather-start.5 = (f32[4]{0}, f32[16]{0}) all-gather-start(%e), replica_groups={{0,1,2,3}}, dimensions={0}
  %all-gather-done.5 = f32[16]{0} all-gather-done(%all-gather-start.5)
  %add.6 = f32[4]{0} add(%x, %y)
"""


def test_collective_stats_parses_every_format():
    stats = jp.collective_stats(HLO, num_devices=8)
    assert [c.op for c in stats] == ["all-gather", "all-reduce", "reduce-scatter", "collective-permute", "all-gather"]
    ag, ar, rs, cp, ag2 = stats
    assert (ag.result_bytes, ag.group_size, ag.received_bytes) == (128, 2, 64.0)
    assert (ar.result_bytes, ar.group_size, ar.received_bytes) == (96, 4, 2 * 96 * 3 / 4)
    assert (rs.result_bytes, rs.group_size, rs.received_bytes) == (16, 4, 48.0)
    assert (cp.result_bytes, cp.received_bytes) == (20, 20.0)
    assert (ag2.result_bytes, ag2.group_size, ag2.received_bytes) == (64, 4, 48.0)
    summary = jp.summarize_collectives(stats)
    assert summary["all-gather"]["count"] == 2
    assert summary["total"]["received_bytes"] == sum(c.received_bytes for c in stats)


def test_collective_stats_on_a_compiled_program():
    mesh = jp.make_mesh(1, 2, 2, devices=jax.devices()[:4])

    def f(x):
        y = lax.all_gather(x, "tensor", axis=1, tiled=True)  # (4, 8) local -> (4, 16)
        return lax.ppermute(y, "space", perm=[(0, 1), (1, 0)])

    g = jax.jit(jp.shard_map(f, mesh=mesh, in_specs=P("space", "tensor"), out_specs=P("space", "tensor")))
    x = jnp.asarray(np.arange(128, dtype=np.float32).reshape(8, 16))
    compiled = g.lower(x).compile()
    summary = jp.summarize_collectives(jp.collective_stats(compiled.as_text(), 4))
    assert summary["all-gather"]["received_bytes"] == 4 * 8 * 4  # the partner's (4, 8) block
    assert summary["collective-permute"]["received_bytes"] == 4 * 16 * 4
