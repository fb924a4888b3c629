"""Every example DAG loads, is wired as documented, and parsing it does no heavy or network work."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
HELPER_MODULES = ("media_utils.py", "clip_staging.py", "contact_sheet.py", "pipeline_settings.py", "spend_plan.py")
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if p.name not in HELPER_MODULES)
EXPECTED_DAGS = {"runway_restyle_minimal", "runway_media_pipeline", "runway_render_qc"}
ASSET_NAME = "comet_runway_restyled_videos"


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_every_dag_file_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED_DAGS
    assert {Path(d.fileloc).name for d in dagbag.dags.values()} == {p.name for p in DAG_FILES}


def test_helpers_are_not_parsed_as_dags() -> None:
    ignored = (DAGS_FOLDER / ".airflowignore").read_text().split()
    assert set(HELPER_MODULES) <= set(ignored)
    assert {p.name for p in DAGS_FOLDER.glob("*.py")} == {p.name for p in DAG_FILES} | set(HELPER_MODULES)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dags_are_documented_and_tagged(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and len(dag.doc_md) > 300
    assert {"comet", "runway"} <= set(dag.tags)
    assert not dag.catchup


def test_minimal_dag(dagbag: Any) -> None:
    from comet_provider.operators.runway import RunwayVideo2VideoOperator

    dag = dagbag.dags["runway_restyle_minimal"]
    assert dag.schedule is None
    (task,) = dag.tasks
    assert isinstance(task, RunwayVideo2VideoOperator)
    assert task.deferrable
    assert "params.video_url" in task.video and "params.prompt" in task.prompt
    assert task.output_path and "comet_runway_output_root" in task.output_path
    assert task.timeout == timedelta(minutes=30).total_seconds()


def test_media_pipeline_structure(dagbag: Any) -> None:
    from airflow.providers.http.operators.http import HttpOperator

    dag = dagbag.dags["runway_media_pipeline"]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert set(dag.params) == {
        "date",
        "styles",
        "clip_seconds",
        "max_renders_per_run",
        "approval_over_renders",
        "force_render",
    }
    order = [
        "settings",
        "find_source_videos",
        "split_into_clips",
        "plan_renders",
        "spend_plan",
        "approval_needed",
        "approve_spend",
        "restyle",
        "group_renders",
        "stitch_style",
        "contact_sheets",
        "publish",
        "notify",
    ]
    assert set(dag.task_ids) == set(order)
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in dag.get_task(upstream).get_flat_relative_ids(upstream=False), (upstream, downstream)

    restyle = dag.get_task("restyle")
    assert type(restyle).__name__ == "MappedOperator"
    assert restyle.operator_name == "RunwayVideo2VideoOperator"
    assert restyle.partial_kwargs["deferrable"] is True
    assert restyle.pool == "runway"
    assert restyle.partial_kwargs["retries"] == 2
    assert "task.output_path" in restyle.partial_kwargs["map_index_template"]
    # no approval needed skips approve_spend, and restyle must still run; a failed plan stops it
    assert restyle.trigger_rule == "none_failed_min_one_success"
    assert restyle.upstream_task_ids == {"plan_renders", "approve_spend"}
    for task_id in ("split_into_clips", "stitch_style"):
        mapped = dag.get_task(task_id)
        assert type(mapped).__name__ == "DecoratedMappedOperator"
        assert mapped.partial_kwargs["map_index_template"]

    (outlet,) = dag.get_task("publish").outlets
    assert "spend_plan" in dag.get_task("publish").upstream_task_ids
    assert outlet.name == ASSET_NAME
    notify = dag.get_task("notify")
    assert isinstance(notify, HttpOperator) and notify.method == "POST"
    assert "notify_conn_id" in notify.http_conn_id


def test_spend_approval_uses_airflows_own_approval_operator(dagbag: Any) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = dagbag.dags["runway_media_pipeline"]
    gate = dag.get_task("approval_needed")
    assert type(gate).__name__ == "_ShortCircuitDecoratedOperator"
    # skip only approve_spend, so restyle's own trigger rule decides
    assert gate.ignore_downstream_trigger_rules is False
    assert gate.downstream_task_ids == {"approve_spend"}
    approve = dag.get_task("approve_spend")
    assert isinstance(approve, ApprovalOperator)
    # a rejection skips restyle (its direct downstream) whatever its trigger rule says; not a failure
    assert approve.downstream_task_ids == {"restyle"}
    assert not approve.fail_on_reject
    assert approve.retries == 0
    assert "spend_plan" in approve.body and "approval" in approve.subject


def test_restyle_label_template_renders_readable_names() -> None:
    import jinja2

    sys.path.insert(0, str(DAGS_FOLDER))
    from runway_media_pipeline import RESTYLE_LABEL

    class Task:
        output_path = "s3://bucket/runway/renders/2025-06-01/city-walk/pixel-art/clip_002.mp4"

    label = jinja2.Environment().from_string(RESTYLE_LABEL).render(task=Task())
    assert label == "city-walk · pixel-art · clip_002"


def test_qc_dag_is_scheduled_on_the_pipeline_asset(dagbag: Any) -> None:
    dag = dagbag.dags["runway_render_qc"]
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert [a.name for a in dag.schedule] == [ASSET_NAME]
    (find,) = [t for t in dag.tasks if t.task_id == "find_new_renders"]
    assert [a.name for a in find.inlets] == [ASSET_NAME]
    assert type(dag.get_task("check_renders")).__name__ == "DecoratedMappedOperator"


# ------------------------------------------------------------------------------ parse-time hygiene

_PROBE = textwrap.dedent(
    """
    import json, socket, subprocess, sys, time, runpy

    # What any DAG file may use is imported first, so the timing is the DAG file's own work.
    import airflow.sdk, airflow.providers.http.operators.http  # noqa
    import comet_provider.operators.runway  # noqa
    import croniter, pendulum  # noqa  (Airflow's own: croniter runs `file` once on import)

    calls = []
    def refuse(kind):
        def _refuse(*args, **kwargs):
            calls.append(kind)
            raise OSError(f"{kind} while parsing a DAG file")
        return _refuse
    socket.socket.connect = refuse("socket.connect")
    socket.create_connection = refuse("socket.create_connection")
    socket.getaddrinfo = refuse("socket.getaddrinfo")
    subprocess.Popen.__init__ = refuse("subprocess")

    sys.path.insert(0, sys.argv[2])
    before = set(sys.modules)
    started = time.perf_counter()
    runpy.run_path(sys.argv[1], run_name="dag_under_test")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "calls": calls, "new_modules": sorted(set(sys.modules) - before)}))
    """
)
HEAVY_MODULES = ("PIL", "imageio_ffmpeg", "media_utils", "numpy", "cv2", "httpx", "aiohttp", "boto3")


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_does_no_network_subprocess_or_heavy_imports(dag_file: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(dag_file), str(DAGS_FOLDER)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["calls"] == []
    heavy = [m for m in report["new_modules"] if m.split(".")[0] in HEAVY_MODULES]
    assert heavy == [], f"{dag_file.name} imports {heavy} at parse time: import them inside the tasks"
    assert report["seconds"] < 3.0, f"{dag_file.name} took {report['seconds']:.2f}s to parse"
