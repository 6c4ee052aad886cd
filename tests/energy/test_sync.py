"""The meter waits for the device work launched inside a measurement: with, decorator, windows, sync modes."""

import time

import jax
import jax.numpy as jnp
import pytest

from jaxlab import energy


@jax.jit
def _chain(x):
    for _ in range(24):
        x = jnp.tanh(x @ x)
    return x


@pytest.fixture(scope="module")
def work():
    """A jitted computation of a few tenths of a second and its fastest measured time."""
    x = jnp.full((512, 512), 1.0 / 512, jnp.float32)
    jax.block_until_ready(_chain(x))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(_chain(x))
        times.append(time.perf_counter() - t0)
    return x, min(times)


def test_with_block_waits_for_the_computation_it_launched(work):
    x, t = work
    with energy.EnergyMeter(cpu="estimate") as m:
        y = _chain(x)  # noqa: F841  (held, not blocked on)
    assert m.report().wall_s >= 0.9 * t


def test_with_block_waits_even_for_a_dropped_result(work):
    x, t = work
    with energy.EnergyMeter(cpu="estimate") as m:
        _chain(x)  # the output is garbage-collected at once: jax.live_arrays() no longer lists it
    assert m.report().wall_s >= 0.9 * t


def test_decorator_waits_for_work_it_does_not_return(work):
    x, t = work
    m = energy.EnergyMeter(cpu="estimate")

    @m
    def f():
        _chain(x)
        return None

    f()
    assert m.report().wall_s >= 0.9 * t


def test_windows_wait_for_the_device(work):
    x, t = work
    m = energy.EnergyMeter(cpu="estimate")
    m.start()
    m.begin_window("w")
    y = _chain(x)  # noqa: F841
    w = m.end_window("w")
    m.stop()
    assert w["wall_s"] >= 0.9 * t


def test_sync_none_waits_only_for_the_arrays_handed_in(work):
    x, t = work
    with energy.EnergyMeter(cpu="estimate", sync="none") as m:
        y = _chain(x)
    assert m.report().wall_s < 0.5 * t  # only the dispatch: the option is honoured
    jax.block_until_ready(y)
    with energy.EnergyMeter(cpu="estimate", sync="none") as m:
        y = m.sync(_chain(x))
    assert m.report().wall_s >= 0.9 * t and y.shape == x.shape


def test_stop_waits_for_arrays_handed_in(work):
    x, t = work
    m = energy.EnergyMeter(cpu="estimate", sync="none")
    m.start()
    y = _chain(x)
    out = m.stop(y)
    assert out["wall_s"] >= 0.9 * t


def test_meter_without_jax_devices_does_not_sync():
    assert energy.EnergyMeter(devices=(), cpu="estimate").sync_mode == "none"
    assert energy.EnergyMeter(cpu="estimate").sync_mode == "jax"
    with pytest.raises(ValueError, match="sync must be one of"):
        energy.EnergyMeter(sync="sometimes")

