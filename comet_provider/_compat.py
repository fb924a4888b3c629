"""What differs between the Airflow versions this provider supports (3.1 to 3.3), in one place.

Import these names from here, not from ``airflow.sdk``: on Airflow 3.1 the task exceptions and
``conf`` are not in the Task SDK yet (common-compat resolves them either way), and
``ObjectStoragePath`` subclasses :class:`pathlib.Path` (universal_pathlib 0.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow import __version__ as _airflow_version
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
    conf,
)
from packaging.version import Version

try:
    from airflow.sdk.exceptions import AirflowRescheduleException
except ImportError:  # Airflow 3.1 (common-compat does not map this one)
    from airflow.exceptions import AirflowRescheduleException

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
    "conf",
    "is_local_path",
    "is_object_storage_path",
]

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
#: 3.3 brought ``task_state_store`` (a render resumed across tries) and ``BaseTrigger.on_kill``.
AIRFLOW_V_3_3_PLUS = Version("3.3.0") <= AIRFLOW_VERSION


def is_object_storage_path(value: Any) -> bool:
    """True for an ``ObjectStoragePath`` (any fsspec-backed path), False for a plain local path or str.

    ``isinstance(value, Path)`` cannot tell them apart on Airflow 3.1, where ObjectStoragePath
    is a Path subclass whose ``str()`` is the URL (``file:///...``), not a usable local path.
    """
    return not isinstance(value, (str, bytes)) and getattr(value, "protocol", None) is not None


def is_local_path(value: object) -> TypeIs[Path]:
    """True for a plain :class:`pathlib.Path` (written with ``open``/``os.replace``), on every Airflow."""
    return isinstance(value, Path) and not is_object_storage_path(value)
