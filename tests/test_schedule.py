"""The poll schedule's decisions, as a table: eta first, then progress extrapolated on the
API's own clock, then the batch's spread (as the API reports durations), then backoff."""

from __future__ import annotations

import pytest

from runner.engine.poll_timing import LEARN_AFTER, Durations, Seen, next_delay


def learned(*seconds: float) -> Durations:
    durations = Durations()
    for value in seconds:
        durations.add(value)
    return durations


SPREAD = learned(*[10.0 + i for i in range(LEARN_AFTER)])  # 10 s .. 29 s, as reported
NOTHING = Durations()
# PollPolicy's defaults, with a 60 s ceiling.
KNOBS = {"min_s": 1.0, "max_s": 60.0, "growth": 1.6, "finish_window_s": 4.0, "detect_within_s": 3.0}


@pytest.mark.parametrize(
    ("seen", "durations", "quiet", "delay"),
    [
        (Seen(12, eta_s=4, progress_percent=40, queued_s=2), SPREAD, 0, 4.0),  # eta first
        # 60% after 2.5 s: done within 250/60 - 2.5 = 1.67 s, inside the eta's last second
        (Seen(3.5, eta_s=2, progress_percent=60, queued_s=1), NOTHING, 0, 250 / 60 - 2.5),
        (Seen(3.5, eta_s=3, progress_percent=60, queued_s=1), NOTHING, 0, 3.0),  # disagrees
        (Seen(20, eta_s=0, progress_percent=40, queued_s=4), NOTHING, 0, 16 * 60 / 40),
        (Seen(20, eta_s=None, progress_percent=80, queued_s=4), NOTHING, 0, 16 * 20 / 80),
        # 3% after 1 s: done in 25 to 33.3 s, too wide; a look narrows it to 4 s once
        # 33.3**2 / (100 * 4) = 2.78 s have passed.
        (Seen(2, eta_s=0, progress_percent=3, queued_s=1), NOTHING, 0, (100 / 3) ** 2 / 400 - 1),
        # 10% after 4 s: done in 36.4 to 40 s; polled 3 s after the earliest finish, so a
        # task done then waits at most 3 s (one still running answers >= 92%).
        (Seen(5, eta_s=0, progress_percent=10, queued_s=1), NOTHING, 0, 400 / 11 + 3 - 4),
        (Seen(20, eta_s=0, progress_percent=99, queued_s=4), NOTHING, 0, 1.0),  # min 1 s
        (Seen(20, eta_s=0, progress_percent=40, queued_s=None), SPREAD, 0, 2.0),  # next tenth
        (Seen(30, eta_s=0, progress_percent=0, queued_s=1), SPREAD, 3, 4.096),  # past them all
        (Seen(5, eta_s=0, progress_percent=None, queued_s=None), NOTHING, 2, 2.56),  # backoff
        (Seen(5, eta_s=600, progress_percent=None, queued_s=None), NOTHING, 0, 60.0),  # max
    ],
)
def test_the_next_poll(seen, durations, quiet, delay):
    got, _ = next_delay(seen, durations, quiet, **KNOBS)
    assert got == pytest.approx(delay)


@pytest.mark.parametrize(
    ("seen", "likely_done"),
    [
        (Seen(12, eta_s=4, progress_percent=None, queued_s=None), True),
        (Seen(20, eta_s=0, progress_percent=60, queued_s=4), True),
        (Seen(2, eta_s=0, progress_percent=3, queued_s=1), False),  # a rough early guess
        (Seen(5, eta_s=0, progress_percent=None, queued_s=None), False),
    ],
)
def test_polls_timed_by_the_task_itself_are_the_ones_likely_to_find_it_done(seen, likely_done):
    assert next_delay(seen, SPREAD, 0, **KNOBS)[1] is likely_done


def test_a_wide_window_is_narrowed_before_the_earliest_finish_at_the_latest():
    """The look that narrows a rough progress never comes after the earliest finish."""
    seen = Seen(21, eta_s=0, progress_percent=2, queued_s=1)  # 2% after 20 s: 667..1000 s
    delay, likely_done = next_delay(seen, NOTHING, 0, **{**KNOBS, "max_s": 10_000.0})
    assert delay == pytest.approx(2000 / 3 - 20) and not likely_done
    wide_enough = {**KNOBS, "max_s": 10_000.0, "finish_window_s": 400.0, "detect_within_s": 400.0}
    precise = next_delay(seen, NOTHING, 0, **wide_enough)
    assert precise == (pytest.approx(1000 - 20), True)  # wide enough: poll at its end


def test_the_spread_is_learned_only_from_enough_reports():
    durations = learned(*[5.0] * (LEARN_AFTER - 1))
    assert durations.quickest_tenth() is None and durations.next_after(1.0) is None
    durations.add(5.0)
    assert durations.quickest_tenth() == 5.0
    assert SPREAD.quickest_tenth() == 12.0 and SPREAD.next_after(12.0) == 14.0


def test_what_is_learned_can_come_down_again():
    """The old schedule learned from when *we* saw tasks done, and so only went up."""
    durations = learned(*[30.0] * 200)
    assert durations.quickest_tenth() == 30.0
    for _ in range(200):
        durations.add(6.0)  # the batch got quicker (as the API reports it)
    assert durations.quickest_tenth() == 6.0
