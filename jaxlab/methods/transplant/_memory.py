"""Peak memory of one call inside a running experiment: the growth of the process's resident set.

The experiment fuses models in the process that trained them, so the fusion's peak memory is measured as in
``scripts/bench_transplant.py`` but in-process: a thread samples the resident set (``/proc/self/statm``)
every 0.2 ms while the call runs, and the peak is its maximum minus the resident set just before the call.
For the resident set to follow the live memory, large buffers must be mapped when allocated and unmapped when
freed (otherwise a call can reuse memory freed earlier and show no growth): :func:`map_large_allocations`
fixes glibc's mmap threshold at 64 KiB (``mallopt(M_MMAP_THRESHOLD)``, what the benchmark sets through
``MALLOC_MMAP_THRESHOLD_``) for the duration of a ``with`` block, and afterwards fixes it at 32 MiB, the value
glibc's dynamic threshold grows to on 64-bit machines (a dynamic threshold cannot be restored). On other
platforms (no ``/proc/self/statm``, no glibc) the peak is ``None``.

No library does this: ``tracemalloc`` sees NumPy's allocations but not XLA's, and ``memory_stats()`` of a CPU
device is ``None`` in JAX 0.10-0.11.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time

_M_MMAP_THRESHOLD = -3   # glibc's malloc.h
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _mallopt(param: int, value: int) -> bool:
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)))
    except (OSError, AttributeError):   # not glibc (musl, macOS): no mallopt
        return False


@contextlib.contextmanager
def map_large_allocations(threshold: int = 64 * 2**10):
    """Within the block, glibc maps every allocation of ``threshold`` bytes or more (see the module docstring).

    Yields whether it could (False off glibc)."""
    ok = _mallopt(_M_MMAP_THRESHOLD, threshold)
    try:
        yield ok
    finally:
        if ok:
            _mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)


class PeakRSS:
    """``with PeakRSS() as p: ...``; then ``p.delta_mib``: the peak growth of the resident set in MiB (None when
    the platform has no ``/proc/self/statm``)."""

    def __init__(self, interval_s: float = 2e-4):
        self.interval_s = interval_s
        self.base: int | None = None
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self.base = _rss_bytes()
        self.peak = self.base
        if self.base is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        now = _rss_bytes()
        if now is not None and self.peak is not None and now > self.peak:
            self.peak = now

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def delta_mib(self) -> float | None:
        if self.base is None or self.peak is None:
            return None
        return (self.peak - self.base) / 2**20
