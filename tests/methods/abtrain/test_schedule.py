"""The phase schedule (reference trainers/ab_lowrank.py) and the learning-rate rebound."""

import pytest

from jaxlab.methods.abtrain import LearningRate, Schedule


def test_vgg16_schedule_scaled_to_3000_steps():
    s = Schedule(15000, 4330, 759, 60).scaled(3000)
    assert s == Schedule(3000, 866, 152, 12)
    events = s.event_steps()
    assert events[0] == (866, ("decompose",))
    syncs = [t for t, e in events if "sync" in e]
    truncs = [t for t, e in events if "truncate" in e]
    assert syncs == list(range(912, 3000, 152)) and len(syncs) == 14
    assert truncs == [t + 12 for t in syncs]
    assert s.full_rank_steps() == 866 + 14 * 12 == 1034
    assert [s.phase(t) for t in (865, 866, 911, 912, 923, 924, 2999)] == ["full", "ab", "ab", "full", "full", "ab", "ab"]


def test_phase_is_a_function_of_the_step_and_events_switch_it():
    s = Schedule(40, 7, 5, 2)
    for t in range(1, 40):
        changed = s.phase(t) != s.phase(t - 1)
        assert changed == bool(s.events(t)), t
    assert s.events(7) == ("decompose",) and s.events(10) == ("sync",) and s.events(12) == ("truncate",)
    assert s.events(5) == ()  # syncs only after the warm-up


def test_warmup_covering_the_run_is_data_parallelism():
    s = Schedule(50, 50, 10, 2)
    assert not s.active and s.event_steps() == [] and s.full_rank_steps() == 50
    assert Schedule(50, 80, 10, 2).event_steps() == []


def test_sync_and_truncate_at_once_when_no_full_steps():
    assert Schedule(30, 4, 5, 0).events(5) == ("sync", "truncate")


@pytest.mark.parametrize("bad", [{"full_steps": 5}, {"sync_every": 0}, {"total_steps": 0}, {"warmup_steps": -1}])
def test_schedule_validates(bad):
    kw = {"total_steps": 20, "warmup_steps": 2, "sync_every": 5, "full_steps": 1} | bad
    with pytest.raises(ValueError):
        Schedule(**kw)


def test_rebound_follows_the_reference_rule():
    s = Schedule(100, 20, 30, 3)  # events: 20 decompose, 30 sync, 33 truncate, 60, 63, 90, 93
    lr = LearningRate(1e-3, 100, warmup_steps=10, cooldown_steps=5, rebound_steps=8, schedule=s)
    base = LearningRate(1e-3, 100, warmup_steps=10, cooldown_steps=5)
    assert lr(5) == base(5) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    before = lr(19)
    for k in range(1, 9):
        assert lr(19 + k) == pytest.approx(min(base(19 + k), k * (before - 1e-5) / 8))
    assert lr(28) == base(28)
    # a rebound that starts inside another starts from the lowered rate
    b29 = lr(29)
    assert lr(32) == pytest.approx(min(base(32), 3 * (b29 - 1e-5) / 8))
    low = lr(32)
    assert lr(33) == pytest.approx(min(base(33), (low - 1e-5) / 8))
    assert lr(34) == pytest.approx(min(base(34), 2 * (low - 1e-5) / 8))
    # rebounds that start from min_lr stay at 0, as the reference's (lr - 1e-5) / R does
    assert min(lr(t) for t in range(101)) >= 0 and lr(95) == 0.0 and base(100) == 1e-5
