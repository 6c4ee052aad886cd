"""EnergyMeter: device selection, Meter protocol, windows, context manager, decorator, reports."""

import csv
import json
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxlab import energy

from .fakes import FakeDevice, FakeNvml, ScriptedClock, make_powercap, set_energy


def test_measures_only_the_runs_gpus(monkeypatch):
    # 4 GPUs in the node; the process sees NVML GPUs 3 and 1 as its ordinals 0 and 1 and runs on ordinal 1.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    nvml = FakeNvml(4, energy_mj={i: [0] for i in range(4)})
    m = energy.EnergyMeter(devices=[FakeDevice(id=1, local_hardware_id=1)], nvml=nvml, cpu="off")
    assert [s.name for s in m.sensors] == ["gpu:1"]
    m = energy.EnergyMeter(devices=[FakeDevice(id=0, local_hardware_id=0)], nvml=nvml, cpu="off")
    assert [s.name for s in m.sensors] == ["gpu:3"]
    # Second process of a multi-process run: global device id 5 is its local ordinal 0.
    m = energy.EnergyMeter(devices=[FakeDevice(id=5, local_hardware_id=0, process_index=1)], nvml=nvml, cpu="off")
    assert [s.name for s in m.sensors] == ["gpu:3"]
    with m:
        pass
    assert m.report().tags["process_index"] == 1 and m.report().gpu_count == 1
    # A GPU the process cannot see is reported, not silently swapped for another.
    m = energy.EnergyMeter(devices=[FakeDevice(id=2, local_hardware_id=2)], nvml=nvml, cpu="off")
    assert m.sensors == [] and "gpu:2" in m.unavailable["nvml"]
    m = energy.EnergyMeter(devices=[FakeDevice(id=0, platform="cpu")], nvml=nvml, cpu="off")
    assert m.sensors == []  # a CPU run measures no GPU at all


def _scripted_meter(tmp_path):
    root = make_powercap(tmp_path / "pc", {"intel-rapl:0": ("package-0", 0, 10**9),
                                           "intel-rapl:0:1": ("dram", 0, 10**9)})
    nvml = FakeNvml(1, energy_mj={0: [0, 0, 1000, 3000, 6000]})
    clock = ScriptedClock([100.0, 101.0, 102.0, 103.0])  # start, then each window edge / stop
    m = energy.EnergyMeter(devices=[FakeDevice(id=0, local_hardware_id=0)], nvml=nvml, rapl_root=root,
                           clock=clock, rapl_interval_s=3600, pue=1.5, carbon_g_per_kwh=400.0)
    return m, root


def test_meter_protocol_and_report(tmp_path):
    m, root = _scripted_meter(tmp_path)
    assert {s.source for s in m.sensors} == {"nvml_energy", "rapl"}
    m.start()  # t=100, gpu counter at 0 mJ
    set_energy(root, "intel-rapl:0", 2_000_000)
    set_energy(root, "intel-rapl:0:1", 500_000)
    r1 = m.read()  # gpu 1 J
    assert r1 == pytest.approx({"energy_j": 3.5, "energy_j_gpu": 1.0, "energy_j_cpu": 2.0,
                                "energy_j_dram": 0.5})
    r2 = m.read()  # cumulative: gpu 3 J
    assert r2["energy_j_gpu"] == pytest.approx(3.0)
    out = m.stop()  # t=101, gpu 6 J
    assert out["energy_j"] == pytest.approx({"gpu": 6.0, "cpu": 2.0, "dram": 0.5})
    assert out["wall_s"] == pytest.approx(1.0)
    assert out["source"] == {"gpu": "nvml_energy", "cpu": "rapl", "dram": "rapl"}
    assert out["estimated"] is False
    assert out["gpu_count"] == 1 and out["gpu_hours"] == pytest.approx(1.0 / 3600)
    assert out["kwh"] == pytest.approx(8.5 * 1.5 / 3.6e6)
    assert out["co2_g"] == pytest.approx(out["kwh"] * 400.0)
    rep = m.report()
    assert rep.total_energy_j == pytest.approx(8.5) and rep.power_w["gpu"] == pytest.approx(6.0)
    rep.to_json(tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text())["energy_j"]["gpu"] == pytest.approx(6.0)
    rep.to_csv(tmp_path / "e.csv")
    rep.to_csv(tmp_path / "e.csv")
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert len(rows) == 2 and float(rows[0]["energy_j_gpu"]) == pytest.approx(6.0)
    assert rows[0]["estimated"] == "False"
    with pytest.raises(RuntimeError, match="start"):
        m.read()


def test_windows_sync_and_overlap(tmp_path):
    m, root = _scripted_meter(tmp_path)
    m.start()
    x = jnp.arange(4.0)
    m.begin_window("outer", x)  # t=101, gpu 1 J
    m.begin_window("step")  # t=102, gpu 3 J
    w = m.end_window("step", x * 2)  # t=103, gpu 6 J
    assert w["energy_j_gpu"] == pytest.approx(3.0) and w["wall_s"] == pytest.approx(1.0)
    assert m.end_window("outer")["energy_j_gpu"] == pytest.approx(5.0)
    with pytest.raises(KeyError, match="begin_window"):
        m.end_window("step")


def test_context_manager_and_decorator_on_this_machine():
    m = energy.EnergyMeter(cpu="estimate")
    with m:
        jax.block_until_ready(jnp.ones((64, 64)) @ jnp.ones((64, 64)))
    r = m.report()
    assert r.estimated and set(r.energy_j) == {"cpu"} and r.wall_s > 0 and r.energy_j["cpu"] >= 0
    assert r.device_count == len(jax.local_devices())

    @m
    def f(a):
        return a + 1

    assert float(f(jnp.float32(1))) == 2.0
    assert m.report().wall_s > 0 and not m.running


def test_idle_baseline():
    cpu = ScriptedClock([0.0, 0.0, 1.0, 1.0, 5.0])  # idle: 1 cpu-s over 1 wall-s; run: 4 cpu-s over 2
    sensor = energy.CpuTimeEstimateSensor(tdp_w=10.0, cores=1, cpu_time_fn=cpu)
    m = energy.EnergyMeter(devices=(), sensors=[sensor], clock=ScriptedClock([0.0, 1.0, 10.0, 12.0]))
    assert m.measure_idle(1.0, sleep=lambda s: None) == pytest.approx({"cpu": 10.0})
    with m:
        pass
    r = m.report()
    assert r.energy_j["cpu"] == pytest.approx(40.0)
    assert r.dynamic_energy_j["cpu"] == pytest.approx(40.0 - 10.0 * 2.0)


@pytest.mark.parametrize("kwargs, needle", [
    ({"cpu": "sometimes"}, "cpu must be"),
    ({"pue": 0.5}, "pue must be a finite number >= 1"),
    ({"pue": float("nan")}, "pue must be a finite number"),
    ({"cpu_tdp_w": 0}, "cpu_tdp_w must be a finite number > 0"),
    ({"cpu_tdp_w": float("inf")}, "cpu_tdp_w"),
    ({"carbon_g_per_kwh": -1}, "carbon_g_per_kwh"),
    ({"power_interval_s": 0}, "power_interval_s"),
    ({"cpu_cores": 0}, "cpu_cores"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        energy.EnergyMeter(**kwargs)


def test_reentry_is_refused_and_the_outer_measurement_goes_on():
    clock = ScriptedClock([0.0, 5.0])
    m = energy.EnergyMeter(devices=(), cpu="estimate", clock=clock)
    with m:
        with pytest.raises(RuntimeError, match="already measuring"):
            with m:
                pass
        with pytest.raises(RuntimeError, match="already measuring"):
            m(lambda: None)()
        assert m.running
    assert m.report().wall_s == pytest.approx(5.0)  # start at 0, stop at 5: not restarted inside
    m.start()
    m.begin_window("a")
    with pytest.raises(RuntimeError, match="already open"):
        m.begin_window("a")
    m.stop()


def test_chain_reports_adds_processes_one_after_another():
    def rep(gpu_j, wall, pid):
        return energy.EnergyReport(energy_j={"gpu": gpu_j, "cpu": 1.0}, wall_s=wall, source={"gpu": "nvml_energy",
                                   "cpu": "rapl"}, estimated=False, per_sensor_j={"gpu:0": gpu_j}, gpu_count=2,
                                   device_count=2, tags={"host": "h", "pid": pid})

    c = energy.chain_reports([rep(100.0, 10.0, 1), rep(50.0, 5.0, 2)])
    assert c.energy_j == pytest.approx({"gpu": 150.0, "cpu": 2.0}) and c.wall_s == pytest.approx(15.0)
    assert c.per_sensor_j == pytest.approx({"gpu:0": 150.0}) and c.gpu_hours == pytest.approx(2 * 15.0 / 3600)
    assert [t["pid"] for t in c.tags["processes"]] == [1, 2]
    with pytest.raises(ValueError, match="at least one"):
        energy.chain_reports([])


def test_energy_ledger_keeps_every_process(tmp_path):
    path = tmp_path / "energy.json"

    def part(j, wall):
        return energy.EnergyReport(energy_j={"cpu": j}, wall_s=wall, source={"cpu": "rapl"},
                                   estimated=False).to_dict()

    first = energy.EnergyLedger(path)
    first.update(part(1.0, 1.0))
    first.update(part(3.0, 2.0))  # the same process, later: replaces its part
    second = energy.EnergyLedger(path)
    assert second.num_processes == 1
    total = second.update(part(10.0, 4.0))
    assert total["total_energy_j"] == pytest.approx(13.0) and total["wall_s"] == pytest.approx(6.0)
    on_disk = json.loads(path.read_text())
    assert [p["total_energy_j"] for p in on_disk["process_reports"]] == [3.0, 10.0]
    assert energy.report_from_dict(on_disk).total_energy_j == pytest.approx(13.0)
    path.write_text("{torn")
    assert energy.EnergyLedger(path).num_processes == 0


@pytest.mark.parametrize("kwargs, needle", [
    ({"idle_s": -3}, "idle_s"),
    ({"idle_s": float("nan")}, "idle_s"),
    ({"pue": -1}, "pue"),
    ({"cpu_tdp_w": 0}, "cpu_tdp_w"),
    ({"report_dir": "FILE"}, "is an existing file"),
])
def test_measure_command_checks_arguments_before_the_command_runs(tmp_path, kwargs, needle):
    (tmp_path / "file").write_text("x")
    kwargs = {k: (str(tmp_path / "file") if v == "FILE" else v) for k, v in kwargs.items()}
    kwargs.setdefault("report_dir", tmp_path / "reports")
    ran = tmp_path / "ran"
    with pytest.raises(ValueError, match=needle):
        energy.measure_command([sys.executable, "-c", f"open({str(ran)!r}, 'w')"], quiet=True, **kwargs)
    assert not ran.exists()


def test_measure_command(tmp_path):
    rc = energy.measure_command([sys.executable, "-c", "import sys; sum(range(10**5)); sys.exit(3)"],
                                report_dir=tmp_path, quiet=True, cpu_tdp_w=50.0)
    assert rc == 3
    rep = json.loads((tmp_path / "energy.json").read_text())
    assert rep["tags"]["returncode"] == 3 and rep["wall_s"] > 0 and "cpu" in rep["energy_j"]
    assert (tmp_path / "energy.csv").exists()
    assert energy.measure_command(["--", "/no/such/binary"], report_dir=tmp_path, quiet=True) == 127
    with pytest.raises(ValueError, match="command"):
        energy.measure_command([], report_dir=tmp_path)


def test_measure_command_counts_only_visible_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nvml = FakeNvml(2, energy_mj={0: [0, 5000], 1: [0, 0, 2000]})
    rc = energy.measure_command([sys.executable, "-c", "pass"], report_dir=tmp_path, quiet=True, nvml=nvml,
                                cpu="off", report_name="run")
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rc == 0 and rep["per_sensor_j"] == {"gpu:1": pytest.approx(2.0)}
    assert rep["gpu_count"] == 1 and rep["source"] == {"gpu": "nvml_energy"}


def test_sensor_failing_mid_run_is_reported_not_raised():
    class Flaky(FakeNvml):
        def nvmlDeviceGetTotalEnergyConsumption(self, h):
            value = super().nvmlDeviceGetTotalEnergyConsumption(h)
            if value < 0:
                raise RuntimeError("GPU is lost")
            return value

    nvml = Flaky(1, energy_mj={0: [0, 0, 1000, -1, -1]})
    m = energy.EnergyMeter(devices=(), gpu_indices=[0], nvml=nvml, cpu="off")
    m.start()
    assert m.read()["energy_j_gpu"] == pytest.approx(1.0)
    assert m.read()["energy_j_gpu"] == pytest.approx(1.0)  # last good value
    out = m.stop()
    assert out["energy_j"]["gpu"] == pytest.approx(1.0) and "GPU is lost" in out["unavailable"]["gpu:0"]


def test_combine_reports_of_two_hosts(tmp_path):
    def rep(host, gpu_j, cpu_j, wall, src):
        return energy.EnergyReport(energy_j={"gpu": gpu_j, "cpu": cpu_j}, wall_s=wall,
                                   source={"gpu": "nvml_energy", "cpu": src}, estimated=src != "rapl",
                                   per_sensor_j={"gpu:0": gpu_j}, gpu_count=1, device_count=1,
                                   tags={"host": host, "process_index": 0 if host == "a" else 1})

    a, b = rep("a", 100.0, 10.0, 2.0, "rapl"), rep("b", 50.0, 5.0, 3.0, "cpu_time_tdp")
    a.to_json(tmp_path / "a.json")
    a2 = energy.report_from_dict(json.loads((tmp_path / "a.json").read_text()))
    c = energy.combine_reports([a2, b])
    assert c.energy_j == pytest.approx({"gpu": 150.0, "cpu": 15.0}) and c.wall_s == 3.0
    assert c.gpu_count == 2 and c.gpu_hours == pytest.approx(2 * 3.0 / 3600)
    assert c.estimated and c.source == {"gpu": "nvml_energy", "cpu": "mixed"}
    assert set(c.per_sensor_j) == {"a/0/gpu:0", "b/1/gpu:0"}
    with pytest.raises(ValueError, match="at least one"):
        energy.combine_reports([])


def test_measure_command_with_idle_baseline(tmp_path):
    rc = energy.measure_command([sys.executable, "-c", "pass"], report_dir=tmp_path, quiet=True, idle_s=0.05,
                                cpu="estimate")
    rep = json.loads((tmp_path / "energy.json").read_text())
    assert rc == 0 and "cpu" in rep["idle_power_w"]
    assert rep["dynamic_energy_j"]["cpu"] <= rep["energy_j"]["cpu"] + 1e-12
