"""The multi-process flags' checks, the energy of several processes, host <-> global arrays (no processes started)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import write_json
from jaxlab.train import DistributedError, combine_process_energy, to_global, to_host
from jaxlab.train._distributed import check_arguments, process_energy_path

RUN = ["run", "configs/examples/mlp_digits.py:quick"]


@pytest.mark.parametrize("flags,words", [
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "is not HOST:PORT"),
    (["--coordinator", "127.0.0.1:70000", "--num-processes", "2", "--process-id", "0"], "port in 1-65535"),
    (["--coordinator", "127.0.0.1:29500", "--num-processes", "2", "--process-id", "2"], "--process-id must be in 0..1"),
    (["--coordinator", "127.0.0.1:29500", "--num-processes", "0", "--process-id", "0"], "--num-processes must be"),
    (["--num-processes", "2"], "together"),
    (["--coordinator", "127.0.0.1:29500", "--num-processes", "2", "--process-id", "0", "--peer-timeout", "0"],
     "--peer-timeout must be"),
])
def test_bad_flags_end_with_one_line_before_anything_starts(flags, words, capsys, tmp_path):
    assert cli.main([*RUN, "--workdir", str(tmp_path / "w"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxlab: error:") and words in err[0], err
    assert not (tmp_path / "w").exists()


def test_check_arguments_accepts_a_complete_set():
    check_arguments("[::1]:29500", 4, 3)
    check_arguments(None, None, None)
    with pytest.raises(DistributedError):
        check_arguments("host:1", 4, None)


def test_energy_of_processes_side_by_side_adds_energies_and_keeps_the_longest_wall(tmp_path):
    base = {"source": {"cpu": "cpu_time_tdp"}, "estimated": True, "pue": 1.0, "carbon_g_per_kwh": 475.0}
    write_json(process_energy_path(tmp_path, 0), {**base, "energy_j": {"cpu": 10.0}, "wall_s": 4.0})
    write_json(process_energy_path(tmp_path, 1), {**base, "energy_j": {"cpu": 5.0}, "wall_s": 6.0})
    total = combine_process_energy(tmp_path, 2)
    assert total["energy_j"]["cpu"] == pytest.approx(15.0)
    assert total["wall_s"] == pytest.approx(6.0)
    assert len(total["per_process"]) == 2
    assert combine_process_energy(tmp_path / "none", 2) is None


def test_to_global_and_back():
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    split = to_global({"x": x}, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    assert split["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(split["x"].addressable_shards) == jax.device_count()
    np.testing.assert_array_equal(to_host(split)["x"], x)
