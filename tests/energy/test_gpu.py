"""Real NVML on a GPU machine (marker ``gpu``; deselected by default): run with ``pytest -m gpu tests/energy``."""

import jax
import jax.numpy as jnp
import pytest

from jaxlab import energy

pytestmark = pytest.mark.gpu


def test_meter_reads_the_gpu_of_the_run():
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        pytest.skip("no GPU visible to jax")
    m = energy.EnergyMeter(devices=gpus[:1])
    assert [s.kind for s in m.sensors].count("gpu") == 1, m.unavailable
    x = jax.device_put(jnp.ones((4096, 4096), jnp.float32), gpus[0])
    f = jax.jit(lambda a: a @ a / 4096)
    jax.block_until_ready(f(x))
    with m:
        for _ in range(200):
            x = f(x)
        jax.block_until_ready(x)
    r = m.report()
    assert r.gpu_count == 1 and r.source["gpu"] in ("nvml_energy", "nvml_power")
    assert 20.0 < r.power_w["gpu"] < 1500.0, r.to_dict()  # plausible board power of one GPU
