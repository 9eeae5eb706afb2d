"""The one retry policy, pinned down by a table: every answer the API can give, through
the client's typed error, to what the submit and poll loops do next. Pure functions:
nothing here sleeps or opens a socket."""

from __future__ import annotations

import email.utils
import json
import random
import time

import pytest

from runner.api.answers import error_for, retry_after_seconds
from runner.core.errors import SubmitOutcomeUnknown, TransportError
from runner.engine.retry import (
    BACKOFF_CAP_S,
    RETRY_AFTER_CAP_S,
    Action,
    RetryLimits,
    after_download_error,
    after_poll_error,
    after_submit_error,
    backoff_delay,
    capped_retry_after,
)

A, R = Action, random.Random(7)


def answer(status: int, reason: str = "") -> str:
    return json.dumps({"code": status, "reason": reason, "message": "m"}) if reason else "<html/>"


# (HTTP status, reason, what a submit does next, what a poll does next)
TABLE = [
    (400, "INVALID_IMAGE_FORMAT", A.REFUSED, A.RETRY),
    (400, "ILLEGAL_PROMPT", A.REFUSED, A.RETRY),
    (400, "MISSING_API_KEY", A.STOP_RUN, A.STOP_RUN),
    (400, "BILLING_BALANCE_NOT_ENOUGH", A.STOP_RUN, A.STOP_RUN),
    (401, "UNAUTHORIZED", A.STOP_RUN, A.STOP_RUN),
    (403, "INVALID_API_KEY", A.STOP_RUN, A.STOP_RUN),
    (403, "FEATURE_NOT_ALLOWED", A.STOP_RUN, A.STOP_RUN),
    (404, "NOT_FOUND", A.STOP_RUN, A.NOT_FOUND),  # submit: a wrong base URL or model path
    (404, "TASK_NOT_FOUND", A.STOP_RUN, A.NOT_FOUND),  # poll: not proof, asked again
    (429, "RATE_LIMIT_EXCEEDED", A.PAUSE_ALL, A.PAUSE_ALL),
    (500, "CREATE_TASK_FAILED", A.RETRY, A.RETRY),  # the answer says nothing was made
    # Listed by name only: no source says they come before a task is made (issue 28).
    (500, "BILLING_FAILED", A.UNKNOWN, A.RETRY),
    (500, "TASK_FAILED", A.UNKNOWN, A.RETRY),
    (500, "GET_RESULT_FAILED", A.UNKNOWN, A.RETRY),
    (500, "INTERNAL_ERROR", A.UNKNOWN, A.RETRY),  # may have made a task: never resent
    (502, "", A.UNKNOWN, A.RETRY),  # a gateway's HTML
    (503, "SERVICE_UNAVAILABLE", A.RETRY, A.RETRY),
    (504, "", A.UNKNOWN, A.RETRY),
]


@pytest.mark.parametrize(("status", "reason", "submit", "poll"), TABLE)
def test_every_answer_has_one_decision_for_each_loop(status, reason, submit, poll):
    submitted = error_for(status, answer(status, reason), {}, submitting=True)
    polled = error_for(status, answer(status, reason), {}, submitting=False)
    assert after_submit_error(submitted, failures=1, rate_limited=1, rng=R).action == submit
    assert after_poll_error(polled, errors=1, rng=R).action == poll


def test_no_connection_is_retried_and_a_lost_answer_never_is():
    sent = after_submit_error(SubmitOutcomeUnknown("dropped"), failures=1, rate_limited=0, rng=R)
    assert sent.action == A.UNKNOWN
    refused = after_submit_error(TransportError("refused"), failures=1, rate_limited=0, rng=R)
    assert refused.action == A.RETRY and 0.5 <= refused.delay_s <= 1.0


@pytest.mark.parametrize(
    ("failures", "rate_limited", "action"),
    [(8, 0, A.RETRY), (9, 0, A.GIVE_UP), (0, 50, A.PAUSE_ALL), (0, 51, A.GIVE_UP)],
)
def test_each_kind_of_retry_has_its_own_budget(failures, rate_limited, action):
    limits = RetryLimits(transient=8, rate_limited=50)
    error = error_for(*((429,) if rate_limited else (503,)), "", {}, submitting=True)
    decision = after_submit_error(
        error, failures=failures, rate_limited=rate_limited, rng=R, limits=limits
    )
    assert decision.action == action


def test_backoff_doubles_is_capped_and_is_the_same_for_the_same_seed():
    assert 0.5 <= backoff_delay(0, random.Random(1)) <= 1.0
    assert 4.0 <= backoff_delay(3, random.Random(1)) <= 8.0
    assert BACKOFF_CAP_S / 2 <= backoff_delay(20, random.Random(1)) <= BACKOFF_CAP_S
    assert backoff_delay(2, random.Random(5)) == backoff_delay(2, random.Random(5))


@pytest.mark.parametrize(
    ("given", "used"), [(None, None), (-3.0, 0.0), (2.5, 2.5), (86_400.0, RETRY_AFTER_CAP_S)]
)
def test_retry_after_is_never_negative_and_never_a_night(given, used):
    assert capped_retry_after(given) == used


def test_a_download_is_retried_a_few_times_then_left_for_the_next_run():
    limits = RetryLimits(downloads=2)
    assert after_download_error(0, rng=R, limits=limits).action == A.RETRY
    assert after_download_error(1, rng=R, limits=limits).action == A.RETRY
    assert after_download_error(2, rng=R, limits=limits).action == A.GIVE_UP


def test_a_retry_after_date_counts_from_the_answers_own_date():
    """Our clock ten minutes behind the server's: the pause is still the server's 30 s."""
    server_now = time.time() + 600
    headers = {
        "Retry-After": email.utils.formatdate(server_now + 30, usegmt=True),
        "Date": email.utils.formatdate(server_now, usegmt=True),
    }
    assert retry_after_seconds(headers) == pytest.approx(30, abs=1)
    assert retry_after_seconds({"Retry-After": "12"}) == 12
    assert retry_after_seconds({"Retry-After": "soon"}) is None
