"""The exit-code policy as a table: what a run that reached its end, or stopped, exits
with (``runner.core.exits.exit_code_of_run``; the command line and the library both
call it, and the README's table says the same)."""

from __future__ import annotations

import pytest

from runner.core.errors import (
    ApiUnreachable,
    BadNight,
    FolderChanged,
    Interrupted,
    MachineTrouble,
    RunFolderError,
    UsageError,
)
from runner.core.exits import exit_code_for_error, exit_code_of_run

ALL_DONE = {"succeeded": 3}
ONE_FAILED = {"succeeded": 2, "failed": 1}
ONE_STALLED = {"succeeded": 2, "stalled": 1}
ONE_LOST = {"succeeded": 2, "lost": 1}
RETIRED_TOO = {"succeeded": 2, "retired": 4}
ONLY_RETIRED = {"retired": 2}
ONE_UNKNOWN = {"succeeded": 2, "unknown": 1}
ONE_PENDING = {"succeeded": 2, "pending": 1}


@pytest.mark.parametrize(
    ("counts", "videos_missing", "stop", "stopped", "code"),
    [
        (ALL_DONE, 0, None, False, 0),
        (RETIRED_TOO, 0, None, False, 0),  # rows that left the manifest ask for nothing
        (ONLY_RETIRED, 0, None, False, 1),  # nothing succeeded: nothing to show for it
        (ONE_FAILED, 0, None, False, 1),
        (ONE_UNKNOWN, 0, None, False, 1),  # may exist and be billed: a person looks
        (ONE_PENDING, 0, None, False, 1),
        (ONE_LOST, 0, None, False, 1),
        (ONE_STALLED, 0, None, False, 4),  # only stalled: resume later, nothing to rerun
        ({"succeeded": 2, "stalled": 1, "failed": 1}, 0, None, False, 1),
        (ALL_DONE, 1, None, False, 1),  # a video still to fetch
        (ONE_STALLED, 1, None, False, 1),
        (ALL_DONE, 0, Interrupted("Ctrl-C"), True, 130),
        (ONE_FAILED, 0, Interrupted("SIGTERM"), True, 130),
        (ALL_DONE, 0, MachineTrouble("disk full"), True, 3),
        (ALL_DONE, 0, ApiUnreachable("no route"), True, 3),
        (ALL_DONE, 0, FolderChanged("ledger replaced"), True, 3),
        (ALL_DONE, 0, None, True, 3),  # stopped with no error: the API or network
        (ONE_FAILED, 0, BadNight("10 failed in a row"), True, 1),  # tasks, not the machine
        (ONE_FAILED, 0, BadNight("10 failed in a row"), False, 1),
    ],
)
def test_a_run_exits_as_the_table_says(counts, videos_missing, stop, stopped, code):
    assert (
        exit_code_of_run(counts, videos_missing=videos_missing, stop=stop, stopped=stopped) == code
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("no such option"), 2),
        (RunFolderError("holds another run"), 2),
        (MachineTrouble("disk full"), 3),
        (ApiUnreachable("no route"), 3),
    ],
)
def test_an_error_that_ends_a_command_exits_as_the_table_says(error, code):
    assert exit_code_for_error(error) == code
