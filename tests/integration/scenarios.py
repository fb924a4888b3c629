"""The DAG runs of the integration scenarios: what each one asks for, and a registry of launched runs.

Runs are launched once per session and may overlap (``Runs.launch`` is idempotent), so a slow
scenario's renders proceed while another scenario kills a triggerer. Every prompt carries its
scenario and index, so the emulator's task list tells how often each Airflow task submitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cluster import AirflowCluster
from stack import Stack

DAG_IDS = {
    "s1": "it_s1_deferral",
    "s2": "it_s2_restart",
    "s3": "it_s3_ha",
    "s4": "it_s4_retry",
    "s5": "it_s5_faults",
    "s8": "it_s8_bad_input",
}
COUNTS = {"s1": 6, "s2": 24, "s3": 12, "s4": 2, "s5": 12}
STYLES = ("neon cyberpunk", "pencil sketch", "vintage sepia", "pixel art", "dreamy blur", "film noir")


def prompt_for(key: str, index: int) -> str:
    return f"{key} #{index:02d} restyle in {STYLES[index % len(STYLES)]} style"


def bad_input_cases(video_url: str) -> list[tuple[str, dict[str, Any]]]:
    """(field the error must name, operator kwargs) for each invalid combination."""
    long_url = "http://127.0.0.1/" + "a" * 2100
    overrides: list[tuple[str, dict[str, Any]]] = [
        ("video", {"video": ""}),
        ("video", {"video": "   "}),
        ("video", {"video": None}),
        ("video", {"video": 42}),
        ("video", {"video": ["http://127.0.0.1/a.mp4"]}),
        ("video", {"video": "ftp://127.0.0.1/a.mp4"}),
        ("video", {"video": "file:///tmp/a.mp4"}),
        ("video", {"video": "s3://bucket"}),  # a bucket, no object (s3://bucket/key is a private source)
        ("video", {"video": "/local/clip.mp4"}),
        ("video", {"video": "not a url"}),
        ("video", {"video": "http://"}),
        ("video", {"video": "http://127.0.0.1/a b.mp4"}),
        ("video", {"video": "http://127.0.0.1:99999/a.mp4"}),
        ("video", {"video": long_url}),
        ("prompt", {"prompt": ""}),
        ("prompt", {"prompt": "   "}),
        ("prompt", {"prompt": None}),
        ("prompt", {"prompt": 7}),
        ("prompt", {"prompt": ["a", "b"]}),
        ("prompt", {"prompt": {"style": "neon"}}),
        ("prompt", {"prompt": "x" * 1001}),
        ("model", {"model": ""}),
        ("model", {"model": "   "}),
        ("model", {"model": None}),
        ("model", {"model": 4}),
        ("structure_transformation", {"structure_transformation": -0.1}),
        ("structure_transformation", {"structure_transformation": 1.5}),
        ("structure_transformation", {"structure_transformation": 100}),
        ("structure_transformation", {"structure_transformation": "0.5"}),
        ("structure_transformation", {"structure_transformation": True}),
        ("flip", {"flip": "yes"}),
        ("flip", {"flip": 1}),
        ("flip", {"flip": "true"}),
        ("options", {"options": "flip"}),
        ("options", {"options": [1, 2]}),
        ("options", {"options": 3}),
        ("structure_transformation", {"options": {"structure_transformation": 2}}),
        ("flip", {"options": {"flip": "no"}}),
        ("seconds", {"options": {"seconds": 0}}),
        ("seconds", {"options": {"seconds": 120}}),
        ("seconds", {"options": {"seconds": "5"}}),
        ("callback_url", {"callback_url": "ftp://127.0.0.1/hook"}),
        ("callback_url", {"callback_url": "http://"}),
        ("callback_url", {"callback_url": 5}),
        ("poll_interval", {"poll_interval": 0}),
        ("poll_interval", {"poll_interval": -1}),
        ("poll_interval", {"poll_interval": "fast"}),
        ("timeout", {"timeout": 0}),
        ("timeout", {"timeout": -5}),
        ("timeout", {"timeout": "never"}),
    ]
    cases = []
    for index, (name, override) in enumerate(overrides):
        kwargs: dict[str, Any] = {
            "video": video_url,
            "prompt": f"s8 #{index:02d} valid prompt",
            "poll_interval": 1,
            "timeout": 60,
        }
        kwargs.update(override)
        cases.append((name, kwargs))
    return cases


@dataclass
class ScenarioRun:
    key: str
    dag_id: str
    run_id: str
    cases: list[dict[str, Any]]
    emulator: Any
    triggered_at: float
    expected_fields: list[str] = field(default_factory=list)

    @property
    def prompts(self) -> list[str]:
        return [str(c["prompt"]) for c in self.cases]

    def submissions_by_prompt(self) -> dict[str, int]:
        """How many Runway tasks the emulator created for each of this run's prompts."""
        counts = {p: 0 for p in self.prompts}
        for task in self.emulator.stats()["tasks"].values():
            if task["prompt"] in counts:
                counts[task["prompt"]] += 1
        return counts

    def emulator_task_ids(self) -> dict[str, list[str]]:
        ids: dict[str, list[str]] = {p: [] for p in self.prompts}
        for task_id, task in self.emulator.stats()["tasks"].items():
            if task["prompt"] in ids:
                ids[task["prompt"]].append(task_id)
        return ids


class Runs:
    """Launches each scenario's DAG run at most once per session."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.launched: dict[str, ScenarioRun] = {}
        self.notes: dict[str, Any] = {}  # observations one scenario leaves for another

    @property
    def cluster(self) -> AirflowCluster:
        assert self.stack.cluster is not None
        return self.stack.cluster

    def cases(self, key: str) -> tuple[list[dict[str, Any]], list[str]]:
        url = self.stack.video_url(key)
        if key == "s8":
            pairs = bad_input_cases(url)
            return [kwargs for _, kwargs in pairs], [name for name, _ in pairs]
        return [{"video": url, "prompt": prompt_for(key, i)} for i in range(COUNTS[key])], []

    def launch(self, key: str) -> ScenarioRun:
        if key in self.launched:
            return self.launched[key]
        dag_id = DAG_IDS[key]
        self.cluster.wait_dag(dag_id)
        cases, fields = self.cases(key)
        run_id = self.cluster.trigger(dag_id, {"cases": cases}, run_id=f"it_{key}_{int(time.time() * 1000)}")
        run = ScenarioRun(
            key=key,
            dag_id=dag_id,
            run_id=run_id,
            cases=cases,
            emulator=self.stack.emulators[key],
            triggered_at=time.monotonic(),
            expected_fields=fields,
        )
        self.launched[key] = run
        return run

    def restyle_tis(self, run: ScenarioRun) -> list[dict[str, Any]]:
        tis = self.cluster.task_instances(run.dag_id, run.run_id, task_id="restyle")
        return sorted(tis, key=lambda t: t["map_index"])

    def restyle_states(self, run: ScenarioRun) -> dict[str, int]:
        rows = self.cluster.sql(
            "SELECT coalesce(state, 'none'), count(*) FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = 'restyle' GROUP BY 1",
            (run.dag_id, run.run_id),
        )
        return {str(s): int(n) for s, n in rows}

    def trigger_owners(self, run: ScenarioRun) -> dict[int | None, int]:
        """How many of the run's deferred restyle tasks each triggerer job holds (None: unassigned)."""
        rows = self.cluster.sql(
            "SELECT t.triggerer_id, count(*) FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = 'restyle' AND ti.state = 'deferred' "
            "GROUP BY 1",
            (run.dag_id, run.run_id),
        )
        return {(None if j is None else int(j)): int(n) for j, n in rows}
