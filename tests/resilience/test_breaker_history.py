"""The breakers' recent history (state changes and probe verdicts) that the console charts."""

from __future__ import annotations

from datetime import timedelta

from paytabs_guard.resilience import BreakerConfig, CircuitBreaker, ManualClock
from paytabs_guard.resilience.history import BreakerHistory

HOUR = timedelta(hours=1)


def _breaker(clock: ManualClock, history: BreakerHistory) -> CircuitBreaker:
    breaker = CircuitBreaker("create", BreakerConfig(), clock=clock, wall_clock=clock.wall)
    breaker.subscribe(history.record)
    return breaker


def test_segments_follow_the_state_changes_within_the_hour() -> None:
    clock, history = ManualClock(), BreakerHistory()
    breaker = _breaker(clock, history)
    start = clock.wall()
    clock.advance(600)
    breaker.force_open()
    clock.advance(300)
    breaker.reset()
    clock.advance(60)
    now = clock.wall()
    segments = history.segments("create", now=now, current="closed", span=HOUR)
    assert [(s.state, s.end - s.start) for s in segments] == [
        ("closed", HOUR - timedelta(seconds=960) + timedelta(seconds=600)),
        ("forced_open", timedelta(seconds=300)),
        ("closed", timedelta(seconds=60)),
    ]
    assert segments[0].start == now - HOUR
    assert segments[-1].end == now
    assert segments[1].start == start + timedelta(seconds=600)
    # An hour later nothing changed within the span: one band in the current state.
    clock.advance(7200)
    quiet = history.segments("create", now=clock.wall(), current="closed", span=HOUR)
    assert [s.state for s in quiet] == ["closed"]
    assert history.segments("query", now=now, current="open", span=HOUR)[0].state == "open"


def test_the_history_is_bounded() -> None:
    clock, history = ManualClock(), BreakerHistory(limit=4)
    breaker = _breaker(clock, history)
    for _ in range(10):
        clock.advance(1)
        breaker.force_open()
        clock.advance(1)
        breaker.reset()
    kept = history.changes("create", clock.wall() - HOUR)
    assert len(kept) == 4
    assert [change.state for change in kept] == ["forced_open", "closed"] * 2


def test_nothing_is_charted_before_the_history_started() -> None:
    clock = ManualClock()
    started = clock.wall()
    history = BreakerHistory(started=started)
    breaker = _breaker(clock, history)
    clock.advance(60)
    quiet = history.segments("create", now=clock.wall(), current="closed", span=HOUR)
    assert [(s.state, s.start, s.end) for s in quiet] == [("closed", started, clock.wall())]
    clock.advance(30)
    breaker.force_open()
    clock.advance(10)
    now = clock.wall()
    segments = history.segments("create", now=now, current="forced_open", span=HOUR)
    assert [(s.state, s.end - s.start) for s in segments] == [
        ("closed", timedelta(seconds=90)),
        ("forced_open", timedelta(seconds=10)),
    ]
    assert segments[0].start == started
    # Once the history is older than the span, the span is the limit again.
    clock.advance(7200)
    assert (
        history.segments("create", now=clock.wall(), current="forced_open", span=HOUR)[0].start
        == clock.wall() - HOUR
    )
