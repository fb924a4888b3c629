"""Extra link from a finished restyle task to its rendered video."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["VIDEO_URL_XCOM_KEY", "RunwayVideoLink"]

#: The operator pushes the render's URL under this key as soon as it is known.
VIDEO_URL_XCOM_KEY = "runway_video_url"


class RunwayVideoLink(BaseOperatorLink):
    """Opens the rendered video (Runway's URL; it expires 24-48 h after the render)."""

    name = "Runway video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # Runs on the worker when the task finishes: read what the task pushed, no network.
        from airflow.providers.common.compat.sdk import XCom

        url = XCom.get_value(ti_key=ti_key, key=VIDEO_URL_XCOM_KEY)
        return url if isinstance(url, str) else ""
