"""The example pipeline (``dags/runway_media_pipeline.py``) as it ships, in the Celery cluster's DAG folder.

Same loader as ``tests/integration/dags/it_media_pipeline.py``: importing the example module
here registers its DAG with this file, so the DAG processor and the Celery workers run the
example's own code; its helper modules are imported from the example folder. (Airflow's safe
mode only parses files that mention both "airflow" and "dag".)
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

_EXAMPLES = str(Path(__file__).resolve().parents[3] / "dags")
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)

# A process that parsed this file before holds the module already: run it again so the DAG registers.
sys.modules.pop("runway_media_pipeline", None)
importlib.import_module("runway_media_pipeline")
