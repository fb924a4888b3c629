"""The Celery worker-kill scenario (tests/integration/test_celery_s3.py).

One deferrable restyle whose render is big (the emulator's copy of a 120 MiB source), stored
into the S3 server: once the trigger fired, a Celery worker downloads it into ``output_path``
(an ``s3://it_s3@...`` URL). The test kills that worker with SIGKILL while the upload is open;
``retries=1`` with a short delay, so the retry (on the other worker) resumes the same render.
conf: ``video``, ``prompt``, ``output_path``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag

from comet_provider.operators.runway import RunwayVideo2VideoOperator


@dag(
    dag_id="it_celery_store_kill",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    params={"video": "", "prompt": "", "output_path": ""},
    tags=["integration", "comet"],
)
def it_celery_store_kill() -> None:
    RunwayVideo2VideoOperator(
        task_id="restyle",
        video="{{ params.video }}",
        prompt="{{ params.prompt }}",
        output_path="{{ params.output_path }}",
        comet_conn_id="comet_celery",
        deferrable=True,
        poll_interval=1,
        timeout=300,
        retries=1,
        retry_delay=dt.timedelta(seconds=1),
    )


it_celery_store_kill()
