"""Invalid parameters: every task must fail before sending anything (tests/operators/test_operators_dags.py).

Built with valid placeholders where the parameter is not the one under test. `retries=1` shows
that validation failures are final (no second try).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import dag

sys.path.insert(0, str(Path(__file__).parent))
from _optest_env import START, VIDEO_URL

from comet_provider.operators.runway import RunwayVideo2VideoOperator

#: task_id -> (the field the error must name, the operator's arguments)
BAD_TASKS: dict[str, tuple[str, dict[str, object]]] = {
    "bad_scheme": ("video", {"video": "ftp://files.example.com/clip.mp4"}),
    "empty_prompt": ("prompt", {"prompt": "   "}),
    "bad_structure": ("structure_transformation", {"structure_transformation": 1.5}),
    "bad_flip": ("flip", {"flip": "yes"}),
    "bad_options": ("options", {"options": "fast"}),
    "bad_templated_video": ("video", {"video": "{{ 'ftp://x/y.mp4' }}"}),
    "bad_callback": ("callback_url", {"callback_url": "not a url"}),
}


@dag(
    dag_id="optest_bad_input",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=["optest"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
)
def optest_bad_input() -> None:
    for task_id, (_field, bad) in BAD_TASKS.items():
        kwargs: dict[str, object] = {"video": VIDEO_URL, "prompt": "pencil sketch", **bad}
        RunwayVideo2VideoOperator(task_id=task_id, deferrable=True, poll_interval=0.5, timeout=60, **kwargs)


optest_bad_input()
