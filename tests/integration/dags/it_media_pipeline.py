"""The example pipeline (``dags/runway_media_pipeline.py``) as it ships, in this cluster's DAG folder.

Importing the example module here registers its DAG with this file (Airflow attributes
a DAG to the file being parsed), so the DAG processor and the workers run the
example's own code. Its helpers (``media_utils`` and the rest) are imported from the
example folder, put on ``sys.path`` first, as Airflow does for a DAG folder.
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
