"""Ctrl-C and SIGTERM that never land inside a save or a record: interrupts masked and deferred there.

Python's SIGINT handler raises ``KeyboardInterrupt`` at whatever bytecode the main thread runs next, and the
kernel may hand the signal itself to any thread. Both have broken saves: a ``KeyboardInterrupt`` inside a
half-written record or a half-started save, and (the hang ``tests/cli/test_kill_resume.py`` used to catch 1 run
in 6) orbax's finalize thread waiting forever in its asyncio loop after the signal, most likely because the
signal interrupted a system call in one of orbax's or tensorstore's threads. Inside :func:`defer_interrupts`:

- the signal only records itself, and the ``KeyboardInterrupt`` is raised when the outermost block ends, where
  nothing is half done;
- the main thread masks SIGINT and SIGTERM, so every thread started inside (orbax's, tensorstore's pools)
  inherits the mask and never sees them. A waiting thread started unmasked takes the signal instead, and
  Python runs the handler in the main thread at once.

Outside a block the signal raises at once as before, so user code (a slow ``get_batch``, a long evaluation)
stays interruptible. A further signal while one is pending raises at once: pressing Ctrl-C again still stops
a save that hangs.

The kernel may hand the signal to a thread a little late (on a loaded machine, after the block has ended):
then it raises right after the block, as outside any block. Nothing is lost, and no save is cut short.

Standard library only: ``jaxlab.cli`` installs :func:`on_signal` before jax is imported.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Iterator

_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_depth = 0  # how many defer_interrupts blocks the main thread is in
_pending: int | None = None  # the signal that arrived inside one, not yet raised


_receiver: threading.Thread | None = None


def _start_receiver() -> None:
    """A thread that only waits, started unmasked: while the main thread masks the signals, the kernel hands
    them to a thread like this one, and Python then runs the handler in the main thread at once."""
    global _receiver
    if _receiver is None or not _receiver.is_alive():
        _receiver = threading.Thread(target=threading.Event().wait, name="jaxlab-signal-receiver", daemon=True)
        _receiver.start()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def on_signal(signum: int, frame=None) -> None:
    """A signal handler: raises ``KeyboardInterrupt`` now, or at the end of the current deferred block."""
    global _pending
    if _depth > 0 and _pending is None:
        _pending = int(signum)
        return
    _pending = None
    raise KeyboardInterrupt


def pending() -> int | None:
    """The signal number waiting to be raised, or None."""
    return _pending


def raise_pending() -> None:
    """Raises the ``KeyboardInterrupt`` that a signal inside a deferred block asked for, if there was one."""
    global _pending
    if _pending is not None:
        _pending = None
        raise KeyboardInterrupt


@contextlib.contextmanager
def defer_interrupts() -> Iterator[None]:
    """Within the block, SIGINT (and SIGTERM where ``jaxlab`` handles it) waits for the block to end.

    Nestable; only the outermost block raises. Where SIGINT has Python's default handler (a script calling
    the library), it is swapped for :func:`on_signal` for the block's duration. A no-op off the main thread,
    where signals are never delivered.
    """
    global _depth, _pending
    if not _on_main_thread():
        yield
        return
    swapped, mask = None, None
    if _depth == 0:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            swapped = signal.signal(signal.SIGINT, on_signal)
        if hasattr(signal, "pthread_sigmask"):
            _start_receiver()
            # Threads started inside the block (orbax's and tensorstore's pools) inherit this mask, so the
            # signal never interrupts one of their system calls; the main thread still runs the handler.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    _depth += 1
    try:
        yield
    except BaseException:
        if _depth == 1:
            _pending = None  # the block ends with its own exception (often that very interrupt): it wins
        raise
    finally:
        _depth -= 1
        if swapped is not None:
            signal.signal(signal.SIGINT, swapped)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a signal held back meanwhile is delivered now
    if _depth == 0:
        raise_pending()


def deferring(fn):
    """Decorator: ``fn`` runs inside :func:`defer_interrupts`."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with defer_interrupts():
            return fn(*args, **kwargs)

    return wrapped
