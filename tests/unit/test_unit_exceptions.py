"""comet_provider.exceptions stands alone: no import of the hooks, even for a type."""

from __future__ import annotations

import ast
from pathlib import Path

import comet_provider.exceptions as exceptions_module
from comet_provider.exceptions import CometError, RenderUnavailableError, without_query


def test_exceptions_import_nothing_from_the_hooks() -> None:
    tree = ast.parse(Path(exceptions_module.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert [name for name in imported if name.startswith("comet_provider.hooks")] == []


def test_render_unavailable_error_keeps_no_query_string() -> None:
    error = RenderUnavailableError(
        "The render link is gone.", status_code=410, url="https://cdn.test/r.mp4?Signature=abc#frag"
    )
    assert isinstance(error, CometError)
    assert not error.retryable
    assert error.status_code == 410
    assert error.url == "https://cdn.test/r.mp4"
    assert str(error) == "The render link is gone."
    assert RenderUnavailableError("gone").url is None


def test_without_query() -> None:
    assert without_query("https://h.test/a/b.mp4?x=1&y=2") == "https://h.test/a/b.mp4"
    assert without_query("https://h.test/a/b.mp4") == "https://h.test/a/b.mp4"
