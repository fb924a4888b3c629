"""One exception hierarchy for everything the provider raises.

Modelled on httpx's: a transient branch that the retry policy may retry, and
fatal branches that say what happened and what to do. No message ever
contains the API key: messages are built from status codes, paths, error codes
and server text that :func:`redact` has scrubbed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comet_provider.models import RunwayTask

__all__ = [
    "CometAPIError",
    "CometAuthError",
    "CometBadRequestError",
    "CometConfigError",
    "CometConnectionError",
    "CometError",
    "CometMalformedResponseError",
    "CometRateLimitError",
    "CometServerError",
    "CometSubmissionUncertainError",
    "CometTransientError",
    "CometValidationError",
    "RenderUnavailableError",
    "RunwayTaskFailedError",
    "RunwayTaskNotFoundError",
    "RunwayTaskTimeoutError",
]

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def redact(text: str, *secrets: str | None) -> str:
    """Remove bearer tokens and the given secrets from ``text``."""
    text = _BEARER.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def without_query(url: str) -> str:
    """``url`` without its query string and fragment, where signed URLs keep their signature."""
    return url.split("?", 1)[0].split("#", 1)[0]


class CometError(Exception):
    """Base class of every error raised by the Comet provider."""

    #: Whether trying the same call again later may succeed.
    retryable: bool = False


class CometConfigError(CometError):
    """The Airflow connection is unusable (names the field to fix)."""


class CometValidationError(CometError, ValueError):
    """A parameter is invalid; raised before any request is sent."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"Invalid {field!r}: {message}")


class CometAPIError(CometError):
    """CometAPI answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.error_code = error_code
        self.request_id = request_id
        super().__init__(message)


class CometAuthError(CometAPIError):
    """401/403: the API key is missing, wrong, or not allowed to do this."""


class CometBadRequestError(CometAPIError):
    """A 4xx other than auth and rate limits: the request itself must change."""


class RunwayTaskNotFoundError(CometBadRequestError):
    """CometAPI does not know the task id, past the grace period after submission."""


class CometTransientError(CometAPIError):
    """Worth retrying after a pause: rate limits, server errors, network trouble."""

    retryable = True


class CometRateLimitError(CometTransientError):
    """429: too many requests or upstream saturated."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class CometServerError(CometTransientError):
    """5xx (including HTML error pages from proxies in front of the API)."""


class CometConnectionError(CometTransientError):
    """No usable answer: connection refused or dropped, DNS, timeouts.

    ``request_sent`` is False only when the request surely never reached the
    server (the connection could not be opened), which is what makes a paid
    submission safe to retry.
    """

    def __init__(self, message: str, *, request_sent: bool, **kwargs: Any) -> None:
        self.request_sent = request_sent
        super().__init__(message, **kwargs)


class CometMalformedResponseError(CometAPIError):
    """CometAPI answered, but not with anything the documented contract allows."""


class RenderUnavailableError(CometError):
    """The render's link no longer serves the render: expired or removed (403/404/410), or a page
    where the video should be. Not retried: only a new render gives a new link."""

    def __init__(self, message: str, *, status_code: int | None = None, url: str | None = None) -> None:
        self.status_code = status_code
        #: The link without its query string (a signed URL's signature stays out of logs).
        self.url = without_query(url) if url else None
        super().__init__(message)


class CometSubmissionUncertainError(CometError):
    """A submission failed in a way that may still have started a (paid) render."""

    def __init__(self, message: str, *, cause: CometError) -> None:
        self.cause = cause
        super().__init__(message)


class RunwayTaskFailedError(CometError):
    """The Runway task ended FAILED or CANCELLED."""

    def __init__(self, task: RunwayTask) -> None:
        self.task = task
        self.failure_code = task.failure_code
        #: Content moderation refusals do not change on retry.
        self.is_safety = bool(task.failure_code and task.failure_code.upper().startswith("SAFETY"))
        self.retryable = not self.is_safety
        code = f" [{task.failure_code}]" if task.failure_code else ""
        reason = (task.fail_reason or "no reason given").rstrip(". ")
        advice = (
            "This is a content-safety refusal: retrying the same input will not help; change the prompt "
            "or the source video."
            if self.is_safety
            else "A retry of the Airflow task submits a new render."
        )
        super().__init__(f"Runway task {task.task_id} ended {task.status.value}{code}: {reason}. {advice}")


class RunwayTaskTimeoutError(CometError):
    """One try's wait for a render ran out; the render may still be going."""

    retryable = True

    def __init__(self, runway_task_id: str, message: str) -> None:
        self.runway_task_id = runway_task_id
        super().__init__(message)

    @classmethod
    def after(cls, runway_task_id: str, waited_s: float, last_status: str | None = None) -> RunwayTaskTimeoutError:
        last = f" (last seen {last_status})" if last_status else ""
        return cls(
            runway_task_id,
            f"Runway task {runway_task_id} was not finished after waiting {waited_s:.0f}s{last}. "
            "The render may still be running: on Airflow 3.3+ a retry of this Airflow task waits on "
            "the same Runway task instead of submitting a new one (older Airflow has no "
            "task_state_store and submits anew). Raise `timeout` if renders take longer.",
        )
