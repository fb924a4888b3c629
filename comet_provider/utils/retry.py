"""The one retry policy, shared by the sync and async clients."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from comet_provider.exceptions import CometConnectionError, CometError, CometRateLimitError

__all__ = ["RetryPolicy", "Retrying"]

#: Called before each retry with the error, the pause, and the next attempt's number.
RetryCallback = Callable[[CometError, float, int], None]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in attempts and in total time.

    Defaults follow Runway's own SDK: 0.5 s x 2^n capped at 8 s, ``Retry-After``
    honoured up to 60 s.
    """

    max_attempts: int = 6
    max_elapsed: float = 90.0
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")

    @staticmethod
    def is_retryable(error: CometError, *, idempotent: bool) -> bool:
        """Whether ``error`` may go away on its own.

        A non-idempotent call (a paid submission) is retried only where the
        request surely started nothing: a 429, or a connection never opened.
        """
        if not error.retryable:
            return False
        if idempotent:
            return True
        if isinstance(error, CometRateLimitError):
            return True
        return isinstance(error, CometConnectionError) and not error.request_sent

    def backoff(self, attempt: int, error: CometError | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after >= 0:
            return float(min(retry_after, self.max_retry_after))
        cap = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        # "Equal jitter": never less than half the step, so retries still back off.
        return cap / 2 + random.uniform(0, cap / 2)

    def next_delay(self, error: CometError, *, attempt: int, elapsed: float, idempotent: bool = True) -> float | None:
        """The pause before another attempt, or None to give up and raise ``error``."""
        if attempt >= self.max_attempts or not self.is_retryable(error, idempotent=idempotent):
            return None
        delay = self.backoff(attempt, error)
        if elapsed + delay > self.max_elapsed:
            return None
        return delay

    def start(
        self,
        *,
        idempotent: bool = True,
        on_retry: Callable[[CometError, float, int], None] | None = None,
        started: float | None = None,
    ) -> Retrying:
        """Track one call's attempts: ``delay = retrying.after(error)`` raises once it is time to give up.

        :param started: ``time.monotonic()`` when the call began, if before now (a tracker made
            only once the first attempt failed).
        """
        return Retrying(self, idempotent, on_retry, started)


class Retrying:
    """The attempts of one call under a :class:`RetryPolicy`; the sync and async loops both use it."""

    __slots__ = ("_idempotent", "_on_retry", "_policy", "_started", "attempt")

    def __init__(
        self, policy: RetryPolicy, idempotent: bool, on_retry: RetryCallback | None, started: float | None = None
    ) -> None:
        self._policy = policy
        self._idempotent = idempotent
        self._on_retry = on_retry
        self._started = time.monotonic() if started is None else started
        self.attempt = 0

    def after(self, error: CometError) -> float:
        """Seconds to wait before trying again after ``error``; raises ``error`` to give up."""
        self.attempt += 1
        delay = self._policy.next_delay(
            error, attempt=self.attempt, elapsed=time.monotonic() - self._started, idempotent=self._idempotent
        )
        if delay is None:
            raise error
        if self._on_retry is not None:
            self._on_retry(error, delay, self.attempt + 1)
        return delay
