"""Executor slots and task states over time, sampled from a running cluster in a thread."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cluster import AirflowCluster


class SlotSampler:
    """Samples executor-slot use and task-instance states in a background thread.

    Every ``interval`` seconds it records which LocalExecutor workers are busy (their titles
    name the task instance id they run) and the state of every task instance of the watched
    DAG runs. ``slot_seconds[ti_id]`` integrates busy workers over time; ``state_seconds[ti_id]``
    the time spent in each state.
    """

    def __init__(self, cluster: AirflowCluster, *, interval: float = 0.25) -> None:
        import threading

        self.cluster = cluster
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.slot_seconds: dict[str, float] = {}
        self.state_seconds: dict[str, dict[str, float]] = {}
        self.watch: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slot-sampler", daemon=True)
        self._conn: Any = None

    def __enter__(self) -> SlotSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _states(self) -> dict[str, tuple[str, str]]:
        """ti id -> (task_id, state) for the watched runs."""
        watch = list(self.watch)
        if not watch:
            return {}
        if self._conn is None or self._conn.closed:
            self._conn = self.cluster.postgres.connect()
        clauses = " OR ".join(["(dag_id = %s AND run_id = %s)"] * len(watch))
        params = [x for pair in watch for x in pair]
        with self._conn.cursor() as cur:
            cur.execute(
                f"SELECT id::text, task_id, coalesce(state, 'none') FROM task_instance WHERE {clauses}",
                params,
            )
            return {str(i): (str(t), str(s)) for i, t, s in cur.fetchall()}

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            step = now - last
            last = now
            try:
                busy = self.cluster.busy_workers()
                states = self._states()
            except Exception:  # a component being killed on purpose; keep sampling
                busy, states = [], {}
            for title in busy:
                self.slot_seconds[title] = self.slot_seconds.get(title, 0.0) + step
            for ti_id, (_, state) in states.items():
                per = self.state_seconds.setdefault(ti_id, {})
                per[state] = per.get(state, 0.0) + step
            self.samples.append({"t": now, "busy": busy, "states": states})
            self._stop.wait(self.interval)

    def slot_seconds_of(self, ti_id: str) -> float:
        """Busy-worker seconds of the workloads that ran task instance ``ti_id``."""
        return sum(v for k, v in self.slot_seconds.items() if ti_id in k)
