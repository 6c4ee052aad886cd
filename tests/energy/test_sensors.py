"""Sensors against scripted traces: RAPL wrap, NVML counter and trapezoid, unavailability reasons."""

import pytest

from jaxlab import energy
from jaxlab.energy import _sensors

from .fakes import FakeNvml, ScriptedClock, make_powercap, set_energy


def _tree(tmp_path):
    return make_powercap(tmp_path / "powercap", {
        "intel-rapl:0": ("package-0", 900, 1000),
        "intel-rapl:0:0": ("core", 5, 1000),
        "intel-rapl:0:1": ("dram", 10, 1000),
        "intel-rapl:1": ("psys", 0, 1000),
    })


def test_rapl_discovery_picks_package_and_dram_only(tmp_path):
    sensors, reason = energy.discover_rapl(_tree(tmp_path))
    assert reason is None
    assert {(s.name, s.kind) for s in sensors} == {("rapl:package-0", "cpu"), ("rapl:dram-0", "dram")}


def test_rapl_counter_wrap(tmp_path):
    root = _tree(tmp_path)
    (pkg,) = [s for s in energy.discover_rapl(root)[0] if s.kind == "cpu"]
    pkg.reset()  # at 900 uJ of a 1000 uJ range
    set_energy(root, "intel-rapl:0", 100)  # wrapped: +200
    pkg.poll()
    set_energy(root, "intel-rapl:0", 700)  # +600
    assert pkg.energy_j() == pytest.approx(800e-6)
    set_energy(root, "intel-rapl:0", 699)  # wrapped once more: +999
    assert pkg.energy_j() == pytest.approx(1799e-6)


def test_rapl_missing_root_is_unavailable_with_reason(tmp_path):
    sensors, reason = energy.discover_rapl(tmp_path / "nope")
    assert sensors == [] and "does not exist" in reason


def test_rapl_permission_denied_is_reported(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    real = _sensors._read_int

    def deny(path):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(_sensors, "_read_int", deny)
    sensors, reason = energy.discover_rapl(root)
    assert sensors == [] and "permission denied" in reason and "chmod" in reason
    m = energy.EnergyMeter(devices=(), rapl_root=root, nvml=FakeNvml(0))
    r = m.unavailable["rapl"]
    assert "permission denied" in r
    assert [s.source for s in m.sensors] == ["cpu_time_tdp"]  # the flagged estimate, not a constant


def test_nvml_energy_counter():
    nvml = FakeNvml(2, energy_mj={1: [1000, 1000, 3500]})
    (s,), reason = energy.discover_nvml([1], nvml=nvml)
    assert reason is None and s.source == "nvml_energy" and s.name == "gpu:1"
    s.reset()
    assert s.energy_j() == pytest.approx(2.5)


def test_nvml_power_trapezoid():
    # Power 100, 200, 200, 0 W at t = 0, 1, 2, 3 s: 150 + 200 + 100 J.
    nvml = FakeNvml(1, power_mw={0: [0, 7e3, 100e3, 200e3, 200e3, 0]})  # probe, init reset, trace
    clock = ScriptedClock([-1.0, 0.0, 1.0, 2.0, 3.0])
    (s,), reason = energy.discover_nvml([0], nvml=nvml, clock=clock)
    assert reason is None and s.source == "nvml_power" and not s.estimated
    s.reset()
    s.poll()
    s.poll()
    assert s.energy_j() == pytest.approx(450.0)


def test_nvml_power_polled_in_background():
    nvml = FakeNvml(1, power_mw={0: [50e3]})
    m = energy.EnergyMeter(devices=(), gpu_indices=[0], nvml=nvml, cpu="off", power_interval_s=0.005)
    import time

    with m:
        time.sleep(0.1)
    (s,) = m.sensors
    assert s.num_samples > 3
    r = m.report()
    assert r.energy_j["gpu"] == pytest.approx(50.0 * r.wall_s, rel=0.05)


@pytest.mark.parametrize("nvml_error", ["init", "import"])
def test_missing_nvml_is_unavailable_not_a_crash(monkeypatch, nvml_error):
    if nvml_error == "import":
        def no_pynvml():
            raise ImportError("No module named 'pynvml'")
        monkeypatch.setattr(_sensors, "_import_pynvml", no_pynvml)
        nvml = None
    else:
        nvml = FakeNvml(0, init_error="NVML Shared Library Not Found")
    sensors, reason = energy.discover_nvml([0], nvml=nvml)
    assert sensors == []
    assert ("nvidia-ml-py" in reason) if nvml_error == "import" else ("Library Not Found" in reason)


def test_gpu_without_any_reading_is_reported():
    sensors, reason = energy.discover_nvml([0, 5], nvml=FakeNvml(1))
    assert sensors == [] and "gpu:0" in reason and "gpu:5" in reason


def test_visible_gpu_indices():
    nvml = FakeNvml(4)
    assert energy.visible_gpu_indices(nvml, {}) == [0, 1, 2, 3]
    assert energy.visible_gpu_indices(nvml, {"CUDA_VISIBLE_DEVICES": "2,0"}) == [2, 0]
    assert energy.visible_gpu_indices(nvml, {"CUDA_VISIBLE_DEVICES": "GPU-0003,1"}) == [3, 1]
    assert energy.visible_gpu_indices(nvml, {"CUDA_VISIBLE_DEVICES": "1,7,2"}) == [1]  # stops at invalid
    assert energy.visible_gpu_indices(nvml, {"CUDA_VISIBLE_DEVICES": ""}) == []


def test_cpu_time_estimate_is_flagged():
    s = energy.CpuTimeEstimateSensor(tdp_w=100.0, cores=4, cpu_time_fn=ScriptedClock([10.0, 12.0]))
    assert s.estimated and s.energy_j() == pytest.approx(50.0)
    with pytest.raises(ValueError, match="tdp_w"):
        energy.CpuTimeEstimateSensor(tdp_w=0.0)
