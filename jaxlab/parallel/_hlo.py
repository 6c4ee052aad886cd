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
"""

from __future__ import annotations

import dataclasses
import math
import re

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
        found.append(Collective(op, int(r), n, float(recv), line.strip()[:200]))
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
