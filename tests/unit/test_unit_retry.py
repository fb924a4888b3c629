"""RetryPolicy: backoff bounds and jitter, Retry-After, limits, and what may be retried."""

from __future__ import annotations

import random

import pytest

from comet_provider.exceptions import (
    CometAPIError,
    CometAuthError,
    CometBadRequestError,
    CometConnectionError,
    CometError,
    CometMalformedResponseError,
    CometRateLimitError,
    CometServerError,
    CometSubmissionUncertainError,
    RunwayTaskNotFoundError,
)
from comet_provider.utils.retry import RetryPolicy

SERVER = CometServerError("boom", status_code=503)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 10, 30])
def test_backoff_within_equal_jitter_bounds(attempt: int) -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=8.0)
    step = min(8.0, 0.5 * 2 ** (attempt - 1))
    delays = [policy.backoff(attempt, SERVER) for _ in range(300)]
    assert all(step / 2 <= d <= step for d in delays)
    # Jitter: not one fixed value.
    assert len({round(d, 9) for d in delays}) > 1


def test_backoff_grows_then_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=8.0)
    random.seed(1)
    lows = [min(policy.backoff(n) for _ in range(200)) for n in range(1, 9)]
    highs = [max(policy.backoff(n) for _ in range(200)) for n in range(1, 9)]
    assert lows[0] < lows[1] < lows[2] < lows[3] < lows[4]
    assert max(highs) <= 8.0
    assert min(lows[5:]) >= 4.0


def test_zero_initial_backoff_means_no_wait() -> None:
    policy = RetryPolicy(initial_backoff=0.0, max_backoff=0.0)
    assert policy.backoff(3, SERVER) == 0.0


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(0.0, 0.0), (2.5, 2.5), (30, 30.0), (60, 60.0), (61, 60.0), (3600, 60.0)]
)
def test_retry_after_is_honoured_and_capped(retry_after: float, expected: float) -> None:
    policy = RetryPolicy()
    error = CometRateLimitError("slow down", retry_after=retry_after, status_code=429)
    assert policy.backoff(1, error) == expected
    assert policy.backoff(5, error) == expected


def test_retry_after_cap_is_configurable() -> None:
    error = CometRateLimitError("slow down", retry_after=100, status_code=429)
    assert RetryPolicy(max_retry_after=5).backoff(1, error) == 5


def test_rate_limit_without_retry_after_uses_backoff() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=4.0)
    error = CometRateLimitError("slow down", retry_after=None, status_code=429)
    assert 0.5 <= policy.backoff(1, error) <= 1.0


@pytest.mark.parametrize("attempts", [1, 2, 3, 6])
def test_max_attempts_bounds_the_number_of_tries(attempts: int) -> None:
    policy = RetryPolicy(max_attempts=attempts, initial_backoff=0.0, max_backoff=0.0)
    tries = 1
    while policy.next_delay(SERVER, attempt=tries, elapsed=0.0) is not None:
        tries += 1
        assert tries <= 100
    assert tries == attempts


def test_max_elapsed_stops_retries_that_would_overrun() -> None:
    policy = RetryPolicy(max_attempts=100, max_elapsed=10.0, initial_backoff=1.0, max_backoff=1.0)
    assert policy.next_delay(SERVER, attempt=1, elapsed=0.0) is not None
    assert policy.next_delay(SERVER, attempt=2, elapsed=8.0) is not None
    assert policy.next_delay(SERVER, attempt=2, elapsed=9.5) is None
    assert policy.next_delay(SERVER, attempt=2, elapsed=10.0) is None
    # A long Retry-After that would pass the budget ends the retries too.
    late = CometRateLimitError("wait", retry_after=20, status_code=429)
    assert policy.next_delay(late, attempt=1, elapsed=0.0) is None


def test_next_delay_equals_the_backoff() -> None:
    error = CometRateLimitError("wait", retry_after=1.5, status_code=429)
    assert RetryPolicy().next_delay(error, attempt=1, elapsed=0.0) == 1.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"initial_backoff": -0.1},
        {"initial_backoff": 2.0, "max_backoff": 1.0},
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- what may be retried ----------------------------------------------------------------------------

# (error, retry when idempotent (a feed poll), retry when a paid submission)
TABLE: list[tuple[str, CometError, bool, bool]] = [
    ("429", CometRateLimitError("saturated", retry_after=1, status_code=429), True, True),
    ("429 no Retry-After", CometRateLimitError("saturated", status_code=429), True, True),
    ("ConnectError (never sent)", CometConnectionError("refused", request_sent=False), True, True),
    ("ReadTimeout (sent)", CometConnectionError("timed out", request_sent=True), True, False),
    ("RemoteProtocolError/drop (sent)", CometConnectionError("dropped", request_sent=True), True, False),
    ("500", CometServerError("internal", status_code=500), True, False),
    ("502 html", CometServerError("bad gateway", status_code=502), True, False),
    ("503 html", CometServerError("unavailable", status_code=503), True, False),
    ("504 html", CometServerError("gateway timeout", status_code=504), True, False),
    ("400", CometBadRequestError("bad", status_code=400), False, False),
    ("401", CometAuthError("no", status_code=401), False, False),
    ("403", CometAuthError("no", status_code=403), False, False),
    ("task_not_exist", RunwayTaskNotFoundError("gone", status_code=400), False, False),
    ("malformed", CometMalformedResponseError("??", status_code=200), False, False),
    ("generic API error", CometAPIError("??", status_code=418), False, False),
    ("uncertain submission", CometSubmissionUncertainError("?", cause=SERVER), False, False),
]


@pytest.mark.parametrize(("name", "error", "idempotent", "submission"), TABLE, ids=[row[0] for row in TABLE])
def test_is_retryable_table(name: str, error: CometError, idempotent: bool, submission: bool) -> None:
    assert RetryPolicy.is_retryable(error, idempotent=True) is idempotent
    assert RetryPolicy.is_retryable(error, idempotent=False) is submission
    policy = RetryPolicy(initial_backoff=0.0, max_backoff=0.0, max_retry_after=0.0)
    assert (policy.next_delay(error, attempt=1, elapsed=0.0, idempotent=True) is not None) is idempotent
    assert (policy.next_delay(error, attempt=1, elapsed=0.0, idempotent=False) is not None) is submission
