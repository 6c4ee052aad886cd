"""EnergyMeter: measures the energy of the devices a JAX run uses, as a context manager, a decorator,
per-step windows, and a ``jaxlab.core.Meter`` for the training loop."""

from __future__ import annotations

import functools
import math
import os
import platform
import threading
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from ._report import DEFAULT_CARBON_G_PER_KWH, EnergyReport, utc_now
from ._sensors import (
    DEFAULT_RAPL_ROOT,
    AbstractSensor,
    CpuTimeEstimateSensor,
    discover_nvml,
    discover_rapl,
)

#: Rated package power used by the CPU-time estimate when no RAPL counter is readable.
DEFAULT_CPU_TDP_W = 100.0

_CPU_MODES = ("auto", "rapl", "estimate", "off")
_SYNC_MODES = ("auto", "jax", "none")


def _check_number(name: str, value: Any, *, low: float, low_open: bool, what: str) -> float:
    """``float(value)``, or ValueError naming the argument, the value and what is allowed."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number {what}, got {value!r}") from None
    if not math.isfinite(v) or v < low or (low_open and v == low):
        raise ValueError(f"{name} must be a finite number {what}, got {value!r}")
    return v


@functools.lru_cache(maxsize=None)
def _marker_fn() -> Callable[[Any], Any]:
    return jax.jit(lambda x: x + 1)


def wait_for_device(devices: Sequence[Any] = ()) -> None:
    """Blocks until the device work launched so far has finished, including work whose results are gone.

    Three steps, because none alone is enough: ``jax.block_until_ready`` on every live array (the
    results the program still holds), ``jax.effects_barrier()`` (ordered side effects), and a tiny
    computation on each of ``devices`` waited for: a device runs its computations in the order they
    were issued, so it finishes after whatever was issued before it, such as a jitted computation
    whose output was dropped (``jax.live_arrays()`` no longer lists it). In jax 0.10,
    ``effects_barrier()`` alone does not wait for pure jitted computations.

    Args:
      devices: jax devices to put a marker computation on (e.g. the meter's devices).
    """
    arrays = jax.live_arrays()
    try:
        jax.block_until_ready(arrays)
    except RuntimeError:  # an array was deleted or donated meanwhile (another thread): wait one by one
        for a in arrays:
            try:
                a.block_until_ready()
            except RuntimeError:
                pass
    del arrays
    jax.effects_barrier()
    marker = _marker_fn()
    outs = []
    for d in devices:
        if isinstance(d, jax.Device):
            outs.append(marker(jax.device_put(np.int32(0), d)))
    jax.block_until_ready(outs)


class _Poller:
    """One daemon thread that polls the sensors needing it (power sampling, RAPL wrap checks)."""

    def __init__(self, sensors: Sequence[AbstractSensor]):
        self._sensors = [s for s in sensors if s.poll_interval_s]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._sensors:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="jaxlab-energy-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = min(s.poll_interval_s for s in self._sensors)  # type: ignore[type-var]
        due = {id(s): time.monotonic() + s.poll_interval_s for s in self._sensors}  # type: ignore[operator]
        while not self._stop.wait(interval):
            now = time.monotonic()
            for s in self._sensors:
                if now >= due[id(s)]:
                    try:
                        s.poll()
                    except Exception:  # noqa: BLE001 - must not kill the thread; the next read reports it
                        pass
                    due[id(s)] = now + s.poll_interval_s  # type: ignore[operator]

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


class EnergyMeter:
    """Energy of the devices a run uses: GPUs through NVML, CPU and DRAM through RAPL, else an estimate.

    Which sensors: the GPUs among ``devices`` (the jax devices of the run, default
    ``jax.local_devices()``) through NVML, mapped through ``CUDA_VISIBLE_DEVICES`` so other GPUs of
    the node are not counted; CPU packages and DRAM through RAPL; and where RAPL cannot be read, an
    estimate from this process's CPU time and ``cpu_tdp_w`` (flagged ``estimated``). Whatever
    cannot be read is listed in ``report().unavailable`` with the reason; nothing crashes.

    Use it as a context manager, a decorator, per-step windows, or pass it to
    ``jaxlab.train.train_loop(meter=...)`` (it satisfies ``jaxlab.core.Meter``). Every edge of a
    measurement waits for the device work issued before it (see ``sync``), so jitted work launched
    inside a block is measured to its end, not only its dispatch. A meter measures one thing at a
    time: ``start()`` (or ``with meter:``) while it is running raises, so an inner block cannot
    silently restart the outer measurement; use a second meter or named windows for nested spans.

    Args:
      devices: jax devices whose GPUs are measured; ``()`` for none (then only ``gpu_indices``).
      gpu_indices: NVML indices to measure instead of deriving them from ``devices``, or
        ``"visible"`` for every GPU ``CUDA_VISIBLE_DEVICES`` exposes (used for subprocesses).
      cpu: ``"auto"`` (RAPL if readable, else the estimate), ``"rapl"``, ``"estimate"`` or ``"off"``.
      cpu_tdp_w: package power for the estimate; a process busy on one core for one second is
        charged ``cpu_tdp_w / cpu_cores`` joules.
      cpu_cores: logical cores the TDP is spread over (default ``os.cpu_count()``).
      pue: power usage effectiveness for the reported kWh.
      carbon_g_per_kwh: carbon intensity for the reported CO2.
      nvml: a ``pynvml``-like object (default: the ``pynvml`` module, imported lazily).
      rapl_root: powercap root (a scripted folder in tests).
      power_interval_s: sampling period for GPUs that report only power.
      rapl_interval_s: wrap-check period for RAPL counters.
      sensors: explicit sensors; replaces discovery entirely.
      clock: wall clock in seconds (``time.perf_counter``).
      sync: how the meter waits for the device at each edge of a measurement (start, stop, every
        window edge and :meth:`read`), like Zeus's ``sync_execution_with="jax"``: ``"jax"`` waits
        for all device work issued so far (see :func:`wait_for_device`), ``"none"`` only for the
        arrays handed in (:meth:`sync`, ``stop(*arrays)``, ``end_window(name, *arrays)``);
        ``"auto"`` (default) is ``"jax"`` when ``devices`` holds jax devices, else ``"none"`` (so
        ``jaxlab energy`` never starts a jax backend).

    Raises:
      ValueError: for an unknown ``cpu`` or ``sync`` mode, ``pue`` below 1, a ``cpu_tdp_w`` that is
        not a positive number, a negative carbon intensity or non-positive polling periods.

    Examples:
      >>> import jax.numpy as jnp
      >>> with EnergyMeter(cpu="estimate") as m:
      ...     y = jax.block_until_ready(jnp.ones(1000).sum())
      >>> r = m.report()
      >>> sorted(r.energy_j), r.estimated
      (['cpu'], True)

      Per-step windows (synchronised on the step's outputs) and the decorator:

      >>> m.start()
      >>> m.begin_window("step")
      >>> y = jnp.ones(8) * 2
      >>> sorted(m.end_window("step", y))
      ['energy_j', 'energy_j_cpu', 'wall_s']
      >>> _ = m.stop()
      >>> @m
      ... def f(x):
      ...     return x + 1
      >>> float(f(jnp.float32(1))), m.report().wall_s > 0
      (2.0, True)
    """

    def __init__(
        self,
        devices: Sequence[Any] | None = None,
        *,
        gpu_indices: Sequence[int] | str | None = None,
        cpu: str = "auto",
        cpu_tdp_w: float = DEFAULT_CPU_TDP_W,
        cpu_cores: int | None = None,
        pue: float = 1.0,
        carbon_g_per_kwh: float = DEFAULT_CARBON_G_PER_KWH,
        nvml: Any = None,
        rapl_root: str | os.PathLike = DEFAULT_RAPL_ROOT,
        power_interval_s: float = 0.1,
        rapl_interval_s: float = 1.0,
        sensors: Sequence[AbstractSensor] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sync: str = "auto",
    ):
        if cpu not in _CPU_MODES:
            raise ValueError(f"cpu must be one of {_CPU_MODES}, got {cpu!r}")
        if sync not in _SYNC_MODES:
            raise ValueError(f"sync must be one of {_SYNC_MODES}, got {sync!r}")
        pue = _check_number("pue", pue, low=1.0, low_open=False,
                            what=">= 1 (facility energy / IT energy; 1 counts the IT energy only)")
        carbon_g_per_kwh = _check_number("carbon_g_per_kwh", carbon_g_per_kwh, low=0.0, low_open=False,
                                         what=">= 0 (grams of CO2e per kWh)")
        cpu_tdp_w = _check_number("cpu_tdp_w", cpu_tdp_w, low=0.0, low_open=True, what="> 0 (watts)")
        power_interval_s = _check_number("power_interval_s", power_interval_s, low=0.0, low_open=True,
                                         what="> 0 (seconds)")
        rapl_interval_s = _check_number("rapl_interval_s", rapl_interval_s, low=0.0, low_open=True,
                                        what="> 0 (seconds)")
        if cpu_cores is not None and (isinstance(cpu_cores, bool) or int(cpu_cores) != cpu_cores or cpu_cores < 1):
            raise ValueError(f"cpu_cores must be a whole number >= 1, got {cpu_cores!r}")
        self.devices = tuple(jax.local_devices() if devices is None else devices)
        self.sync_mode = sync if sync != "auto" else (
            "jax" if any(isinstance(d, jax.Device) for d in self.devices) else "none")
        self.pue = pue
        self.carbon_g_per_kwh = carbon_g_per_kwh
        self._clock = clock
        self.unavailable: dict[str, str] = {}
        if sensors is not None:
            self.sensors = list(sensors)
        else:
            self.sensors = self._discover(gpu_indices, cpu, cpu_tdp_w, cpu_cores, nvml, rapl_root,
                                          power_interval_s, rapl_interval_s)
        names = [s.name for s in self.sensors]
        if len(set(names)) != len(names):
            raise ValueError(f"sensor names must be unique, got {names}")
        self._found_unavailable = dict(self.unavailable)
        self.idle_power_w: dict[str, float] = {}
        self._poller = _Poller(self.sensors)
        self._t0: float | None = None
        self._start_utc = ""
        self._last_report: EnergyReport | None = None
        self._windows: dict[str, tuple[float, dict[str, float]]] = {}
        self._last_good: dict[str, float] = {}

    # -- discovery ---------------------------------------------------------------------------

    def _discover(self, gpu_indices, cpu, cpu_tdp_w, cpu_cores, nvml, rapl_root, power_interval_s,
                  rapl_interval_s) -> list[AbstractSensor]:
        sensors: list[AbstractSensor] = []
        if gpu_indices is None:
            gpus = [d for d in self.devices if d.platform == "gpu"]
            # The CUDA ordinal within this process; d.id is global across processes.
            ordinals = [int(d.id if getattr(d, "local_hardware_id", None) is None else d.local_hardware_id)
                        for d in gpus]
            target: Any = ("local", ordinals)
        else:
            target = gpu_indices if isinstance(gpu_indices, str) else [int(i) for i in gpu_indices]
        found, reason = discover_nvml(target, nvml=nvml, poll_interval_s=power_interval_s)
        sensors += found
        if reason:
            self.unavailable["nvml"] = reason
        if cpu in ("auto", "rapl"):
            found, reason = discover_rapl(rapl_root, poll_interval_s=rapl_interval_s)
            sensors += found
            if reason:
                self.unavailable["rapl"] = reason
        if cpu == "estimate" or (cpu == "auto" and not any(s.kind == "cpu" for s in sensors)):
            sensors.append(CpuTimeEstimateSensor(tdp_w=cpu_tdp_w, cores=cpu_cores))
        return sensors

    # -- Meter protocol ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._t0 is not None

    def sync(self, *arrays: Any) -> Any:
        """Waits for ``arrays`` (any pytrees) and, in ``"jax"`` sync mode, for all device work issued so far.

        Returns its argument (a tuple for several), so ``y = m.sync(f(x))`` reads naturally.
        """
        if arrays:
            jax.block_until_ready(arrays)
        if self.sync_mode == "jax":
            wait_for_device(self.devices)
        return arrays[0] if len(arrays) == 1 else arrays

    def start(self) -> None:
        """Begins a measurement, after the device work issued before it has finished.

        Raises:
          RuntimeError: if this meter is already measuring (a meter cannot be entered inside itself).
        """
        if self.running:
            raise RuntimeError(
                "this EnergyMeter is already measuring (started at "
                f"{self._start_utc}); a meter cannot be entered inside itself, which would restart the outer "
                "measurement. Use a second EnergyMeter for the inner block, or begin_window()/end_window() "
                "on this one."
            )
        self.sync()
        for s in self.sensors:
            s.reset()
        self._windows.clear()
        self._last_good.clear()
        self.unavailable = dict(self._found_unavailable)  # drop mid-run failures of an earlier run
        self._start_utc = utc_now()
        self._t0 = self._clock()
        self._poller.start()

    def _energy(self, s: AbstractSensor) -> float:
        # A sensor failing mid-run (driver reset, sysfs hiccup) keeps its last good value and is
        # reported; it never takes the training run down.
        try:
            e = s.energy_j()
        except Exception as err:  # NVMLError, OSError, ValueError from a torn read
            self.unavailable[s.name] = f"read failed during the run, last good value kept: {err}"
            return self._last_good.get(s.name, 0.0)
        self._last_good[s.name] = e
        return e

    def _snapshot(self) -> tuple[float, dict[str, float]]:
        return self._clock(), {s.name: self._energy(s) for s in self.sensors}

    def _by_kind(self, per_sensor: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.sensors:
            out[s.kind] = out.get(s.kind, 0.0) + per_sensor[s.name]
        return out

    def _require_running(self, what: str) -> None:
        if not self.running:
            raise RuntimeError(f"EnergyMeter.{what}() needs a running meter: call start() (or use `with meter:`)")

    def read(self) -> dict[str, float]:
        """Joules since :meth:`start`: ``{"energy_j": total, "energy_j_<kind>": ...}``.

        Waits for the device first (see ``sync``). There is no ``wall_s`` key: the training loop
        subtracts successive readings key by key and keeps its own cumulative ``wall_s``.
        """
        self._require_running("read")
        self.sync()
        kinds = self._by_kind({s.name: self._energy(s) for s in self.sensors})
        out = {"energy_j": float(sum(kinds.values()))}
        out.update({f"energy_j_{k}": v for k, v in kinds.items()})
        return out

    def stop(self, *wait_for: Any) -> dict[str, Any]:
        """Waits for ``wait_for`` and the device (see ``sync``), ends the measurement, returns the report as a dict."""
        self._require_running("stop")
        try:
            self.sync(*wait_for)
        except BaseException:
            # Ctrl-C while waiting: still end the measurement, so the meter can be started again.
            self._end(self._make_report(*self._snapshot()))
            raise
        return self._end(self._make_report(*self._snapshot()))

    def _end(self, report: EnergyReport) -> dict[str, Any]:
        self._poller.stop()
        self._t0 = None
        self._last_report = report
        return report.to_dict()

    def report(self) -> EnergyReport:
        """The report of the last measurement, or up to now while one is running."""
        if self.running:
            return self._make_report(*self._snapshot())
        if self._last_report is None:
            raise RuntimeError("EnergyMeter.report(): nothing measured yet; use `with meter:` or start()/stop()")
        return self._last_report

    def _make_report(self, t: float, per: dict[str, float]) -> EnergyReport:
        kinds = self._by_kind(per)
        source: dict[str, str] = {}
        for s in self.sensors:
            source[s.kind] = s.source if s.kind not in source or source[s.kind] == s.source else "mixed"
        gpus = [d for d in self.devices if d.platform == "gpu"]
        tags = {
            "host": platform.node(),
            "pid": os.getpid(),
            "process_index": self.devices[0].process_index if self.devices else None,
            "device_ids": [d.id for d in self.devices],
            "device_kind": self.devices[0].device_kind if self.devices else None,
            "start_utc": self._start_utc,
        }
        return EnergyReport(
            energy_j=kinds,
            wall_s=t - self._t0,  # type: ignore[operator]
            source=source,
            estimated=any(s.estimated for s in self.sensors),
            per_sensor_j=dict(per),
            unavailable=dict(self.unavailable),
            # GPUs of the run count towards GPU-hours even when NVML cannot read them.
            gpu_count=len(gpus) or sum(1 for s in self.sensors if s.kind == "gpu"),
            device_count=len(self.devices) or sum(1 for s in self.sensors if s.kind == "gpu"),
            pue=self.pue,
            carbon_g_per_kwh=self.carbon_g_per_kwh,
            idle_power_w=dict(self.idle_power_w),
            tags=tags,
        )

    # -- windows -----------------------------------------------------------------------------

    def begin_window(self, name: str, *wait_for: Any) -> None:
        """Opens a named window after waiting for ``wait_for`` and the device (see ``sync``).

        Windows of different names may overlap; opening a window that is already open raises.
        """
        self._require_running("begin_window")
        if name in self._windows:
            raise RuntimeError(f"energy window {name!r} is already open; close it with end_window({name!r}) "
                               "first, or give the inner window another name")
        self.sync(*wait_for)
        self._windows[name] = self._snapshot()

    def end_window(self, name: str, *wait_for: Any) -> dict[str, float]:
        """Closes a window after waiting for ``wait_for`` (pass the step's outputs) and the device.

        Returns:
          ``{"energy_j", "energy_j_<kind>"..., "wall_s"}`` of the window.
        """
        self._require_running("end_window")
        if name not in self._windows:
            raise KeyError(f"no open energy window {name!r}; open it with begin_window({name!r}) first")
        self.sync(*wait_for)
        t1, e1 = self._snapshot()
        t0, e0 = self._windows.pop(name)
        kinds = self._by_kind({k: e1[k] - e0[k] for k in e1})
        out = {"energy_j": float(sum(kinds.values()))}
        out.update({f"energy_j_{k}": v for k, v in kinds.items()})
        out["wall_s"] = t1 - t0
        return out

    # -- idle baseline -----------------------------------------------------------------------

    def measure_idle(self, duration_s: float = 2.0, *, sleep: Callable[[float], None] = time.sleep
                     ) -> dict[str, float]:
        """Measures idle power per kind for ``duration_s``; later reports subtract it in ``dynamic_energy_j``."""
        if self.running:
            raise RuntimeError("measure_idle() must run while the meter is stopped")
        duration_s = _check_number("duration_s", duration_s, low=0.0, low_open=False, what=">= 0 (seconds)")
        self.start()
        sleep(duration_s)
        r = self._make_report(*self._snapshot())
        self._poller.stop()
        self._t0 = None
        self.idle_power_w = r.power_w
        return dict(self.idle_power_w)

    # -- context manager and decorator -------------------------------------------------------

    def __enter__(self) -> "EnergyMeter":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.running:
            self.stop()

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorates ``fn``: each call is measured, up to the end of its device work; see :meth:`report`.

        A call while the meter is already measuring raises (see :meth:`start`).
        """

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self:
                out = jax.block_until_ready(fn(*args, **kwargs))
            return out

        return wrapped

    def __repr__(self) -> str:
        names = ", ".join(f"{s.name}[{s.source}]" for s in self.sensors)
        return f"EnergyMeter({names})"
