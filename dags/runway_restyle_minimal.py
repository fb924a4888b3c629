"""
### Restyle one video with Runway (minimal example)

The smallest useful pipeline: send one video to Runway's video-to-video model through
CometAPI, wait for the render without holding a worker slot, and keep a copy of the
result (Runway's own URLs expire within a day or two).

**How to use it**

1. Create the connection `comet_default` with your CometAPI key, e.g.
   `AIRFLOW_CONN_COMET_DEFAULT='{"conn_type": "comet", "host": "https://api.cometapi.com", "password": "sk-..."}'`.
2. Optionally set the Variable `comet_runway_output_root` to where renders should be
   kept: a local folder, `file:///srv/renders`, or `s3://aws_default@my-bucket/renders`
   (any `ObjectStoragePath`). The default is `file:///tmp/runway-renders`.
3. Trigger the DAG with the params `video_url` (a public http(s) URL Runway can fetch,
   a few seconds long) and `prompt` (the style), e.g.
   `airflow dags trigger runway_restyle_minimal --conf '{"video_url": "https://...", "prompt": "sketch"}'`.

The task submits the render, defers to the triggerer while Runway works (the triggerer
must be running: `airflow triggerer`), then downloads the video to
`<output root>/runway_restyle_minimal/<run date>/<run id>.mp4`. Its XCom holds Runway's task
id, `video_url`, `poster`, `last_frame` and `output_path`; the task's extra link opens
the render. A retry resumes the same render instead of paying for a new one.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from comet_provider.operators.runway import RunwayVideo2VideoOperator


@dag(
    dag_id="runway_restyle_minimal",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["comet", "runway", "example"],
    params={
        "video_url": Param(
            type="string",
            pattern="^https?://",
            description="Public http(s) URL of the source video (a few seconds long).",
        ),
        "prompt": Param(
            "pencil sketch, hand-drawn lines", type="string", minLength=3, description="The style to apply."
        ),
    },
)
def runway_restyle_minimal() -> None:
    RunwayVideo2VideoOperator(
        task_id="restyle",
        video="{{ params.video_url }}",
        prompt="{{ params.prompt }}",
        model="gen4",
        structure_transformation=0.5,  # 0..1: how far the shapes may move; start modest
        deferrable=True,
        poll_interval=10,
        timeout=timedelta(minutes=30),
        retries=2,
        output_path=(
            "{{ var.value.get('comet_runway_output_root', 'file:///tmp/runway-renders') }}"
            "/{{ dag.dag_id }}/{{ ds }}/{{ run_id | replace(':', '-') | replace('+', '-') }}.mp4"
        ),
    )


runway_restyle_minimal()
