"""Metrics: names and values as they reach Airflow's own ``Stats`` (through its StatsD logger and validators).

A recording StatsD client stands behind Airflow's ``SafeStatsdLogger``, installed the way
Airflow's task runner installs its backend (``stats.initialize``; on Airflow 3.1 the
``Stats`` instance). Calls the polling module makes (outcomes, poll errors, durations) are
``xfail(strict)`` until the lead applies that module's edit.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from comet_provider._compat import TaskDeferred
from comet_provider.hooks.comet import CometHook, DownloadResult
from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.utils import metrics

from ._fakes import FAST_RETRY, FakeApi, error_envelope, feed_answer, make_hook, submit_answer

_SDK_STATS = "airflow.sdk._shared.observability.metrics.stats"
_CORE_STATS = "airflow._shared.observability.metrics.stats"


class RecordingClient:
    """The ``statsd.StatsClient`` surface Airflow's SafeStatsdLogger calls."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1) -> None:
        self.sent.append(("incr", stat, count))

    def decr(self, stat: str, count: int = 1, rate: float = 1) -> None:
        self.sent.append(("decr", stat, count))

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False) -> None:
        self.sent.append(("gauge", stat, value))

    def timing(self, stat: str, delta: Any, rate: float = 1) -> None:
        self.sent.append(("timing", stat, delta))

    def counts(self, stat: str) -> int:
        return sum(value for kind, name, value in self.sent if kind == "incr" and name == stat)

    def values(self, kind: str, stat: str) -> list[Any]:
        return [value for sent_kind, name, value in self.sent if sent_kind == kind and name == stat]


def _statsd_logger(client: RecordingClient) -> Any:
    try:
        from airflow.sdk._shared.observability.metrics.statsd_logger import SafeStatsdLogger
    except ImportError:  # Airflow 3.1
        from airflow.metrics.statsd_logger import SafeStatsdLogger
    return SafeStatsdLogger(client)


def _install(module_name: str, client: RecordingClient, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = importlib.import_module(module_name)
    for name in ("_factory", "_backend", "_export_legacy_names"):
        monkeypatch.setattr(stats, name, getattr(stats, name))  # restored at teardown
    logger = _statsd_logger(client)
    stats.initialize(factory=lambda: logger, export_legacy_names=False)


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingClient]:
    """What reaches StatsD from this process, as the task runner sets it up."""
    client = RecordingClient()
    try:
        importlib.import_module(_SDK_STATS)
    except ImportError:  # Airflow 3.1: one Stats, configured on first use
        from airflow.stats import Stats

        monkeypatch.setattr(Stats, "instance", _statsd_logger(client), raising=False)
        monkeypatch.setattr(Stats, "_instance_pid", os.getpid(), raising=False)
    else:
        _install(_SDK_STATS, client, monkeypatch)
    yield client


# -- the wrapper ------------------------------------------------------------------------------------------


def test_counters_gauges_and_timers_reach_statsd_by_name(statsd: RecordingClient) -> None:
    metrics.incr(metrics.RENDERS_SUBMITTED)
    metrics.incr(metrics.DOWNLOAD_BYTES, 1234)
    metrics.gauge(metrics.DOWNLOAD_THROUGHPUT, 5e6)
    metrics.timing(metrics.RENDER_DURATION, 1.5)
    assert statsd.sent == [
        ("incr", "comet_provider.renders.submitted", 1),
        ("incr", "comet_provider.download.bytes", 1234),
        ("gauge", "comet_provider.download.throughput", 5e6),
        ("timing", "comet_provider.render.duration", timedelta(seconds=1.5)),
    ]


def test_the_table_documents_every_name_and_each_passes_airflows_validation(statsd: RecordingClient) -> None:
    rows = (metrics.__doc__ or "").splitlines()
    documented = [row.split("``")[1] for row in rows if row.startswith(f"``{metrics.PREFIX}")]
    constants = {value for name, value in vars(metrics).items() if name.isupper() and isinstance(value, str)}
    failures = {f"{metrics.RENDERS_FAILED}.{cls}" for cls in metrics.FAILURE_CLASSES}
    assert set(documented) == constants - {metrics.PREFIX, metrics.RENDERS_FAILED} | failures
    for name in documented:
        metrics.incr(name)
    assert [name for _, name, _ in statsd.sent] == documented  # none dropped as invalid


@pytest.mark.parametrize(("given", "sent"), [("safety", "safety"), ("timeout", "timeout"), ("odd", "other")])
def test_failures_carry_their_class_in_the_name(statsd: RecordingClient, given: str, sent: str) -> None:
    metrics.render_failed(given)
    assert statsd.sent == [("incr", f"comet_provider.renders.failed.{sent}", 1)]


def test_a_broken_backend_never_fails_the_caller(
    statsd: RecordingClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("statsd host unreachable")

    for kind in ("incr", "gauge", "timing"):
        monkeypatch.setattr(statsd, kind, boom)
    monkeypatch.setattr(metrics, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="comet_provider.utils.metrics"):
        metrics.incr(metrics.RENDERS_SUBMITTED)
        metrics.timing(metrics.RENDER_DURATION, 1.0)
        metrics.download_stored(10, 0.5)
    assert caplog.text.count("Could not send a metric") == 1  # once, not per call


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(not _has(_CORE_STATS), reason="Airflow 3.1 has one Stats")
def test_the_triggerers_stats_are_used_where_the_task_sdks_are_not_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3.3's triggerer initializes the core's copy of Stats, not the Task SDK's."""
    sdk = importlib.import_module(_SDK_STATS)
    monkeypatch.setattr(sdk, "_factory", None)
    client = RecordingClient()
    _install(_CORE_STATS, client, monkeypatch)
    metrics.poll_failed(TimeoutError())
    assert client.sent == [("incr", "comet_provider.poll.errors", 1)]


def test_importing_metrics_imports_no_airflow() -> None:
    code = (
        "import json, sys, comet_provider.utils.metrics; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('airflow'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


# -- the hook -----------------------------------------------------------------------------------------------


def test_submission_retries_are_counted_and_polls_are_not(statsd: RecordingClient, fake_api: FakeApi) -> None:
    hook = make_hook(fake_api, retry_policy=FAST_RETRY)
    fake_api.script(error_envelope(429, "slow down", **{"Retry-After": "0"}), submit_answer())
    hook.submit_video2video("https://cdn.test/in.mp4", "pixelated style")
    fake_api.script(error_envelope(500, "oops"), feed_answer())
    hook.get_task("task-1")
    assert statsd.counts(metrics.SUBMISSION_RETRIES) == 1


def test_a_download_reports_bytes_duration_and_throughput(
    statsd: RecordingClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    body = b"\x00\x00\x00\x18ftypmp42" + bytes(4000)
    fake_api.script(httpx.Response(200, headers={"Content-Type": "video/mp4"}, stream=httpx.ByteStream(body)))
    result = make_hook(fake_api, retry_policy=FAST_RETRY).download("https://cdn.test/r.mp4", tmp_path / "r.mp4")
    assert statsd.counts(metrics.DOWNLOAD_BYTES) == len(body)
    assert statsd.values("timing", metrics.DOWNLOAD_DURATION) == [timedelta(seconds=result.seconds)]
    (throughput,) = statsd.values("gauge", metrics.DOWNLOAD_THROUGHPUT)
    assert throughput == pytest.approx(len(body) / result.seconds)


# -- the operator: submitted, resumed, reused ------------------------------------------------------------------


class _Store:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))


class _TI:
    tries = 0

    def __init__(self) -> None:
        _TI.tries += 1
        self.try_number = _TI.tries

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _operator(out: Path) -> Any:
    from comet_provider.operators.runway import RunwayVideo2VideoOperator

    op = RunwayVideo2VideoOperator(
        task_id="restyle", video="https://cdn.test/in.mp4", prompt="sketch", deferrable=True, output_path=str(out)
    )
    hook = mock.MagicMock(spec=CometHook)
    hook.submit_video2video.return_value = RunwayTask(task_id="rw-1", status=RunwayStatus.PENDING)
    hook.get_task.return_value = RunwayTask(task_id="rw-1", status=RunwayStatus.RUNNING, progress=0.5)
    hook.source_identity.return_value = None

    def download(url: str, destination: str) -> DownloadResult:
        Path(destination).write_bytes(b"render")
        return DownloadResult(destination, 6, 0.01)

    hook.download.side_effect = download
    op.hook = hook
    return op


def _try(store: _Store) -> dict[str, Any]:
    return {"ti": _TI(), "task_state_store": store}


def test_the_operator_counts_submitted_resumed_and_reused(statsd: RecordingClient, tmp_path: Path) -> None:
    out, store = tmp_path / "render.mp4", _Store()
    with pytest.raises(TaskDeferred):
        _operator(out).execute(_try(store))  # try 1 submits and defers
    assert statsd.counts(metrics.RENDERS_SUBMITTED) == 1
    op, ctx = _operator(out), _try(store)
    with pytest.raises(TaskDeferred):
        op.execute(ctx)  # try 2 resumes the same render
    assert statsd.counts(metrics.RENDERS_RESUMED) == 1
    done = RunwayTask(task_id="rw-1", status=RunwayStatus.SUCCEEDED, progress=1.0, video_url="https://cdn.test/o.mp4")
    op.execute_complete(ctx, {"status": "finished", "runway_task_id": "rw-1", "task": done.to_dict()})
    _operator(out).execute(_try(_Store()))  # another run: the stored render is reused
    assert statsd.counts(metrics.RENDERS_REUSED) == 1
    assert statsd.counts(metrics.RENDERS_SUBMITTED) == 1


# -- polling: outcomes, poll errors, durations (comet_provider.utils.polling) -------------------------------------


def _waiter(submitted_at: float | None) -> Any:
    from comet_provider.utils.polling import RunwayWaiter

    return RunwayWaiter("rw-1", poll_interval=1, deadline=None, submitted_at=submitted_at, log=logging.getLogger())


def test_outcomes_are_counted_by_class(statsd: RecordingClient) -> None:
    from comet_provider._compat import AirflowFailException
    from comet_provider.exceptions import RunwayTaskFailedError
    from comet_provider.utils.polling import outcome

    outcome(RunwayTask(task_id="a", status=RunwayStatus.SUCCEEDED, video_url="https://cdn.test/a.mp4"))
    with pytest.raises(RunwayTaskFailedError):
        outcome(RunwayTask(task_id="b", status=RunwayStatus.FAILED, failure_code="INTERNAL.BAD_OUTPUT"))
    with pytest.raises(AirflowFailException):
        outcome(RunwayTask(task_id="c", status=RunwayStatus.FAILED, failure_code="SAFETY.INPUT.TEXT"))
    _waiter(time.time()).timeout_error()
    assert statsd.counts(metrics.RENDERS_SUCCEEDED) == 1
    for cls in ("other", "safety", "timeout"):
        assert statsd.counts(f"{metrics.RENDERS_FAILED}.{cls}") == 1


def test_poll_errors_and_render_durations(statsd: RecordingClient) -> None:
    from comet_provider.exceptions import CometServerError

    waiter = _waiter(time.time() - 30)
    waiter.on_error(CometServerError("HTTP 502"))
    waiter.on_task(RunwayTask(task_id="rw-1", status=RunwayStatus.PENDING))
    waiter.on_task(RunwayTask(task_id="rw-1", status=RunwayStatus.RUNNING, progress=0.2))
    waiter.on_task(RunwayTask(task_id="rw-1", status=RunwayStatus.RUNNING, progress=0.6))
    waiter.on_task(RunwayTask(task_id="rw-1", status=RunwayStatus.SUCCEEDED, progress=1.0, video_url="https://x/o.mp4"))
    assert statsd.counts(metrics.POLL_ERRORS) == 1
    (first,) = statsd.values("timing", metrics.RENDER_FIRST_PROGRESS)
    (duration,) = statsd.values("timing", metrics.RENDER_DURATION)
    assert timedelta(seconds=30) <= first <= duration
