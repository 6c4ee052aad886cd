"""The multi-process flags' checks, --auto-cluster without a cluster, the energy of several processes, host <-> global arrays (no processes started)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import write_json
from jaxlab.train import DistributedError, combine_process_energy, to_global, to_host
from jaxlab.train._distributed import check_arguments, detect_cluster, initialize_distributed, process_energy_path

from ._launch import slurm_env

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


def _no_cluster(monkeypatch):
    """This process's environment without any cluster JAX detects (CI may itself run under SLURM)."""
    import os

    for k in list(os.environ):
        if k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "KUBERNETES_")):
            monkeypatch.delenv(k)
    monkeypatch.delenv(cli.WORKER_ENV, raising=False)


@pytest.mark.parametrize("worker", [False, True], ids=["supervisor", "worker"])
def test_auto_cluster_without_a_cluster_fails_fast_naming_what_is_missing(worker, monkeypatch, capsys, tmp_path):
    _no_cluster(monkeypatch)
    if worker:  # the worker's own check (cmd_run), as when the supervisor is bypassed
        monkeypatch.setenv(cli.WORKER_ENV, "1")

    def never(*a, **k):
        raise AssertionError("jax.distributed.initialize was called without a cluster")

    monkeypatch.setattr(jax.distributed, "initialize", never)
    assert cli.main([*RUN, "--workdir", str(tmp_path / "w"), "--auto-cluster"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxlab: error: --auto-cluster found no cluster"), err
    for name in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
                 "OMPI_MCA_orte_hnp_uri", "--coordinator HOST:PORT --num-processes N --process-id I"):
        assert name in err[0], (name, err)
    assert not (tmp_path / "w").exists()


def test_auto_cluster_names_the_slurm_variables_a_partial_environment_lacks(monkeypatch):
    # Inside an sbatch script but outside srun, say: a job, but no job step with tasks.
    _no_cluster(monkeypatch)
    for k in ("SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.setenv(k, slurm_env(0)[k])
    with pytest.raises(DistributedError) as e:
        initialize_distributed(auto=True)
    msg = str(e.value)
    assert "SLURM lacks SLURM_STEP_NODELIST, SLURM_PROCID, SLURM_LOCALID" in msg, msg
    assert "srun" in msg and "--coordinator HOST:PORT" in msg, msg
    for k, v in slurm_env(1).items():  # the whole job step's variables: JAX finds SLURM
        monkeypatch.setenv(k, v)
    assert detect_cluster() == "slurm"


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
    assert total is not None
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
