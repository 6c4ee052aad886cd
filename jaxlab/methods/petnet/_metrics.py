"""Coincidence metrics: strict pair F1 by decay ID, and the reference's metric with its bugs fixed.

Predictions are spike lists ``(sample, crystal, time)`` (from a network's dense output with
:func:`spikes_from_dense`, or from a sorter's accepted hits with :func:`spikes_from_hits`); the label is
the list of both photons of every true coincidence at its decay time, with the decay ID
(:func:`label_list`). Counts add up over batches (:class:`PairCounts`), so large test sets are scored
batch by batch.

Matching (both metrics): on each (sample, crystal), predicted spikes are taken in time order and each is
matched to the nearest (in ``|Δt|``, the earlier on a tie) not yet matched label hit within ``tol`` steps.

**Strict pair F1.** A true coincidence is recovered iff both of its label hits are matched. With ``TP``
recovered coincidences, ``P`` predicted spikes and ``N`` true coincidences, precision ``= TP / (P/2)``
(a prediction of ``P`` spikes claims ``P/2`` pairs), recall ``= TP / N`` and ``F1 = 2 TP / (P/2 + N)``.
The default tolerance is the preset's ``delay_max`` (20 steps): the label sits at the undelayed decay
time and a hit is recorded up to ``delay_max`` steps earlier, so a sorter that emits at the hit times is
judged on which hits it pairs, not on when it emits them.

**Reference-compatible metric** (``train_snn.evaluate_spikes`` and ``calc_f1``), with these bugs fixed:

1. "nearest" target: the reference compares signed differences (``hit - pred < best - pred``) and so takes
   the earliest target on the crystal; here the nearest in ``|Δt|``;
2. ``calc_f1`` pairs the label hits by adjacency in a time sort that is not stable (two decays at one
   step interleave); here by decay ID;
3. ``calc_f1`` has a typo (``taget_hit``) that raises a ``NameError`` whenever a crystal holds more than one
   predicted spike; here it is computed;
4. recall is ``TP / (TP + FP)`` there (so it equals precision); here ``TP / (TP + FN)``;
5. ``evaluate_SCW.py`` divides false hits and ``|Δt|`` by the batch size and then again by the number of
   test samples; here once, by the number of samples and of matched hits;
6. ``train_snn.evaluate_spikes`` rounds an odd per-sample count of recovered hits down to even; dropped.

Kept as in the reference: matching on the crystal only (no time limit: ``tol = inf``), "trues" as the
fraction of label hits matched, and false positives counted in *hits* (unmatched predicted spikes) next
to true positives counted in *pairs*, which is the reference's definition of its precision.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from ._encode import Hits, label_hits
from ._simulate import PETData


@dataclasses.dataclass
class Spikes:
    """A flat spike list (NumPy): ``sample``, ``crystal``, ``time`` of each spike (int64)."""

    sample: np.ndarray
    crystal: np.ndarray
    time: np.ndarray


@dataclasses.dataclass
class Labels:
    """The label hits as a flat list: ``sample``, ``crystal``, ``time`` and decay ID ``decay``."""

    sample: np.ndarray
    crystal: np.ndarray
    time: np.ndarray
    decay: np.ndarray


def spikes_from_dense(pred, sample_offset: int = 0) -> Spikes:
    """Spikes of dense trains ``(B, T, C)``; an entry of value ``n >= 1`` is ``n`` spikes."""
    x = np.asarray(pred)
    b, t, c = np.nonzero(x)
    n = np.rint(x[b, t, c]).astype(np.int64)
    n = np.maximum(n, 1)
    rep = lambda a: np.repeat(a.astype(np.int64), n)  # noqa: E731
    return Spikes(sample=rep(b) + sample_offset, crystal=rep(c), time=rep(t))


def spikes_from_hits(hits: Hits, keep, time=None, sample_offset: int = 0) -> Spikes:
    """Spikes at the accepted hits (``keep`` ``(B, M)``), at ``time`` if given else the hit times."""
    k = np.asarray(keep) & np.asarray(hits.valid)
    b, m = np.nonzero(k)
    t = np.asarray(hits.time if time is None else time)
    return Spikes(sample=b.astype(np.int64) + sample_offset, crystal=np.asarray(hits.crystal)[b, m].astype(np.int64),
                  time=t[b, m].astype(np.int64))


def label_list(data: PETData, sample_offset: int = 0) -> Labels:
    """Both photons of every true coincidence, at the decay time, with decay IDs."""
    h = label_hits(data)
    v = np.asarray(h.valid)
    b, m = np.nonzero(v)
    return Labels(sample=b.astype(np.int64) + sample_offset, crystal=np.asarray(h.crystal)[b, m].astype(np.int64),
                  time=np.asarray(h.time)[b, m].astype(np.int64), decay=np.asarray(h.decay)[b, m].astype(np.int64))


def match_spikes(pred: Spikes, labels: Labels, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching on each (sample, crystal), see the module notes.

    Returns:
      ``(label_match, abs_dt)``: for each label hit the index of its predicted spike (-1: unmatched) and
      ``|Δt|`` (0 where unmatched).
    """
    big = np.int64(1) << 40
    pk = pred.sample * big + pred.crystal
    lk = labels.sample * big + labels.crystal
    po = np.lexsort((pred.time, pk))
    lo = np.lexsort((labels.time, lk))
    label_match = np.full(lk.size, -1, np.int64)
    abs_dt = np.zeros(lk.size, np.int64)
    # only groups present in both lists need work
    common = np.intersect1d(pk, lk)
    if common.size == 0:
        return label_match, abs_dt
    pks, lks = pk[po], lk[lo]
    p_start, p_end = np.searchsorted(pks, common), np.searchsorted(pks, common, side="right")
    l_start, l_end = np.searchsorted(lks, common), np.searchsorted(lks, common, side="right")
    for g in range(common.size):
        ls = lo[l_start[g]:l_end[g]]
        lt = labels.time[ls]
        free = np.ones(ls.size, bool)
        for p in po[p_start[g]:p_end[g]]:
            d = np.abs(lt - pred.time[p]).astype(np.float64)
            d[~free] = np.inf
            j = int(np.argmin(d))  # the first minimum: the earlier label on a tie
            if np.isfinite(d[j]) and d[j] <= tol:
                free[j] = False
                label_match[ls[j]] = p
                abs_dt[ls[j]] = int(d[j])
    return label_match, abs_dt


@dataclasses.dataclass
class PairCounts:
    """Additive counts behind both metrics (sum them over batches with ``+``)."""

    samples: int = 0
    true_pairs: int = 0
    pred_spikes: int = 0
    tp_pairs: int = 0
    label_hits: int = 0
    matched_hits: int = 0
    abs_dt_sum: int = 0

    def __add__(self, other: "PairCounts") -> "PairCounts":
        return PairCounts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def pair_counts(pred: Spikes, labels: Labels, num_samples: int, tol: float) -> PairCounts:
    """Counts of one batch: matching with tolerance ``tol`` (``math.inf`` for the reference metric)."""
    match, dt = match_spikes(pred, labels, tol)
    matched = match >= 0
    if labels.decay.size:
        key = labels.sample * (np.int64(1) << 32) + labels.decay
        uniq, inv = np.unique(key, return_inverse=True)
        both = np.bincount(inv, weights=matched, minlength=uniq.size) >= 2
        n_pairs, tp = int(uniq.size), int(both.sum())
    else:
        n_pairs, tp = 0, 0
    return PairCounts(samples=int(num_samples), true_pairs=n_pairs, pred_spikes=int(pred.time.size), tp_pairs=tp,
                      label_hits=int(labels.time.size), matched_hits=int(matched.sum()),
                      abs_dt_sum=int(dt[matched].sum()))


def _div(a: float, b: float, empty: float) -> float:
    return float(a) / float(b) if b else empty


def strict_scores(c: PairCounts) -> dict[str, float]:
    """Strict pair precision, recall, F1 (see the module notes), hit recovery and timing."""
    claimed = c.pred_spikes / 2.0
    precision = _div(c.tp_pairs, claimed, 1.0)
    recall = _div(c.tp_pairs, c.true_pairs, 1.0)
    f1 = _div(2.0 * c.tp_pairs, claimed + c.true_pairs, 1.0)
    return {"f1": f1, "precision": precision, "recall": recall,
            "trues": _div(c.matched_hits, c.label_hits, 1.0),
            "false_spikes_per_sample": _div(c.pred_spikes - c.matched_hits, c.samples, 0.0),
            "mean_abs_dt": _div(c.abs_dt_sum, c.matched_hits, 0.0)}


def reference_scores(c: PairCounts) -> dict[str, float]:
    """The reference's metric with the bugs listed in the module notes fixed (use counts with ``tol=inf``)."""
    fp = c.pred_spikes - c.matched_hits
    fn = c.true_pairs - c.tp_pairs
    precision = _div(c.tp_pairs, c.tp_pairs + fp, 1.0)
    recall = _div(c.tp_pairs, c.tp_pairs + fn, 1.0)
    f1 = _div(2 * precision * recall, precision + recall, 0.0)
    return {"ref_f1": f1, "ref_precision": precision, "ref_recall": recall,
            "ref_trues": _div(c.matched_hits, c.label_hits, 1.0),
            "ref_false_hits_per_sample": _div(fp, c.samples, 0.0),
            "ref_mean_abs_dt": _div(c.abs_dt_sum, c.matched_hits, 0.0)}


class Scorer:
    """Accumulates strict (tolerance ``tol``) and reference-compatible counts over batches.

    Examples:
      >>> import jax
      >>> from jaxlab.methods.petnet import simulate, encode_labels
      >>> data = simulate(jax.random.key(0), "reduced", num_samples=16)
      >>> s = Scorer(tol=20)
      >>> s.add_dense(encode_labels(data, "reduced"), data)
      >>> s.scores()["f1"], s.scores()["ref_f1"]
      (1.0, 1.0)
    """

    def __init__(self, tol: float):
        self.tol = tol
        self.strict = PairCounts()
        self.ref = PairCounts()
        self._offset = 0

    def _add(self, pred: Spikes, labels: Labels, n: int) -> None:
        self.strict = self.strict + pair_counts(pred, labels, n, self.tol)
        self.ref = self.ref + pair_counts(pred, labels, n, math.inf)
        self._offset += n

    def add_dense(self, pred, data: PETData) -> None:
        """Adds a batch of dense predictions ``(B, T, C)`` for the samples ``data``."""
        pred = jax.device_get(pred)
        self._add(spikes_from_dense(pred), label_list(data), data.num_samples)

    def add_hits(self, hits: Hits, keep, data: PETData, time=None) -> None:
        """Adds a sorter's accepted hits (``keep``), emitted at ``time`` (default: the hit times)."""
        self._add(spikes_from_hits(hits, keep, time), label_list(data), data.num_samples)

    def scores(self) -> dict[str, float]:
        return {**strict_scores(self.strict), **reference_scores(self.ref)}
