"""Capacity over time: Runway-style render slots (THROTTLED beyond them) and the count of tasks in flight."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comet_provider.testing.emulator.timeline import EmulatedTask


class Slots:
    """Runway-style throttling: a task waits (THROTTLED) for one of ``concurrency`` render slots."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._ends: list[float] = []

    def start_offset(self, now: float, ready: float, render_seconds: float) -> float:
        """Start (seconds after ``now``) of a task ready ``ready`` seconds after ``now``; books its slot."""
        if self.concurrency <= 0:
            return ready
        ready_abs = now + ready
        start = ready_abs if len(self._ends) < self.concurrency else max(ready_abs, heapq.heappop(self._ends))
        heapq.heappush(self._ends, start + render_seconds)
        return start - now


class InFlight:
    """Tasks submitted and not yet terminal, and the most there were at once.

    The count only grows at a submission, so sampling it there gives the exact peak.
    Tasks whose end is known sit in a heap of end times; the rest (renders still
    running) are counted apart until their render finishes.
    """

    def __init__(self) -> None:
        self._unsettled = 0
        self._ends: list[float] = []
        self.peak = 0

    def submitted(self, task: EmulatedTask, now: float) -> None:
        end = task.terminal_at()
        if end is None:
            self._unsettled += 1
        else:
            heapq.heappush(self._ends, end)
        self.peak = max(self.peak, self.count(now))

    def settled(self, task: EmulatedTask) -> None:
        """The task's render finished (or failed): its end is known now."""
        end = task.terminal_at()
        if end is not None and self._unsettled > 0:
            self._unsettled -= 1
            heapq.heappush(self._ends, end)

    def count(self, now: float) -> int:
        while self._ends and self._ends[0] <= now:
            heapq.heappop(self._ends)
        return self._unsettled + len(self._ends)
