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


def test_meter_waits_for_gpu_work_launched_in_the_block():
    """On a GPU the dispatch returns in microseconds: the meter must still cover the whole computation."""
    import time

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        pytest.skip("no GPU visible to jax")
    x = jax.device_put(jnp.ones((8192, 8192), jnp.float32) / 8192, gpus[0])

    @jax.jit
    def chain(a):
        for _ in range(50):
            a = jnp.tanh(a @ a)
        return a

    jax.block_until_ready(chain(x))
    t0 = time.perf_counter()
    jax.block_until_ready(chain(x))
    t = time.perf_counter() - t0
    m = energy.EnergyMeter(devices=gpus[:1])
    with m:
        chain(x)  # neither held nor blocked on
    assert m.report().wall_s >= 0.9 * t, (m.report().wall_s, t)
    with m:
        y = chain(x)  # noqa: F841
    assert m.report().wall_s >= 0.9 * t
    assert m.report().energy_j.get("gpu", 0.0) > 0
