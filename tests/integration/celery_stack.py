"""What the CeleryExecutor + S3 scenarios (test_celery_s3.py) run against: a cluster of their own.

A second ``AirflowCluster`` (the session's LocalExecutor one is not started for these tests):
``CeleryExecutor`` with Debian's ``redis-server`` as broker and the metadata PostgreSQL as
result backend (``db+postgresql+psycopg2://``: SQLAlchemy 2.1 defaults to psycopg 3, not
installed), two Celery workers (``celery-worker-1``/``-2``, concurrency 2) and two triggerers.
Renders go to moto's standalone S3 server (``python -m moto.server``, its own process, real
HTTP on loopback) through the ``aws`` connection ``it_s3`` (endpoint, region and dummy keys
in its extra) and the amazon provider.

The example pipeline runs with ``storage_root`` and ``staging_root`` in the bucket; the
emulator fetches the staged clips from the S3 server's path-style URLs, so a submission's URL
names its day and clip and its prompt its style. ``loopback_s3.BucketWatcher`` lists the
bucket (objects and multipart uploads) a few times a second for the whole module, so any
partial object that was ever visible is on record.

Every process started here carries the cluster's ``COMET_IT_CLUSTER`` marker, so the
cluster's teardown (and ``AirflowCluster.reap_stale``) reaches Redis and moto too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from cluster import AirflowCluster
from loopback_s3 import DUMMY_KEYS, BucketWatcher, LoopbackServer, list_objects, s3_client
from stack import BUILD_DIR
from waiting import ClusterError, free_port, tail, wait_for

LOGS_DIR = BUILD_DIR / "integration-logs-celery"  # not integration-logs: the session stack resets that one
DAGS_DIR = Path(__file__).resolve().parent / "celery_dags"
DAG_ID = "runway_media_pipeline"
KILL_DAG_ID = "it_celery_store_kill"
BUCKET = "comet-it"
S3_CONN_ID = "it_s3"
COMET_CONN_ID = "comet_celery"
ROOT_PREFIX = "runway"
DAYS = ("2025-07-01", "2025-07-02")
VIDEO_ID = "walk"
CLIPS = ("clip_000", "clip_001")
STYLES = {"pixel-art": "pixelated 8-bit video game style", "neon": "neon cyberpunk glow"}
RENDERS_PER_DAY = len(CLIPS) * len(STYLES)
POOL, POOL_SLOTS = "runway", 2 * RENDERS_PER_DAY
WORKERS = ("celery-worker-1", "celery-worker-2")
WORKER_CONCURRENCY = 2
# Below the 8 renders of both days: once all are deferred, each triggerer holds some.
TRIGGERER_CAPACITY = 7
# Renders end 10+ s after their task deferred (the scheduler race in README.md).
RENDER_SECONDS = 15.0
KILL_RENDER_SECONDS = 12.0
# Several s3fs parts (50 MiB each), so the worker is killed with a multipart upload open.
BIG_RENDER_BYTES = 120 << 20
KILL_PROMPT = "worker kill: hand-drawn pencil sketch"
KILL_KEY = "kill/render.mp4"
# The staging prefix is public, as a CDN origin would be (moto checks HEAD as its own action).
STAGING_PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:HeadObject"],
            "Resource": f"arn:aws:s3:::{BUCKET}/{ROOT_PREFIX}/staging/*",
        }
    ],
}

Key = tuple[str, str, str]  # (day, clip, style)


class CeleryStack:
    """Redis, moto, an emulator and a CeleryExecutor cluster; ``start()`` once per module."""

    def __init__(self) -> None:
        import secrets

        self.api_key = f"sk-comet-it-{secrets.token_hex(16)}"
        self.root = Path(tempfile.mkdtemp(prefix="comet-it-celery-"))
        self.media = self.root / "media"
        self.redis_port, self.moto_port = free_port(), free_port()
        self.s3_url = f"http://127.0.0.1:{self.moto_port}"
        self.emulator: Any = None
        self.cluster: AirflowCluster | None = None
        self.servers: list[LoopbackServer] = []
        self.watcher: BucketWatcher | None = None
        self.s3: Any = None
        self.runs: dict[str, str] = {}  # day -> run id
        self.marks: dict[str, float] = {}
        self.timings: dict[str, float] = {}

    # -- setup ------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        assert self.emulator is not None
        s3_conn = {
            "conn_type": "aws",
            **DUMMY_KEYS,
            "extra": {"endpoint_url": self.s3_url, "region_name": "us-east-1"},
        }
        settings = {
            "storage_root": f"s3://{S3_CONN_ID}@{BUCKET}/{ROOT_PREFIX}",
            "staging_root": f"s3://{S3_CONN_ID}@{BUCKET}/{ROOT_PREFIX}/staging",
            # The emulator fetches staged clips from the S3 server itself (path-style, anonymous reads).
            "public_url_template": f"{self.s3_url}/{BUCKET}/{ROOT_PREFIX}/staging/{{key}}",
            "styles": STYLES,
            "clip_seconds": 2,
            "min_clip_seconds": 1,
            "comet_conn_id": COMET_CONN_ID,
            "poll_interval": 1,
            "render_timeout_seconds": 300,
            "notify_endpoint": "/_emulator/inbox/notify",
        }
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
            "AIRFLOW__TRIGGERER__CAPACITY": str(TRIGGERER_CAPACITY),
            # A killed worker's task is failed (and retried) within seconds, not the default 5 minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": json.dumps(s3_conn),
            f"AIRFLOW_CONN_{COMET_CONN_ID.upper()}": self.emulator.connection_json(),
            "AIRFLOW_CONN_RUNWAY_NOTIFY": json.dumps({"conn_type": "http", "host": self.emulator.url}),
            "AIRFLOW_VAR_COMET_RUNWAY_PIPELINE": json.dumps(settings),
        }

    def start(self) -> CeleryStack:
        from comet_provider.testing import EmulatorProcess
        from comet_provider.testing.render import make_sample_video

        t0 = self.marks["start"] = time.monotonic()
        try:
            self.media.mkdir(parents=True)
            source = make_sample_video(self.root / "walk.mp4", seconds=4, size="160x120", rate=10, tone=True)
            self._write_big_source(self.media / "kill" / "big.mp4")
            self.emulator = EmulatorProcess(
                api_key=self.api_key, render="copy", media_dir=str(self.media),
                render_seconds=RENDER_SECONDS, not_exist_seconds=1.0, queue_seconds=0.5,
            ).start()  # fmt: skip
            self.cluster = AirflowCluster(dags_folder=DAGS_DIR, logs_dir=LOGS_DIR, extra_env=self.env())
            pg = self.cluster.postgres
            self.cluster.set_env(
                AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql+psycopg2://{pg.superuser}@127.0.0.1:{pg.port}/{pg.database}"
            )
            redis_argv = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(self.root)]  # fmt: skip
            moto_argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)]
            for name, argv, port in (("redis", redis_argv, self.redis_port), ("moto", moto_argv, self.moto_port)):
                server = LoopbackServer(name, argv, port, LOGS_DIR / f"{name}.log", self.cluster.env)
                self.servers.append(server.start())
            self.s3 = s3_client(self.s3_url)
            self.s3.create_bucket(Bucket=BUCKET)
            self.s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(STAGING_PUBLIC_READ))
            for day in DAYS:
                self.s3.upload_file(str(source), BUCKET, f"{ROOT_PREFIX}/incoming/{day}/{VIDEO_ID}.mp4")
            self.watcher = BucketWatcher(self.s3_url, BUCKET).start()
            self.timings["servers"] = time.monotonic() - t0
            self.cluster.start()
            self.timings.update({f"cluster_{k}": v for k, v in self.cluster.timings.items()})
            t1 = time.monotonic()
            second = self.cluster.start_triggerer()
            for name in WORKERS:
                self.cluster.start_celery_worker(name, concurrency=WORKER_CONCURRENCY)
            self.cluster.wait_job(second)
            for name in WORKERS:
                self.wait_worker_ready(name)
            self.cluster.api("POST", "/pools", json={"name": POOL, "slots": POOL_SLOTS, "include_deferred": True})
            for dag_id in (DAG_ID, KILL_DAG_ID):
                self.cluster.wait_dag(dag_id)
            self.timings["workers_triggerer_dags"] = time.monotonic() - t1
        except BaseException:
            self.close()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    @staticmethod
    def _write_big_source(path: Path) -> None:
        """BIG_RENDER_BYTES of seeded noise, each MiB numbered (the copy render returns it as is)."""
        path.parent.mkdir(parents=True)
        block = random.Random(0xC0FFEE).randbytes(1 << 20)
        with path.open("wb") as out:
            for i in range(BIG_RENDER_BYTES >> 20):
                out.write(i.to_bytes(8, "big") + block[8:])

    def wait_worker_ready(self, name: str, timeout: float = 120) -> None:
        assert self.cluster is not None
        comp = self.cluster.components[name]

        def ready() -> bool:
            if not comp.alive():
                raise ClusterError(f"{name} exited with {comp.proc.returncode}\n{tail(comp.log_path)}")
            return f"celery@{name} ready" in comp.log_path.read_text(errors="replace")

        wait_for(
            ready, timeout=timeout, interval=0.5, what=f"Celery worker {name}", on_timeout=lambda: tail(comp.log_path)
        )

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        if self.emulator is not None:
            log_path = getattr(self.emulator, "log_path", None)
            if log_path is not None and Path(log_path).exists():
                with contextlib.suppress(OSError):
                    shutil.copy(log_path, LOGS_DIR / "emulator.log")
            with contextlib.suppress(Exception):
                self.emulator.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        found = self.cluster.leftovers() if self.cluster is not None else []
        for server in self.servers:
            if server.proc is not None and server.proc.poll() is None:
                found.append(f"{server.name} pid {server.proc.pid}")
        proc = getattr(self.emulator, "process", None)
        if proc is not None and proc.poll() is None:
            found.append(f"emulator pid {proc.pid}")
        return found

    # -- runs -------------------------------------------------------------------------------

    def launch_days(self) -> dict[str, str]:
        """One pipeline run per day of DAYS (triggered once, as the UI's form would, with ``date``)."""
        assert self.cluster is not None
        if not self.runs:
            self.marks["launch"] = time.monotonic()
            now = dt.datetime.now(dt.timezone.utc)
            for i, day in enumerate(DAYS):
                logical = now + dt.timedelta(seconds=i)
                run_id = f"it_celery_{day}_{int(logical.timestamp() * 1000)}"
                self.runs[day] = self.cluster.trigger(
                    DAG_ID, {"date": day}, run_id=run_id, logical_date=logical.isoformat()
                )
        return self.runs

    def restyles(self, run_id: str) -> list[dict[str, Any]]:
        assert self.cluster is not None
        return sorted(self.cluster.task_instances(DAG_ID, run_id, task_id="restyle"), key=lambda t: t["map_index"])

    def trigger_owners(self) -> dict[int | None, int]:
        """How many of the pipeline runs' deferred restyles each triggerer job holds (None: unassigned)."""
        assert self.cluster is not None
        rows = self.cluster.sql(
            "SELECT t.triggerer_id, count(*) FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = %s AND ti.run_id = ANY(%s) AND ti.task_id = 'restyle' AND ti.state = 'deferred' "
            "GROUP BY 1",
            (DAG_ID, list(self.runs.values())),
        )
        return {(None if j is None else int(j)): int(n) for j, n in rows}

    def submissions(self) -> Counter[Key]:
        """Renders the pipeline asked the emulator for, per (day, clip, style)."""
        by_prompt = {prompt: style for style, prompt in STYLES.items()}
        counts: Counter[Key] = Counter()
        for (video, prompt), n in self.emulator.submission_counts().items():
            if prompt not in by_prompt:
                continue  # the worker-kill scenario's render
            day, _video, clip = urlsplit(video).path.split("/staging/", 1)[1].split("/")
            counts[(day, clip.rsplit(".", 1)[0], by_prompt[prompt])] += n
        return counts

    def render_key(self, day: str, clip: str, style: str) -> str:
        return f"{ROOT_PREFIX}/renders/{day}/{VIDEO_ID}/{style}/{clip}.mp4"

    def emulator_render(self, runway_task_id: str) -> Path:
        """The render file the emulator serves for a task (``render="copy"``: the source it fetched)."""
        return Path(self.emulator.data_dir) / "sources" / f"{runway_task_id}.source.mp4"

    def object_sha256(self, key: str) -> tuple[str, int]:
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        digest, size = hashlib.sha256(), 0
        for chunk in body.iter_chunks(4 << 20):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def objects(self, prefix: str = "") -> dict[str, int]:
        return list_objects(self.s3, BUCKET, prefix)

    def open_uploads(self, prefix: str = "") -> list[dict[str, Any]]:
        uploads = self.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
        return [u for u in uploads if u["Key"].startswith(prefix)]

    def upload_parts(self, upload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The parts stored so far of a multipart upload (none once it was completed or aborted)."""
        try:
            parts = self.s3.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
        except self.s3.exceptions.NoSuchUpload:
            return []
        return list(parts.get("Parts", []))

    def worker_running(self, ti_id: str) -> str | None:
        """The Celery worker whose process tree runs task instance ``ti_id``'s code right now.

        Matched on the task process's title (``airflow worker -- <ti id>``): a pool process keeps
        its supervisor title, which names the workload, after the workload ended (e.g. the part of
        the try before it deferred, on the other worker).
        """
        assert self.cluster is not None
        for name in WORKERS:
            comp = self.cluster.components.get(name)
            if comp is None or not comp.alive():
                continue
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(comp.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if " ".join(proc.cmdline()).strip() == f"airflow worker -- {ti_id}":
                            return name
        return None

    def seconds_since(self, mark: str) -> float:
        return round(time.monotonic() - self.marks[mark], 2)
