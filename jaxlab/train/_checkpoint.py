"""Orbax checkpoints of a TrainState that are checked before use: shapes against the checkpoint's metadata
before restoring, and a checksum of every array after; errors name the broken folder and an intact one."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxlab._interrupts import deferring

#: Key of the step metadata (orbax ``custom_metadata``) under which the array checksums are stored.
DIGESTS_KEY = "jaxlab_array_digests"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names it and says what to do."""


def _quiet_orbax() -> None:
    for name in ("absl", "orbax", "orbax.checkpoint"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _key_name(k: Any) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def leaf_paths(tree: Any) -> list[tuple[str, Any]]:
    """``[("params/Dense_0/kernel", leaf), ...]``: names that match between a pytree and orbax's metadata of it.

    Orbax stores NamedTuples as dicts of their fields, so attribute and dict keys are both written
    as the bare name.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [("/".join(_key_name(k) for k in path) or "(root)", leaf) for path, leaf in flat]


# ------------------------------------------------------------------------------------------------
# Checksums, computed on the device.

_W1 = np.uint32(0x9E3779B1)
_W2 = np.uint32(0x85EBCA6B)
_MIX = np.uint32(0x7FEB352D)


def _words(x: jax.Array) -> jax.Array:
    """The array's bits as a flat uint32 vector (narrow types widened, 64-bit types split in two)."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    u = jax.lax.bitcast_convert_type(x, unsigned)
    return u.astype(jnp.uint32).reshape(-1)


def _digest(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    u = _words(x)
    odd = jax.lax.iota(jnp.uint32, u.size) * np.uint32(2) + np.uint32(1)
    # A position-weighted sum with odd weights changes for any change of one word (odd numbers are
    # invertible mod 2^32); the second, over mixed words, makes other changes collide with chance
    # about 2^-64 for the pair.
    c1 = jnp.sum(u * (odd * _W1), dtype=jnp.uint32)
    h = (u ^ (u >> np.uint32(16))) * _MIX
    h = h ^ (h >> np.uint32(15))
    c2 = jnp.sum(h * (odd * _W2), dtype=jnp.uint32)
    finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
    return c1, c2, finite


@jax.jit
def _digests(leaves: list[jax.Array]) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
    return [_digest(x) for x in leaves]


#: States up to this size are checksummed on the host (BLAKE2b, no compilation); larger ones on the device.
HOST_DIGEST_MAX_BYTES = 256 * 2**20

#: Checksum methods: ``"blake2b"`` (hashlib, on the host) and ``"sum64"`` (:func:`_digest`, on the device).
DIGEST_METHODS = ("blake2b", "sum64")


def _reason(e: BaseException, limit: int = 300) -> str:
    """An error's text without TensorStore's dump of its spec (a bound method's repr, hundreds of characters)."""
    text = str(e).split(" See full TensorStore details", 1)[0].strip()
    return text[:limit]


def _host_bytes(x: Any) -> np.ndarray:
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # replicated over processes: our own copy
        return np.ascontiguousarray(np.asarray(x.addressable_data(0)))
    return np.ascontiguousarray(np.asarray(jax.device_get(x)))


def _held_here(x: Any) -> bool:
    """Whether this process holds all of ``x``: fully addressable, or fully replicated over the processes."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return True
    return bool(x.is_fully_replicated)


def _host_digest(x: Any) -> tuple[str, bool]:
    a = _host_bytes(x)
    fin = True
    if jnp.issubdtype(a.dtype, jnp.inexact):  # bfloat16 and float8 included (numpy's own test misses them)
        with np.errstate(invalid="ignore"):  # signalling NaNs (flipped bits) warn when cast; they are not finite
            fin = bool(np.all(np.isfinite(a.astype(np.complex128 if jnp.iscomplexobj(a) else np.float64))))
    return hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest(), fin


def state_digests(state: Any, *, method: str = "auto",
                  methods: dict[str, str] | None = None) -> tuple[dict[str, dict[str, Any]], bool]:
    """Checksums of every array of ``state`` and whether all of its floats are finite.

    Two methods. ``"blake2b"``: ``hashlib.blake2b`` of each array's bytes on the host, for states
    that are small and held by this process, whole or replicated over the processes of a
    multi-process run (no compilation, microseconds per megabyte). ``"sum64"``:
    hand-written because it runs where the arrays are, one jitted pass per array on the device
    (sharded and multi-host arrays included), so that only 9 bytes per array reach the host where a
    host hash would first copy the whole state: two position-weighted 32-bit sums of the array's
    bits, of which the first changes for any change of one 32-bit word.

    Args:
      state: a pytree of arrays.
      method: ``"auto"`` (``"blake2b"`` for fully addressable states up to
        :data:`HOST_DIGEST_MAX_BYTES`, else ``"sum64"``), ``"blake2b"`` or ``"sum64"``.
      methods: per-path methods that override ``method`` (to verify digests stored earlier).

    Returns:
      ``({path: {"digest": hex, "method": name, "shape": [...], "dtype": name}}, all_finite)``.
    """
    named = [(p, x) for p, x in leaf_paths(state) if hasattr(x, "shape") and hasattr(x, "dtype")]
    if method == "auto":
        small = sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
                    if not jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else 16 for _, x in named)
        local = all(_held_here(x) for _, x in named)  # then every process hashes the same bytes
        method = "blake2b" if local and small <= HOST_DIGEST_MAX_BYTES else "sum64"
    if method not in DIGEST_METHODS:
        raise ValueError(f"method must be 'auto' or one of {DIGEST_METHODS}, got {method!r}")
    chosen = {p: (methods or {}).get(p, method) for p, _ in named}
    on_device = [(p, x) for p, x in named if chosen[p] == "sum64"]
    dev = dict(zip((p for p, _ in on_device),
                   jax.device_get(_digests([jnp.asarray(x) for _, x in on_device])) if on_device else []))
    digests = {}
    all_finite = True
    for path, x in named:
        if chosen[path] == "sum64":
            c1, c2, fin = dev[path]
            value, fin = f"{int(c1):08x}{int(c2):08x}", bool(fin)
        else:
            value, fin = _host_digest(x)
        digests[path] = {"digest": value, "method": chosen[path], "shape": [int(d) for d in x.shape],
                         "dtype": str(x.dtype)}
        all_finite = all_finite and fin
    return digests, all_finite


# ------------------------------------------------------------------------------------------------
# The checkpointer.


def _item_handler() -> tuple[Any, bool]:
    """``(handler, is_pytree)``: in a single-process run, a PyTreeCheckpointHandler whose jax.Array handler saves
    without replica parallelism.

    Orbax's default ArrayHandler splits each replicated array among its replicas so that each writes a slice
    ("replica-parallel" saving); the slicing runs eagerly and compiles one small program per array and save
    (about 24 compiles for six replicated arrays). Without it, replica 0 of every shard writes it, as orbax
    did before; the checkpoint reads the same (either way restores the other's checkpoints). Orbax's default
    handlers stay for the other leaf types (NumPy arrays, scalars, strings), and the array metadata store
    (PRNG key types) is kept. In a multi-process run replica parallelism stays on: it is what divides the
    writing of arrays replicated over the processes among them (else process 0 writes them all). Where this
    orbax lacks the names used, orbax's StandardCheckpointHandler (``is_pytree`` False) saves as before.
    """
    if jax.process_count() > 1:
        return ocp.StandardCheckpointHandler(), False
    try:
        from orbax.checkpoint._src.metadata import array_metadata_store  # the store orbax's default handler uses

        th = ocp.type_handlers
        arrays = th.ArrayHandler(use_replica_parallel=False, array_metadata_store=array_metadata_store.Store())
        others = [(ty, th.get_type_handler(ty)) for ty in th.supported_types() if ty is not jax.Array]
        registry = th.create_type_handler_registry(*others, (jax.Array, arrays))
        return ocp.PyTreeCheckpointHandler(type_handler_registry=registry), True
    except (ImportError, AttributeError, TypeError, ValueError):
        return ocp.StandardCheckpointHandler(), False


def _is_key(x: Any) -> bool:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _stored_forms(x: Any) -> list[tuple[tuple[int, ...], str]]:
    """The ``(shape, dtype)`` under which orbax's metadata may list the leaf ``x``: its own and, for a typed PRNG
    key, that of its key data (``key<fry>`` of shape ``(4,)`` is stored as ``(4, 2) uint32``)."""
    forms = [(tuple(x.shape), str(x.dtype))]
    if _is_key(x):
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
        forms.append((tuple(data.shape), str(data.dtype)))
    return forms


def _describe(form: tuple[tuple[int, ...], str]) -> str:
    return f"{form[0]} {form[1]}"


def _dtype_changes(state: Any, like: Any) -> list[tuple[str, str, str]]:
    """``[(path, restored dtype, wanted dtype)]`` for the arrays that came back with another dtype than ``like``'s."""
    wanted = {p: str(x.dtype) for p, x in leaf_paths(like) if hasattr(x, "shape") and hasattr(x, "dtype")}
    return [(p, str(x.dtype), wanted[p]) for p, x in leaf_paths(state)
            if p in wanted and hasattr(x, "dtype") and str(x.dtype) != wanted[p]]


def _is_numpy_scalar(x: Any) -> bool:
    # np.str_ and np.bytes_ are str and bytes, which orbax saves as such; np.datetime64 has no storage type.
    return isinstance(x, (np.number, np.bool_))


def _as_array_if_scalar(x: Any) -> Any:
    """A NumPy scalar as a 0-d NumPy array, which both of orbax's handlers save (the pytree handler's scalar
    handler takes no ``np.bool_``, and orbax cannot build restore arguments for NumPy scalars)."""
    return np.asarray(x) if _is_numpy_scalar(x) else x


def _abstract(x: Any) -> Any:
    if _is_numpy_scalar(x):  # restored as a 0-d NumPy array (see _as_scalar_like)
        return jax.ShapeDtypeStruct((), np.asarray(x).dtype)
    return ocp.utils.to_shape_dtype_struct(x)


def _as_scalar_like(restored: Any, like: Any) -> Any:
    """``restored`` as a NumPy scalar where ``like`` is one (orbax gives back a 0-d array)."""
    if _is_numpy_scalar(like) and isinstance(restored, np.ndarray) and restored.shape == ():
        return restored[()]
    return restored


class Checkpointer:
    """Saves and restores a pytree state every N steps in ``directory``, keeping the last ``keep``.

    Saving is asynchronous (the step loop goes on); a save interrupted by a kill leaves only a temporary
    folder, which orbax ignores, so the previous checkpoint stays usable. Each checkpoint carries a
    checksum of every array (:func:`state_digests`); :meth:`restore` checks the shapes against the
    checkpoint's metadata before reading and the checksums after, and refuses a checkpoint that
    fails either, naming its folder and the newest intact one. Typed PRNG keys (``jax.random.key``) come back
    with their implementation and key data, NumPy scalars as NumPy scalars. Use it as a context manager, or call
    :meth:`close`: an unclosed orbax manager prints pages of "Event loop is closed" at exit.
    """

    @deferring
    def __init__(self, directory: str | os.PathLike, *, keep: int = 3):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a whole number >= 1 of checkpoints, got {keep!r}")
        _quiet_orbax()
        self.directory = Path(directory).resolve()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"{str(self.directory)!r} is a file, not a checkpoint folder; move it away "
                                  "or use another --workdir")
        handler, self._pytree = _item_handler()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            # Named up front, so that item_metadata() can read a checkpoint before anything is restored.
            item_handlers=handler,
        )
        self._closed = False

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def path(self, step: int) -> Path:
        return self.directory / str(step)

    @deferring
    def save(self, step: int, state: Any, *, digests: dict[str, Any] | None = None) -> None:
        """Saves ``state`` as checkpoint ``step`` (asynchronously), with the checksums of its arrays.

        Args:
          step: the step number (a checkpoint that exists already is kept as it is).
          state: the pytree to save.
          digests: ``state_digests(state)[0]`` when the caller computed it already.
        """
        if step in self._manager.all_steps():
            return
        if digests is None:
            digests, _ = state_digests(state)
        state = jax.tree.map(_as_array_if_scalar, state)
        args = ocp.args.PyTreeSave(state) if self._pytree else ocp.args.StandardSave(state)
        self._manager.save(step, args=args, custom_metadata={DIGESTS_KEY: digests})

    # -- restore ------------------------------------------------------------------------------

    def _stored_digests(self, step: int) -> dict[str, Any]:
        """The checksums (with each array's shape and dtype as saved) of checkpoint ``step``; {} if none."""
        try:
            stored = (self._manager.metadata(step).custom_metadata or {}).get(DIGESTS_KEY)
        except Exception:  # noqa: BLE001
            stored = None
        return stored if isinstance(stored, dict) else {}

    def _check_shapes(self, step: int, like: Any, stored: dict[str, Any]) -> None:
        path = self.path(step)
        try:
            meta = self._manager.item_metadata(step)
        except Exception as e:  # noqa: BLE001 - orbax raises many types for damaged metadata
            raise CheckpointError(
                f"checkpoint {str(path)!r} cannot be read: its metadata is damaged ({type(e).__name__}: "
                f"{str(e)[:200]})." + self._offer(step, like)
            ) from None
        tree = getattr(meta, "tree", meta)
        if tree is None:  # no metadata to compare with: the restore itself will tell
            return
        there = {p: m for p, m in leaf_paths(tree) if hasattr(m, "shape")}
        leaves = dict(leaf_paths(like))
        here = {p: x for p, x in leaves.items() if hasattr(x, "shape")}
        # The shapes and dtypes as saved, typed PRNG keys included (orbax's metadata has only their key data).
        saved = {p: (tuple(d["shape"]), str(d["dtype"])) for p, d in stored.items()
                 if isinstance(d, dict) and isinstance(d.get("shape"), list) and "dtype" in d}
        problems = []
        for p in sorted(set(there) | set(here)):
            if p not in there:
                problems.append(f"{p} is missing there")
            elif p not in leaves:
                problems.append(f"{p} is only there")
            elif p not in here:  # a Python number, whose metadata orbax lists as a () array
                continue
            else:
                a, b = there[p], here[p]
                stored = (tuple(a.shape), str(getattr(a, "dtype", "?")))
                wanted = (tuple(b.shape), str(b.dtype))
                if p in saved and saved[p] != wanted:
                    problems.append(f"{p} is {_describe(saved[p])} there and {_describe(wanted)} here")
                elif not any(stored[0] == shape and stored[1] in ("?", dtype) for shape, dtype in _stored_forms(b)):
                    problems.append(f"{p} is {_describe(saved.get(p, stored))} there and {_describe(wanted)} here")
        if problems:
            more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a different model: {problems[0]}{more}. Use another --workdir, "
                "or rerun with --fresh to move the old run aside and start over."
            )

    def _read(self, step: int, like: Any, stored: dict[str, Any] | None = None) -> Any:
        """Restores ``step`` and verifies it against ``stored`` (its checksums, read here if None);
        CheckpointError (without suggestions) if it fails."""
        path = self.path(step)
        abstract = jax.tree.map(_abstract, like)
        try:
            if self._pytree:
                args = ocp.args.PyTreeRestore(abstract,
                                              restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))
            else:
                args = ocp.args.StandardRestore(abstract)
            state = self._manager.restore(step, args=args)
        except Exception as e:  # noqa: BLE001 - orbax raises many types for truncated or foreign files
            raise CheckpointError(
                f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: {_reason(e)}); it is truncated "
                "or corrupt."
            ) from None
        if any(_is_numpy_scalar(x) for x in jax.tree.leaves(like)):
            state = jax.tree.map(_as_scalar_like, state, like)
        changed = _dtype_changes(state, like)  # a typed key restored from raw key data, or back
        if changed:
            p, got, want = changed[0]
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a different model: {p} was restored as {got}, not as {want}. "
                "Use another --workdir, or rerun with --fresh to move the old run aside and start over."
            )
        if stored is None:
            stored = self._stored_digests(step)
        if stored:
            digests, _ = state_digests(state, methods={p: d.get("method", "sum64") for p, d in stored.items()})
            bad = sorted(p for p in set(stored) | set(digests)
                         if stored.get(p, {}).get("digest") != digests.get(p, {}).get("digest"))
            if bad:
                more = f" (and {len(bad) - 1} more arrays)" if len(bad) > 1 else ""
                raise CheckpointError(
                    f"checkpoint {str(path)!r} is corrupt: {bad[0]}{more} does not match the checksum stored when "
                    "it was saved (the files changed on disk)."
                )
        return state

    def _offer(self, step: int, like: Any) -> str:
        """Words naming the newest intact checkpoint before ``step`` (checked by restoring it), or --fresh."""
        for earlier in sorted((s for s in self.all_steps() if s < step), reverse=True):
            try:
                self._read(earlier, like)
            except CheckpointError:
                continue
            return (f" The checkpoint of step {earlier} ({str(self.path(earlier))!r}) is intact: delete or move "
                    f"away {str(self.path(step))!r} and run the same command to resume from step {earlier}, or "
                    "rerun with --fresh to move the old run aside and start over.")
        return (" No earlier checkpoint is intact: rerun with --fresh to move the old run aside and start over "
                f"(or delete {str(self.directory)!r}).")

    @deferring
    def restore(self, step: int, like: Any) -> Any:
        """Restores checkpoint ``step`` into the structure, dtypes and shardings of ``like``, and verifies it.

        Raises:
          CheckpointError: for a different model (shapes differ from the metadata: nothing is read),
            or a truncated or corrupt checkpoint (checksums differ); the message names the folder and
            the newest intact checkpoint, if any.
        """
        stored = self._stored_digests(step)  # read once: the shape check and the checksums both use it
        self._check_shapes(step, like, stored)
        try:
            return self._read(step, like, stored)
        except CheckpointError as e:
            raise CheckpointError(str(e) + self._offer(step, like)) from None

    @deferring
    def wait(self) -> None:
        self._manager.wait_until_finished()

    @deferring
    def close(self) -> None:
        """Waits for pending saves and closes the manager (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._manager.wait_until_finished()
        finally:
            self._manager.close()
