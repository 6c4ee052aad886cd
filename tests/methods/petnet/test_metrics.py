"""Strict pair F1 by decay ID and the bug-fixed reference metric, on hand-made cases and simulated labels."""

import math

import numpy as np
import pytest

from jaxlab.methods.petnet import (Scorer, encode_labels, label_list, match_spikes, pair_counts, reference_scores,
                                   strict_scores)
from jaxlab.methods.petnet._metrics import Labels, Spikes


def _labels(rows):  # (sample, crystal, time, decay)
    a = np.asarray(rows, np.int64).reshape(-1, 4)
    return Labels(sample=a[:, 0], crystal=a[:, 1], time=a[:, 2], decay=a[:, 3])


def _spikes(rows):  # (sample, crystal, time)
    a = np.asarray(rows, np.int64).reshape(-1, 3)
    return Spikes(sample=a[:, 0], crystal=a[:, 1], time=a[:, 2])


LAB = _labels([(0, 3, 50, 0), (0, 40, 50, 0), (0, 7, 120, 1), (0, 33, 120, 1)])


@pytest.fixture(scope="module")
def reduced200(reduced4000):
    """200 simulated samples of the reduced preset (the first of the shared set)."""
    p, d = reduced4000
    return p, d.take(slice(0, 200))


def test_f1_is_one_when_prediction_equals_label(reduced200):
    p, d = reduced200
    s = Scorer(tol=20)
    s.add_dense(encode_labels(d, p), d)
    sc = s.scores()
    assert sc["f1"] == 1.0 and sc["ref_f1"] == 1.0 and sc["trues"] == 1.0 and sc["mean_abs_dt"] == 0.0
    assert s.strict.true_pairs == int(np.asarray(d.true_pair).sum()) > 0


def test_pair_counts_hand_made():
    # pair 0 recovered (one spike 5 steps late), pair 1 only half; one false spike
    pred = _spikes([(0, 3, 55), (0, 40, 50), (0, 7, 121), (0, 20, 80)])
    c = pair_counts(pred, LAB, num_samples=1, tol=20)
    assert (c.tp_pairs, c.true_pairs, c.pred_spikes, c.matched_hits) == (1, 2, 4, 3)
    sc = strict_scores(c)
    assert sc["precision"] == pytest.approx(1 / 2) and sc["recall"] == pytest.approx(1 / 2)
    assert sc["f1"] == pytest.approx(2 * 1 / (2 + 2))
    assert sc["mean_abs_dt"] == pytest.approx(6 / 3) and sc["false_spikes_per_sample"] == 1.0
    ref = reference_scores(c)  # FP in hits (1), FN in pairs (1)
    assert ref["ref_precision"] == pytest.approx(1 / 2) and ref["ref_recall"] == pytest.approx(1 / 2)


def test_tolerance_option():
    pred = _spikes([(0, 3, 71), (0, 40, 50)])
    assert pair_counts(pred, LAB, 1, tol=20).tp_pairs == 0  # 21 steps late
    assert pair_counts(pred, LAB, 1, tol=21).tp_pairs == 1
    assert pair_counts(pred, LAB, 1, tol=math.inf).tp_pairs == 1  # the reference matches on the crystal only


def test_nearest_not_earliest_and_one_to_one():
    # two decays with a hit on crystal 5, at 10 and 30; a prediction at 28 belongs to the second
    lab = _labels([(0, 5, 10, 0), (0, 9, 10, 0), (0, 5, 30, 1), (0, 12, 30, 1)])
    m, dt = match_spikes(_spikes([(0, 5, 28), (0, 12, 30)]), lab, tol=math.inf)
    np.testing.assert_array_equal(m, [-1, -1, 0, 1])  # the reference's signed comparison would take t = 10
    assert pair_counts(_spikes([(0, 5, 28), (0, 12, 30)]), lab, 1, math.inf).tp_pairs == 1
    # one spike cannot recover two label hits
    m, _ = match_spikes(_spikes([(0, 5, 20)]), lab, tol=math.inf)
    assert (m >= 0).sum() == 1


def test_pairs_are_by_decay_id_and_sample():
    # the same crystals in two samples: a spike in sample 1 does not recover sample 0's hit
    lab = _labels([(0, 3, 50, 0), (0, 40, 50, 0)])
    assert pair_counts(_spikes([(0, 3, 50), (1, 40, 50)]), lab, 2, 20).tp_pairs == 0
    # two decays at the same time: recovering one hit of each is no pair
    lab2 = _labels([(0, 3, 50, 0), (0, 40, 50, 0), (0, 7, 50, 1), (0, 33, 50, 1)])
    assert pair_counts(_spikes([(0, 3, 50), (0, 33, 50)]), lab2, 1, 20).tp_pairs == 0


def test_empty_cases():
    empty = _spikes(np.zeros((0, 3)))
    sc = strict_scores(pair_counts(empty, LAB, 1, 20))
    assert sc["f1"] == 0.0 and sc["recall"] == 0.0 and sc["precision"] == 1.0
    none = _labels(np.zeros((0, 4)))
    sc = strict_scores(pair_counts(_spikes([(0, 1, 1), (0, 2, 1)]), none, 1, 20))
    assert sc["precision"] == 0.0 and sc["f1"] == 0.0


def test_batches_add_up(reduced200):
    p, d = reduced200
    y = np.array(encode_labels(d, p))
    y[:, :, :7] = 0  # drop some hits so the score is not trivial
    whole = Scorer(20)
    whole.add_dense(y, d)
    parts = Scorer(20)
    for s in (slice(0, 70), slice(70, 200)):
        parts.add_dense(y[s], d.take(s))
    assert whole.strict == parts.strict and whole.ref == parts.ref
    assert 0 < whole.scores()["f1"] < 1
    assert label_list(d).time.size == 2 * int(np.asarray(d.true_pair).sum())
