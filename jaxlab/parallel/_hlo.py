"""Counting the collectives of a compiled program from its optimized HLO text.

``collective_stats(compiled.as_text(), num_devices)`` finds every all-gather, all-reduce,
reduce-scatter, collective-permute and all-to-all (synchronous or ``-start`` of an async pair), its
result shape(s) and its group size, and estimates the bytes each device receives:

=====================  ============================================
op                     bytes received per device (result bytes R, group size n)
=====================  ============================================
all-gather             R * (n - 1) / n
reduce-scatter         R * (n - 1)
all-reduce             2 * R * (n - 1) / n   (ring: reduce-scatter + all-gather)
collective-permute     R
all-to-all             R * (n - 1) / n
=====================  ============================================

Ops inside loops (``while`` bodies) are counted once, as they appear in the text.

``node_traffic(stats, node_size=4, device_ids=...)`` splits those bytes into intra-node and inter-node
bytes, for devices grouped into nodes of ``node_size`` consecutive ids (see its docstring for the model).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "collective-permute", "all-to-all")

_DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
    "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
}
_OP_RE = re.compile(
    r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(?P<shape>.+?)\s+(?P<op>" + "|".join(COLLECTIVES) + r")(?P<start>-start)?\("
)
_SHAPE_RE = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective op of an HLO module."""

    op: str
    result_bytes: int
    group_size: int
    received_bytes: float
    line: str
    #: The device groups as partition indices of the program: ``replica_groups`` expanded (every format),
    #: or the ``(source, target)`` pairs of a collective-permute.
    groups: tuple[tuple[int, ...], ...] = ()


def _shape_bytes(text: str) -> list[int]:
    out = []
    for dtype, dims in _SHAPE_RE.findall(text):
        if dtype not in _DTYPE_BYTES:
            continue
        n = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
        out.append(n * _DTYPE_BYTES[dtype])
    return out


def _group_size(line: str, num_devices: int) -> int:
    m = re.search(r"replica_groups=\{(\{[0-9,]*\})", line)
    if m:
        return max(1, len([x for x in m.group(1).strip("{}").split(",") if x]))
    m = re.search(r"replica_groups=\[([0-9,]+)\]<=", line)
    if m:
        return int(m.group(1).split(",")[-1])
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)
    if m:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group(1)))
        names = re.findall(r"'([^']+)'", m.group(2))
        return math.prod(int(sizes[n]) for n in names) if names else num_devices
    return num_devices


def _iota(text: str) -> np.ndarray:
    """``[a,b]<=[d0,d1]T(1,0)``: iota over ``d``, transposed by ``T``, reshaped to ``[a,b]``."""
    m = re.fullmatch(r"\[([0-9,]+)\]<=\[([0-9,]+)\](?:T\(([0-9,]+)\))?", text.strip())
    if not m:
        raise ValueError(f"cannot parse the iota device list {text!r}")
    out = [int(x) for x in m.group(1).split(",")]
    dims = [int(x) for x in m.group(2).split(",")]
    ids = np.arange(math.prod(dims)).reshape(dims)
    if m.group(3):
        ids = ids.transpose([int(x) for x in m.group(3).split(",")])
    return ids.reshape(out)


def _mesh_groups(mesh_text: str, axes_text: str) -> list[list[int]]:
    """Groups of ``mesh['a'=2,'b'=4](, device_ids=(...))? {'b'}``, sub-axes ``'a':(pre)size`` included."""
    sizes = [(n, int(v)) for n, v in re.findall(r"'([^']+)'=(\d+)", mesh_text)]
    total = math.prod(v for _, v in sizes)
    ids = np.arange(total)
    dev = re.search(r"device_ids=\((.*)\)\s*$", mesh_text)
    if dev:
        inner = dev.group(1).strip()
        ids = _iota(inner).reshape(-1) if "<=" in inner else np.asarray([int(x) for x in re.findall(r"\d+", inner)])
    refs: dict[str, list[tuple[int, int] | None]] = {}
    order: list[tuple[str, tuple[int, int] | None]] = []
    for name, pre, size in re.findall(r"'([^']+)'(?::\((\d+)\)(\d+))?", axes_text):
        ref = (int(pre), int(size)) if pre else None
        refs.setdefault(name, []).append(ref)
        order.append((name, ref))
    dims: list[int] = []
    grouped: dict[tuple[str, tuple[int, int] | None], int] = {}
    for name, n in sizes:
        subs = refs.get(name)
        if not subs:
            dims.append(n)
            continue
        if subs == [None]:
            grouped[(name, None)] = len(dims)
            dims.append(n)
            continue
        prefix = 1
        for pre, size in sorted(s for s in subs if s is not None):
            if pre != prefix:
                dims.append(pre // prefix)
                prefix = pre
            grouped[(name, (pre, size))] = len(dims)
            dims.append(size)
            prefix *= size
        if prefix != n:
            dims.append(n // prefix)
    group_dims = [grouped[r] for r in order]
    rest = [i for i in range(len(dims)) if i not in group_dims]
    arr = ids.reshape(dims).transpose(rest + group_dims)
    size = math.prod(dims[i] for i in group_dims) if group_dims else 1
    return arr.reshape(-1, size).tolist()


def replica_groups(line: str, num_devices: int) -> tuple[tuple[int, ...], ...]:
    """The device groups of one collective's HLO line, as partition indices, in every printed format.

    Explicit ``{{0,1},{2,3}}``, iota ``[2,4]<=[8]`` (with an optional ``T(...)`` transpose), mesh axes
    ``mesh['x'=2,'y'=4] {'y'}`` (with sub-axes and ``device_ids``), empty ``{}`` or absent (one group of all
    ``num_devices``), and a collective-permute's ``source_target_pairs`` (one ``(source, target)`` per pair).

    Examples:
      >>> replica_groups("x = f32[4] all-reduce(y), replica_groups=[2,4]<=[4,2]T(1,0), to_apply=add", 8)
      ((0, 2, 4, 6), (1, 3, 5, 7))
    """
    m = re.search(r"source_target_pairs=\{((?:\{[0-9,]*\},?)*)\}", line)
    if m:
        return tuple(tuple(int(x) for x in g.split(",") if x) for g in re.findall(r"\{([0-9,]*)\}", m.group(1)))
    m = re.search(r"replica_groups=\{((?:\{[0-9,]*\},?)*)\}", line)
    if m:
        groups = tuple(tuple(int(x) for x in g.split(",") if x) for g in re.findall(r"\{([0-9,]*)\}", m.group(1)))
        return groups or (tuple(range(num_devices)),)
    m = re.search(r"replica_groups=(\[[0-9,]+\]<=\[[0-9,]+\](?:T\([0-9,]+\))?)", line)
    if m:
        return tuple(tuple(int(x) for x in g) for g in _iota(m.group(1)).tolist())
    m = re.search(r"replica_groups=(mesh\[[^\]]*\](?:,\s*device_ids=\(.*?\))?)\s*\{([^}]*)\}", line)
    if m:
        return tuple(tuple(g) for g in _mesh_groups(m.group(1), m.group(2)))
    return (tuple(range(num_devices)),)


def collective_stats(hlo_text: str, num_devices: int) -> list[Collective]:
    """Every collective in ``hlo_text`` (the text of ``jit(f).lower(...).compile().as_text()``).

    Args:
      hlo_text: optimized HLO module text.
      num_devices: devices in the program (the group size when ``replica_groups`` is empty).
    """
    found = []
    for line in hlo_text.splitlines():
        m = _OP_RE.match(line)
        if not m:
            continue
        op, shapes = m.group("op"), _shape_bytes(m.group("shape"))
        if not shapes:
            continue
        if m.group("start"):
            # async tuples: all-gather-start (operand, output); collective-permute-start (operand,
            # output, u32 contexts); all-reduce-start returns its outputs.
            r = max(shapes) if op == "all-gather" else (shapes[0] if op == "collective-permute" else sum(shapes))
        else:
            r = sum(shapes)
        n = 2 if op == "collective-permute" else _group_size(line, num_devices)
        if op == "all-gather":
            recv = r * (n - 1) / n
        elif op == "reduce-scatter":
            recv = r * (n - 1)
        elif op == "all-reduce":
            recv = 2 * r * (n - 1) / n
        elif op == "collective-permute":
            recv = float(r)
        else:
            recv = r * (n - 1) / n
        found.append(Collective(op, int(r), n, float(recv), line.strip()[:200],
                                groups=replica_groups(line, num_devices)))
    return found


def summarize_collectives(stats: list[Collective]) -> dict[str, dict[str, float]]:
    """Per op kind: ``count``, ``result_bytes`` and ``received_bytes`` summed, plus a ``total``."""
    out: dict[str, dict[str, float]] = {}
    for c in stats:
        d = out.setdefault(c.op, {"count": 0, "result_bytes": 0, "received_bytes": 0.0})
        d["count"] += 1
        d["result_bytes"] += c.result_bytes
        d["received_bytes"] += c.received_bytes
    out["total"] = {
        "count": sum(d["count"] for d in out.values()),
        "result_bytes": sum(d["result_bytes"] for d in out.values()),
        "received_bytes": sum(d["received_bytes"] for d in out.values()),
    }
    return out


def node_traffic(stats: Sequence[Collective], *, node_size: int,
                 device_ids: Sequence[int] | None = None) -> dict[str, float]:
    """Bytes that the devices of a program receive, split into intra-node and inter-node bytes.

    Devices belong to nodes of ``node_size`` consecutive ids (device id ``d`` is on node ``d // node_size``;
    8 fake CPU devices with ``node_size=4`` are 2 nodes x 4). The model is the bandwidth-optimal ring
    (NCCL's ring algorithm) over the best ordering of each group, the one that keeps every node's members
    adjacent: all-reduce, all-gather and reduce-scatter move the bytes of :func:`collective_stats` from
    each device's ring predecessor, so a group spanning ``k > 1`` nodes has ``k`` members whose
    predecessor is on another node and whose bytes are inter-node; a group inside one node is all
    intra-node. All-to-all sends ``R / n`` directly between every pair; a collective-permute pair is
    inter-node when source and target nodes differ.

    Args:
      stats: the collectives of one program (:func:`collective_stats`).
      node_size: devices per node.
      device_ids: the global device id of each partition of the program (``[d.id for d in
        mesh.devices.flat]`` for a jit over ``mesh``); default ``0, 1, 2, ...``.

    Returns:
      ``intra_bytes`` and ``inter_bytes`` summed over all receiving devices, and ``total_bytes``.

    Examples:
      >>> line = "x = f32[256]{0} all-reduce(y), replica_groups={{0,1,2,3,4,5,6,7}}, to_apply=add"
      >>> node_traffic(collective_stats(line, 8), node_size=4)["inter_bytes"]   # 2 of 8 ring links cross
      3584.0
    """
    if node_size < 1:
        raise ValueError(f"node_size must be >= 1, got {node_size}")
    intra = inter = 0.0
    ids = list(device_ids) if device_ids is not None else None

    def node(p: int) -> int:
        return (ids[p] if ids is not None else p) // node_size

    for c in stats:
        groups = c.groups or ((),)
        if c.op == "collective-permute":
            for pair in groups:
                if len(pair) != 2:
                    continue
                if node(pair[0]) == node(pair[1]):
                    intra += c.result_bytes
                else:
                    inter += c.result_bytes
            continue
        for g in groups:
            n = len(g)
            if n < 2:
                continue
            nodes = [node(p) for p in g]
            if c.op == "all-to-all":
                per_pair = c.result_bytes / n
                cross = sum(1 for a in nodes for b in nodes if a != b)
                inter += per_pair * cross
                intra += per_pair * (n * (n - 1) - cross)
                continue
            per_device = c.received_bytes  # what each member receives from its ring predecessor
            k = len(set(nodes))
            crossing = k if k > 1 else 0
            inter += per_device * crossing
            intra += per_device * (n - crossing)
    return {"intra_bytes": intra, "inter_bytes": inter, "total_bytes": intra + inter}
