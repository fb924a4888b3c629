"""The declared runtime dependencies are exactly what the provider imports; one version string."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import comet_provider
from comet_provider.get_provider_info import get_provider_info

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "comet_provider"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _runtime_imports(node: ast.AST) -> list[str]:
    if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
        return [m for child in node.orelse for m in _runtime_imports(child)]  # types only
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.level == 0 and node.module else []
    return [m for child in ast.iter_child_nodes(node) for m in _runtime_imports(child)]


def _imported_modules() -> set[str]:
    """Absolute runtime imports of the package proper (comet_provider/testing is the `emulator` extra's)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "testing" not in path.relative_to(PACKAGE).parts:
            found.update(_runtime_imports(ast.parse(path.read_text(), str(path))))
    return found


def _distribution(module: str) -> str | None:
    """The distribution installing ``module``; None for the standard library and the provider itself."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "comet_provider" or top == "__future__":
        return None
    if module.startswith("airflow.providers."):
        parts = module.split(".")[2:]
        for n in range(len(parts), 0, -1):  # common.compat -> apache-airflow-providers-common-compat
            candidate = "apache-airflow-providers-" + "-".join(parts[:n])
            try:
                importlib.metadata.distribution(candidate)
            except importlib.metadata.PackageNotFoundError:
                continue
            return candidate
        raise AssertionError(f"no installed provider distribution for {module}")
    if top == "airflow":
        return "apache-airflow"
    [dist] = importlib.metadata.packages_distributions()[top]
    return dist.lower()


def test_runtime_dependencies_are_what_the_package_imports() -> None:
    declared = {_name(req) for req in PYPROJECT["project"]["dependencies"]}
    imported = {dist for module in _imported_modules() if (dist := _distribution(module))}
    assert imported == declared


def test_the_http_provider_is_only_an_example_dependency() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "apache-airflow-providers-http" in {_name(req) for req in extras["examples"]}
    assert "apache-airflow-providers-http" not in {_name(req) for req in PYPROJECT["project"]["dependencies"]}


def test_one_version_string() -> None:
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "comet_provider.__version__"}
    assert get_provider_info()["versions"] == [comet_provider.__version__]
