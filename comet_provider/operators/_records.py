"""The render a task instance submitted, kept across tries and clears in ``task_state_store``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from comet_provider.utils.pay_once import RenderRecord

__all__ = ["STATE_KEY", "RecordStore", "try_number"]

#: task_state_store key holding the submitted render across tries.
STATE_KEY = "comet_runway_task"


def try_number(context: Context) -> int | None:
    value = getattr(context.get("ti"), "try_number", None)
    return value if isinstance(value, int) else None


class RecordStore:
    """The Runway task this task instance submitted, kept across tries and clears in ``task_state_store``."""

    def __init__(self, context: Context, log: Any, *, quiet: bool = False) -> None:
        self._log = log
        self._store = context.get("task_state_store")
        if self._store is None and not quiet:
            log.warning(
                "This Airflow has no task_state_store (Airflow 3.3+): a retry of this task cannot "
                "resume its Runway render and will submit a new one (a render already stored at "
                "output_path is still reused)."
            )

    def load(self) -> RenderRecord | None:
        from comet_provider.utils.pay_once import RenderRecord

        return None if self._store is None else RenderRecord.from_dict(self._store.get(STATE_KEY))

    def save(self, record: RenderRecord) -> None:
        if self._store is None:
            return
        try:
            self._store.set(STATE_KEY, record.to_dict())
        except Exception as exc:  # the render is paid for: keep waiting on it rather than fail
            self._log.error(
                "Could not record Runway task %s for resumption (%s): if this try fails, a retry will "
                "submit a new render.",
                record.runway_task_id,
                exc,
            )
