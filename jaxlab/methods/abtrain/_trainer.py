"""The AB-training loop: phases, compiled programs (one compilation per rank set), traffic ledger, checkpoints.

``ABTrainer.fit`` runs ``schedule.total_steps`` steps. Before step ``t`` it applies the schedule's events at
``t`` (``decompose``, ``sync``, ``truncate``; see ``_schedule``), then runs ``full_step`` (full phase) or both
sides' ``side_step`` (AB phase). A run that ends inside an AB phase is synced once more (``final_sync``) so
that one model is evaluated. Every program is compiled ahead of time the first time its key appears, so
nothing compiles inside a phase; a rank change compiles the AB programs of the new ranks once. A key names
everything its program depends on besides the trainer's fixed model, optimiser, meshes and settings: the
kind, the side and the ranks, and for the programs that take data (``full_step``, ``side_step``, ``eval``)
the batch's shape and dtype, so another batch size or input shape compiles its own program (``_batch_key``).
Each program also keeps the abstract signature of its arguments (tree structure, shapes, dtypes,
shardings), and a call whose arguments differ from it under the same key raises instead of reusing it.

Traffic: the bytes of every compiled program are read from its optimized HLO
(``jaxlab.parallel.collective_stats``) and split into intra-node and inter-node bytes with ``node_size``
(``jaxlab.parallel.node_traffic``); the ledger multiplies them by the number of calls, per phase.

Checkpoints (orbax, every ``checkpoint_every`` steps and at the end or on Ctrl-C) hold the state of the
current phase (the AB phase's group-stacked arrays of both sides) and ``abtrain_meta.json`` holds, per saved
step, the ranks, the traffic ledger and the rank history, so a resumed run rebuilds the restore template
(which depends on the ranks) and its ledger without recomputing anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxlab.core import MetricsWriter, read_metrics, to_jsonable, write_json
from jaxlab.energy import EnergyMeter
from jaxlab.parallel import collective_stats, node_traffic, summarize_collectives
from jaxlab.train import Checkpointer

from ._factors import compression, matrix_shape
from ._models import ModelDef
from ._params import Layout
from ._schedule import LearningRate, Schedule
from ._spmd import (
    GROUP,
    FullState,
    GroupState,
    Plan,
    abstract,
    batch_sharding,
    device_ids,
    full_specs,
    global_mesh,
    group_specs,
    init_full_state,
    join_groups,
    make_cut,
    make_eval,
    make_full_step,
    make_side_step,
    make_svd,
    make_sync,
    make_to_groups,
    on_mesh,
    opt_specs,
    replicated,
    shardings,
    side_mesh,
    split_groups,
)

META_FILE = "abtrain_meta.json"


@dataclasses.dataclass(frozen=True)
class ABSettings:
    """How AB-training runs.

    Attributes:
      schedule: phases (``W >= T``: plain data parallelism).
      group_size: devices per group (the reference's 4 = one node).
      node_size: devices per node, for the intra/inter-node split of the traffic.
      sync_mode: ``full``, ``with-stale``, ``only-learned`` or ``only-b``.
      tau: truncation cut-off, ``s_i > tau s_1``.
      on_rank_change: the factors' optimiser states after a new SVD: ``"slice"`` (the reference: cut or
        zero-padded to the new rank, ill-posed since the basis changed) or ``"reset"`` (fresh states).
      clip_norm: global-norm clipping of each step's gradients (None: off).
      label_smoothing: of the training loss.
    """

    schedule: Schedule
    group_size: int = 4
    node_size: int = 4
    sync_mode: str = "with-stale"
    tau: float = 0.15
    on_rank_change: str = "slice"
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.1

    def __post_init__(self):
        if self.on_rank_change not in ("slice", "reset"):
            raise ValueError(f"on_rank_change must be 'slice' or 'reset', got {self.on_rank_change!r}")


@dataclasses.dataclass
class Program:
    """A compiled program and what one call moves."""

    compiled: Any
    mesh: Any
    intra_bytes: float
    inter_bytes: float
    collectives: dict
    compile_s: float
    key: str = ""
    signature: Any = None


def _signature(args: tuple) -> tuple:
    """What a compiled program was specialised to: the arguments' tree structure, every leaf's shape and dtype,
    and every leaf's sharding (compared by :func:`_same_signature`)."""
    leaves, treedef = jax.tree.flatten(args)
    return (treedef, tuple((tuple(getattr(x, "shape", ())), getattr(x, "dtype", type(x))) for x in leaves),
            tuple(getattr(x, "sharding", None) for x in leaves))


def _same_signature(a: tuple, b: tuple) -> bool:
    """Same tree, shapes and dtypes, and equivalent shardings (a program's outputs carry shardings such as
    ``P(None, 'member')`` where its inputs had the equivalent ``P('group', 'member')`` on a 1-group mesh)."""
    if a[0] != b[0] or a[1] != b[1]:
        return False
    return all(s is t or s == t or (s is not None and t is not None and s.is_equivalent_to(t, len(shape)))
               for s, t, (shape, _) in zip(a[2], b[2], a[1]))


def _batch_key(x) -> str:
    """The part of a program key that a batch ``x`` decides: its shape and dtype, e.g. ``64x8x8x1.float32``."""
    return "x".join(str(d) for d in np.shape(x)) + "." + str(x.dtype)


def _traffic(compiled, mesh, node_size: int) -> tuple[float, float, dict]:
    stats = collective_stats(compiled.as_text(), mesh.size)
    t = node_traffic(stats, node_size=node_size, device_ids=device_ids(mesh))
    return t["intra_bytes"], t["inter_bytes"], summarize_collectives(stats)


class ABTrainer:
    """AB-training of one model on a device set (see the module docstring).

    Args:
      model: the model (``make_model``).
      tx: the optimiser direction, applied per leaf, e.g. ``optax.chain(optax.scale_by_adam(),
        optax.add_decayed_weights(0.1))`` (AdamW without its rate); the update is ``-lr * tx(g)``.
      lr: the learning rate per step (with rebounds).
      settings: schedule, groups, sync mode, truncation.
      key: initialises the model.
      devices: the devices (default ``jax.devices()``), split into contiguous groups of ``group_size``.
    """

    def __init__(self, model: ModelDef, tx: optax.GradientTransformation, lr: LearningRate, settings: ABSettings,
                 *, key: jax.Array, devices=None, factorise: bool = True):
        self.model, self.tx, self.lr, self.settings = model, tx, lr, settings
        self.schedule = settings.schedule
        devices = np.asarray(jax.devices() if devices is None else devices)
        self.mesh = global_mesh(devices, settings.group_size)
        params, model_state = model.init(key)
        # factorise=False: no factors at all, the groups train the full weights (the schedule's counterfactual)
        self.layout: Layout = model.layout(params) if factorise else Layout((), tuple(params))
        self.plan = Plan.create(self.layout, self.mesh.shape[GROUP], settings.group_size, settings.sync_mode)
        self.side_meshes = {s: side_mesh(self.mesh, g) for s, g in self.plan.sides}
        # kept on the host: every run starts from fresh device buffers (steps may donate theirs)
        self._init_host = jax.device_get(init_full_state(params, model_state, tx, settings.group_size))
        self._full_shardings = shardings(self.mesh, full_specs(self._init_host), self._init_host)
        self._init_abstract = abstract(self._init_host, self._full_shardings)
        self.programs: dict[str, Program] = {}
        self.ledger: dict[str, dict[str, Any]] = {}
        self.rank_history: list[dict[str, Any]] = []
        self.compile_events: list[tuple[int, str]] = []
        self.reset_state()

    # ------------------------------------------------------------------------------------------- state

    def reset_state(self) -> None:
        self.t = 0
        self.phase = "full"
        self.full: FullState | None = jax.device_put(self._init_host, self._full_shardings)
        self.sides: dict[str, GroupState] | None = None
        self.parked: dict = {}
        self.constants: dict = {}
        self.ranks: dict[str, int] | None = None

    def full_ranks(self) -> dict[str, int]:
        return {p: self.layout.full_rank_of(p) for p in self.layout.paths}

    # ------------------------------------------------------------------------------------------- programs

    def _program(self, key: str, fn: Callable, args: tuple, *, mesh, out_shardings=None,
                 donate: tuple[int, ...] = ()) -> Program:
        """Compiles ``fn`` for ``args`` (their shardings are the input shardings) once per ``key``; ``key`` must
        name everything the program depends on (a cached program called with other argument shapes, dtypes or
        shardings raises ``ValueError``)."""
        sig = _signature(args)
        prog = self.programs.get(key)
        if prog is not None and not _same_signature(prog.signature, sig):
            raise ValueError(f"program {key!r} was compiled for other arguments than these (shapes, dtypes or "
                             "shardings differ); its key must name what differs")
        if prog is None:
            if mesh.devices.flat[0].platform == "cpu":
                donate = ()
            t0 = time.perf_counter()
            kw = {} if out_shardings is None else {"out_shardings": out_shardings}
            compiled = jax.jit(fn, donate_argnums=donate, **kw).lower(*args).compile()
            intra, inter, colls = _traffic(compiled, mesh, self.settings.node_size)
            prog = Program(compiled, mesh, intra, inter, colls, time.perf_counter() - t0, key, sig)
            self.programs[key] = prog
            self.compile_events.append((self.t, key))
        return prog

    def _call(self, phase: str, prog: Program, *args):
        key = prog.key
        entry = self.ledger.setdefault(f"{phase}|{key}", {"phase": phase, "program": key, "calls": 0,
                                                          "intra_bytes": prog.intra_bytes,
                                                          "inter_bytes": prog.inter_bytes})
        entry["calls"] += 1
        return prog.compiled(*args)

    def _full_step_program(self, state, x, y, k, lr) -> Program:
        fn = make_full_step(self.model, self.layout, self.tx, self.mesh, clip_norm=self.settings.clip_norm,
                            label_smoothing=self.settings.label_smoothing)
        return self._program(f"full_step@{_batch_key(x)}", fn, (state, x, y, k, lr), mesh=self.mesh, donate=(0,))

    def _side_program(self, side: str, state, consts, x, y, k, lr) -> Program:
        mesh = self.side_meshes[side]
        fn = make_side_step(self.model, self.plan, side, self.tx, mesh, clip_norm=self.settings.clip_norm,
                            label_smoothing=self.settings.label_smoothing)
        return self._program(f"side_step:{side}:{self._rank_key()}@{_batch_key(x)}", fn, (state, consts, x, y, k, lr),
                             mesh=mesh, donate=(0,))

    def _rank_key(self) -> str:
        return ",".join(str(self.ranks[p]) for p in self.layout.paths) if self.ranks else "-"

    # ------------------------------------------------------------------------------------------- events

    def _svd(self, phase: str):
        if not self.layout.paths:
            return {}, {}
        fn = make_svd(self.plan, self.mesh, self.settings.tau)
        prog = self._program("svd", fn, (self.full.params,), mesh=self.mesh)
        usv, local_counts = jax.block_until_ready(self._call(phase, prog, self.full.params))
        cut = self._program("cut", make_cut(self.mesh), (local_counts,), mesh=self.mesh)
        return usv, self._call(phase, cut, local_counts)

    def _to_groups(self, usv, ranks: dict[str, int], phase: str, first: bool) -> None:
        old_ranks = None if first else dict(self.ranks)  # the parked states are the old ranks'
        old = "first" if first else self._rank_key()
        self.ranks = dict(ranks)
        fn = make_to_groups(self.plan, self.mesh, self.ranks, self.tx,
                            reset=self.settings.on_rank_change == "reset", old_ranks=old_ranks)
        key = f"to_groups:{old}->{self._rank_key()}"
        args = (self.full, usv, self.parked)
        prog = self._program(key, fn, args, mesh=self.mesh)
        groups, parked_w, constants = self._call(phase, prog, *args)
        self.sides = {s: split_groups(groups, self.mesh, g) for s, g in self.plan.sides}
        self.parked, self.constants = parked_w, constants
        self.full, self.phase = None, "ab"
        self.rank_history.append({"step": self.t, "event": phase, "ranks": dict(self.ranks)})

    def _sync(self, phase: str) -> None:
        groups = join_groups([self.sides[s] for s, _ in self.plan.sides], self.mesh)
        step = jax.device_put(np.int32(self.t), replicated(self.mesh))
        fn = make_sync(self.plan, self.mesh)
        key = f"sync:{self._rank_key()}"
        args = (groups, self.parked, self.constants, step)
        prog = self._program(key, fn, args, mesh=self.mesh)
        self.full, self.parked = self._call(phase, prog, *args)
        self.sides, self.constants, self.phase = None, {}, "full"

    def apply_events(self, t: int) -> tuple[str, ...]:
        events = self.schedule.events(t)
        for ev in events:
            if ev == "decompose":
                usv, _ = self._svd("decompose")
                self._to_groups(usv, self.full_ranks(), "decompose", first=True)
            elif ev == "sync":
                self._sync("sync")
            elif ev == "truncate":
                usv, counts = self._svd("truncate")
                ranks = {p: int(c) for p, c in jax.device_get(counts).items()}
                self._to_groups(usv, ranks, "truncate", first=False)
        return events

    # ------------------------------------------------------------------------------------------- steps

    def step(self, x: np.ndarray, y: np.ndarray, key: jax.Array) -> dict:
        """One training step at ``self.t`` (events already applied); returns the step's metrics (device arrays)."""
        lr = np.float32(self.lr(self.t))
        if self.phase == "full":
            bs = batch_sharding(self.mesh, per_group=False)
            xs, ys = jax.device_put(x, bs), jax.device_put(y, bs)
            lr_d = jax.device_put(lr, replicated(self.mesh))
            k = jax.device_put(key, replicated(self.mesh))
            prog = self._full_step_program(self.full, xs, ys, k, lr_d)
            phase = "warmup" if self.t < self.schedule.warmup_steps or not self.schedule.active else "full"
            self.full, metrics = self._call(phase, prog, self.full, xs, ys, k, lr_d)
            self.t += 1
            return metrics
        per_group = x.shape[0] // self.plan.num_groups
        out = []
        for side, groups in self.plan.sides:
            mesh = self.side_meshes[side]
            lo, hi = groups[0] * per_group, (groups[-1] + 1) * per_group
            bs = batch_sharding(mesh, per_group=True)
            xs = jax.device_put(x[lo:hi].reshape(len(groups), per_group, *x.shape[1:]), bs)
            ys = jax.device_put(y[lo:hi].reshape(len(groups), per_group), bs)
            rep = replicated(mesh)
            consts = on_mesh(self.constants, mesh)
            k, lr_d = jax.device_put(key, rep), jax.device_put(lr, rep)
            prog = self._side_program(side, self.sides[side], consts, xs, ys, k, lr_d)
            self.sides[side], m = self._call("ab", prog, self.sides[side], consts, xs, ys, k, lr_d)
            out.append(m)
        self.t += 1
        return {"_groups": out}

    def traffic_per_call(self, x: np.ndarray, y: np.ndarray, *, ranks: dict[str, int] | None = None,
                         repeats: int = 0) -> dict[str, dict[str, float]]:
        """Bytes per call of the full step, of one AB step (both sides) and of a sync, from the compiled programs
        (compiled here if needed, on the initial state decomposed at ``ranks``, default full rank; the trainer's
        state is kept). With ``repeats``, also the median wall time of each step (threading the state)."""
        saved = (self.t, self.phase, self.full, self.sides, self.parked, self.constants, self.ranks,
                 dict(self.ledger), list(self.rank_history))
        try:
            self.reset_state()
            key = jax.random.key(0)
            rep = replicated(self.mesh)
            bs = batch_sharding(self.mesh, per_group=False)
            fargs = [self.full, jax.device_put(x, bs), jax.device_put(y, bs), jax.device_put(key, rep),
                     jax.device_put(np.float32(0.0), rep)]
            full = self._full_step_program(*fargs)
            out = {"full_step": {"intra_bytes": full.intra_bytes, "inter_bytes": full.inter_bytes}}
            if repeats:
                times = []
                for _ in range(repeats + 1):
                    t0 = time.perf_counter()
                    fargs[0] = jax.block_until_ready(full.compiled(*fargs)[0])
                    times.append(time.perf_counter() - t0)
                out["full_step"]["median_s"] = float(np.median(times[1:]))
            self.full = fargs[0]
            usv, _ = self._svd("probe")
            self._to_groups(usv, ranks or self.full_ranks(), "probe", first=True)
            per_group = x.shape[0] // self.plan.num_groups
            sides, sargs = [], []
            for side, groups in self.plan.sides:
                mesh = self.side_meshes[side]
                lo, hi = groups[0] * per_group, (groups[-1] + 1) * per_group
                sb, srep = batch_sharding(mesh, per_group=True), replicated(mesh)
                args = [self.sides[side], on_mesh(self.constants, mesh),
                        jax.device_put(x[lo:hi].reshape(len(groups), per_group, *x.shape[1:]), sb),
                        jax.device_put(y[lo:hi].reshape(len(groups), per_group), sb),
                        jax.device_put(key, srep), jax.device_put(np.float32(0.0), srep)]
                sides.append(self._side_program(side, *args))
                sargs.append(args)
            out["ab_step"] = {"intra_bytes": sum(p.intra_bytes for p in sides),
                              "inter_bytes": sum(p.inter_bytes for p in sides)}
            if repeats:
                times = []
                for _ in range(repeats + 1):
                    t0 = time.perf_counter()
                    for prog, args in zip(sides, sargs):  # both sides dispatched, then waited for
                        args[0] = prog.compiled(*args)[0]
                    jax.block_until_ready([a[0] for a in sargs])
                    times.append(time.perf_counter() - t0)
                out["ab_step"]["median_s"] = float(np.median(times[1:]))
                for (side, _), args in zip(self.plan.sides, sargs):
                    self.sides[side] = args[0]
            self._sync("probe")
            sync = self.programs[f"sync:{self._rank_key()}"]
            out["sync"] = {"intra_bytes": sync.intra_bytes, "inter_bytes": sync.inter_bytes}
            return out
        finally:
            (self.t, self.phase, self.full, self.sides, self.parked, self.constants, self.ranks, self.ledger,
             self.rank_history) = saved

    # ------------------------------------------------------------------------------------------- evaluation

    def evaluate(self, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1000) -> dict[str, float]:
        """Test accuracy and loss of the synced model (full phase only)."""
        if self.phase != "full":
            raise RuntimeError("evaluate() needs the full-rank state; the groups have not been synced")
        n = (len(x) // batch_size) * batch_size
        if n == 0:
            raise ValueError(f"need at least batch_size={batch_size} evaluation samples, got {len(x)}")
        bs, rep = batch_sharding(self.mesh, per_group=False), replicated(self.mesh)
        fn = make_eval(self.model, self.layout)
        sums = []
        for i in range(0, n, batch_size):
            xs, ys = jax.device_put(x[i:i + batch_size], bs), jax.device_put(y[i:i + batch_size], bs)
            args = (self.full.params, self.full.model_state, xs, ys)
            prog = self._program(f"eval@{_batch_key(xs)}", fn, args, mesh=self.mesh, out_shardings=(rep, rep))
            sums.append(prog.compiled(*args))  # dispatched back to back; one host transfer below
        host = np.asarray(jax.device_get(sums), np.float64)
        correct, loss = float(host[:, 0].sum()), float(host[:, 1].sum())
        return {"test_accuracy": correct / n, "test_loss": loss / n, "eval_size": n}

    # ------------------------------------------------------------------------------------------- checkpoints

    def _checkpoint_tree(self) -> dict:
        if self.phase == "full":
            return {"full": self.full, "parked": self.parked}
        groups = join_groups([self.sides[s] for s, _ in self.plan.sides], self.mesh)
        step = jax.device_put(np.int32(self.t), replicated(self.mesh))
        return {"groups": groups, "parked": self.parked, "constants": self.constants, "step": step}

    def _template(self, phase: str, ranks: dict[str, int] | None) -> dict:
        """The restore template of a checkpoint in ``phase`` at ``ranks`` (shapes and shardings)."""
        rep = replicated(self.mesh)
        full_abs = self._init_abstract
        if ranks is None:
            return {"full": full_abs, "parked": {}}
        usv_abs = jax.eval_shape(make_svd(self.plan, self.mesh, self.settings.tau), full_abs.params)[0]
        groups, parked_w, constants = jax.eval_shape(
            make_to_groups(self.plan, self.mesh, ranks, self.tx, reset=True, old_ranks=None), full_abs, usv_abs, {})
        if phase == "ab":
            return {"groups": abstract(groups, shardings(self.mesh, group_specs(groups), groups)),
                    "parked": abstract(parked_w, shardings(self.mesh, opt_specs(parked_w, grouped=False), parked_w)),
                    "constants": abstract(constants, shardings(self.mesh, P(), constants)),
                    "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)}
        full, parked = jax.eval_shape(make_sync(self.plan, self.mesh), groups, parked_w, constants,
                                      jax.ShapeDtypeStruct((), jnp.int32))
        return {"full": abstract(full, shardings(self.mesh, full_specs(full), full)),
                "parked": abstract(parked, shardings(self.mesh, opt_specs(parked, grouped=True), parked))}

    def _restore(self, tree: dict, t: int, ranks: dict[str, int] | None) -> None:
        self.t, self.ranks = t, (dict(ranks) if ranks else None)
        if "full" in tree:
            self.phase, self.full, self.parked = "full", tree["full"], tree["parked"]
            self.sides, self.constants = None, {}
        else:
            self.phase, self.full = "ab", None
            self.sides = {s: split_groups(tree["groups"], self.mesh, g) for s, g in self.plan.sides}
            self.parked, self.constants = tree["parked"], tree["constants"]

    def _truncate_metrics(self, path: Path, step: int) -> None:
        """Keeps the records written before the checkpoint at ``step``: those of earlier steps, and at ``step``
        the train record and an evaluation that did not follow events (events and their evaluation are redone)."""
        if not path.is_file():
            return
        redo = bool(self.schedule.events(step))
        kept = [r for r in read_metrics(path)
                if r.get("step", 0) < step or (r.get("step") == step and (
                    r.get("split") == "train" or (r.get("split") == "eval" and not redo)))]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def _meta(self) -> dict:
        return {"phase": self.phase, "ranks": self.ranks, "ledger": self.ledger, "rank_history": self.rank_history}

    # ------------------------------------------------------------------------------------------- the loop

    def fit(self, get_batch: Callable[[int], tuple[np.ndarray, np.ndarray]], *, key: jax.Array,
            workdir: str | os.PathLike | None = None, eval_data: tuple[np.ndarray, np.ndarray] | None = None,
            eval_at: tuple[int, ...] = (), eval_batch: int = 1000, curve_eval_size: int | None = None,
            checkpoint_every: int = 0,
            keep_checkpoints: int = 2, log_every: int = 50, meter: Any = "auto", progress: bool = True,
            stop_at: int | None = None, description: str = "abtrain") -> dict[str, Any]:
        """Trains to ``schedule.total_steps`` (or ``stop_at``, which checkpoints and returns like a kill would).

        Args:
          get_batch: ``get_batch(t) -> (x, y)`` NumPy arrays of the global batch of step ``t`` (deterministic in ``t``).
          key: the run's key; step ``t`` uses ``fold_in(key, t)``.
          workdir: metrics.jsonl, checkpoints, abtrain_meta.json, energy.json; resumes from the latest checkpoint.
          eval_data: test images and labels, evaluated at the steps of ``eval_at`` that fall in a full phase
            (after the events of that step) and at the end.
          eval_batch: evaluation batch (a multiple of the device count).
          curve_eval_size: the evaluations of ``eval_at`` use the first ``curve_eval_size`` samples of ``eval_data``
            (None: all; at least ``eval_batch``); the final evaluation uses all of them.
          checkpoint_every: period in steps (0: only at the end).
          log_every: period of the train records.
          meter: an energy meter, ``"auto"`` (an ``EnergyMeter`` with a workdir) or None.
          stop_at: stop after this many steps (tests of resume).

        Returns:
          A summary: final metrics, ranks, compression, traffic per phase, compile and wall times.
        """
        T = self.schedule.total_steps
        end = T if stop_at is None else min(stop_at, T)
        workdir = Path(workdir) if workdir is not None else None
        if meter == "auto":
            meter = EnergyMeter() if workdir is not None else None
        ckpt = Checkpointer(workdir / "checkpoints", keep=keep_checkpoints) if workdir is not None else None
        meta_path = workdir / META_FILE if workdir is not None else None
        metas: dict[str, Any] = {}
        resumed_from = None
        self.reset_state()
        self.ledger, self.rank_history = {}, []
        if ckpt is not None and ckpt.latest_step() is not None:
            latest = int(ckpt.latest_step())
            metas = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
            if str(latest) not in metas:
                raise RuntimeError(f"checkpoint {latest} in {workdir / 'checkpoints'} has no entry in {meta_path}; "
                                   "rerun with --fresh to start over")
            meta = metas[str(latest)]
            tree = ckpt.restore(latest, self._template(meta["phase"], meta["ranks"]))
            self._restore(tree, latest, meta["ranks"])
            self.ledger = {k: dict(v) for k, v in meta["ledger"].items()}
            self.rank_history = list(meta["rank_history"])
            self._truncate_metrics(workdir / "metrics.jsonl", latest)
            resumed_from = latest
        writer = MetricsWriter(workdir / "metrics.jsonl") if workdir is not None else None

        def save(t: int) -> None:
            if ckpt is None or t in ckpt.all_steps():
                return
            metas[str(t)] = to_jsonable(self._meta())
            keep = set(map(str, ckpt.all_steps())) | {str(t)}
            write_json(meta_path, {k: v for k, v in metas.items() if k in keep})
            ckpt.save(t, self._checkpoint_tree())

        eval_steps = set(eval_at)
        last_eval: dict[str, float] = {}
        t0, cpu0 = time.perf_counter(), time.process_time()
        meter_prev: dict[str, float] = {}
        if meter is not None:
            meter.start()

        def record(split: str, step: int, fields: dict) -> None:
            rec = {"step": step, "split": split, **fields, "wall_s": time.perf_counter() - t0}
            if meter is not None and split in ("train", "eval"):
                now = meter.read()
                for k, v in now.items():
                    if isinstance(v, (int, float)):
                        rec[k] = v - meter_prev.get(k, 0.0)
                meter_prev.update({k: v for k, v in now.items() if isinstance(v, (int, float))})
            if writer is not None:
                writer.write(rec)

        def do_eval(step: int) -> None:
            nonlocal last_eval
            if eval_data is not None and self.phase == "full":
                xe, ye = eval_data
                if curve_eval_size is not None and step < T:
                    xe, ye = xe[:curve_eval_size], ye[:curve_eval_size]
                last_eval = self.evaluate(xe, ye, batch_size=eval_batch)
                record("eval", step, last_eval)

        window: list = []
        last_train: dict[str, float] = {}
        bar = tqdm(total=end, initial=self.t, desc=description, disable=None if progress else True,
                   dynamic_ncols=True, leave=False)
        status = "completed"
        try:
            if self.t == 0 and 0 in eval_steps and not self.schedule.events(0):
                do_eval(0)
            while self.t < end:
                t = self.t
                events = self.apply_events(t)
                if events:
                    record("event", t, {"events": list(events), "ranks": self.ranks})
                    if t in eval_steps:
                        do_eval(t)
                x, y = get_batch(t)
                window.append(self.step(x, y, jax.random.fold_in(key, t)))
                done = self.t
                if done % log_every == 0 or done == end:
                    last_train = _mean_metrics(window)
                    window = []
                    jax.block_until_ready(self.full if self.phase == "full" else self.sides)
                    record("train", done, {**last_train, "lr": self.lr(done - 1)})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in last_train.items()})
                bar.update(1)
                if done in eval_steps and done < T and not self.schedule.events(done):
                    do_eval(done)
                if checkpoint_every and done % checkpoint_every == 0 and done < end:
                    save(done)
            if self.t >= T:
                if self.phase == "ab":
                    self._sync("final_sync")
                    record("event", T, {"events": ["final_sync"], "ranks": self.ranks})
                do_eval(T)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except Exception:
            status = "failed"
            raise
        finally:
            bar.close()
            if ckpt is not None:
                try:
                    if status != "failed" and self.t > (resumed_from or 0) and self.t < T:
                        jax.block_until_ready(self.full if self.phase == "full" else self.sides)
                        save(self.t)
                finally:
                    ckpt.close()
            energy = meter.stop() if meter is not None else None
            if writer is not None:
                writer.close()
        if energy is not None and workdir is not None:
            write_json(workdir / "energy.json", energy)
        summary = {
            "status": status if self.t >= T else "stopped",
            "step": self.t,
            "num_steps": T,
            "resumed_from": resumed_from,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0,
            "compile_s": sum(p.compile_s for p in self.programs.values()),
            "num_programs": len(self.programs),
            "train": last_train,
            "eval": last_eval,
            "ranks": self.ranks,
            "rank_history": self.rank_history,
            "compression": self.compression(),
            "traffic": traffic_by_phase(self.ledger),
        }
        if energy is not None:
            summary["energy"] = to_jsonable(energy)
        return summary

    def compression(self) -> dict[str, Any]:
        """Per factorised layer ``r (m + n) / (m n)`` at the last ranks, and in total (factorised layers; whole model)."""
        ranks = self.ranks or self.full_ranks()
        per_layer, dense, factored = {}, 0, 0
        for p, shape in self.layout.shapes:
            m, n, _ = matrix_shape(shape)
            per_layer[p] = {"shape": list(shape), "m": m, "n": n, "rank": ranks[p],
                            "compression": compression(shape, ranks[p])}
            dense += m * n
            factored += ranks[p] * (m + n)
        rest = sum(int(np.prod(self._init_host.params[k].shape)) for k in self.layout.full_rank)
        return {"layers": per_layer, "factorised": factored / dense if dense else 1.0,
                "model": (factored + rest) / (dense + rest), "factorised_params": factored,
                "dense_params": dense, "full_rank_params": rest, "low_rank": self.ranks is not None}


def _mean_metrics(window: list) -> dict[str, float]:
    host = jax.device_get(window)
    sums: dict[str, list[float]] = {}
    for m in host:
        parts = m.get("_groups", [m])
        for part in parts:
            for k, v in part.items():
                sums.setdefault(k, []).append(float(np.mean(v)))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def traffic_by_phase(ledger: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals of the ledger per phase and overall: calls, intra- and inter-node bytes."""
    phases: dict[str, dict[str, float]] = {}
    for e in ledger.values():
        d = phases.setdefault(e["phase"], {"calls": 0, "intra_bytes": 0.0, "inter_bytes": 0.0})
        d["calls"] += e["calls"]
        d["intra_bytes"] += e["calls"] * e["intra_bytes"]
        d["inter_bytes"] += e["calls"] * e["inter_bytes"]
    total = {"intra_bytes": sum(d["intra_bytes"] for d in phases.values()),
             "inter_bytes": sum(d["inter_bytes"] for d in phases.values())}
    return {"phases": phases, "total": total, "programs": list(ledger.values())}
