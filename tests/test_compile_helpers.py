"""tests/compile_helpers.py: the older fusion emitters reach every compile inside the block, then no longer."""

from jax._src import compiler

from .compile_helpers import fusion_emitter_option, older_fusion_emitters


def _overrides():
    return dict(compiler.get_compile_options(num_replicas=1, num_partitions=1).env_option_overrides)


def test_older_fusion_emitters_reach_every_compile_in_the_block_only():
    assert "xla_cpu_use_fusion_emitters" not in _overrides()
    with older_fusion_emitters():
        inside = _overrides()
    assert "xla_cpu_use_fusion_emitters" not in _overrides()
    if fusion_emitter_option():
        assert inside["xla_cpu_use_fusion_emitters"] is False
