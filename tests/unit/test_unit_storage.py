"""comet_provider.hooks.storage: destinations resolved in one place, atomic writes, reads, sizes, identities."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from comet_provider._compat import is_local_path
from comet_provider.hooks.storage import (
    AtomicFile,
    read_bytes,
    resolve_destination,
    stat_identity,
    stat_size,
    write_bytes_atomic,
)

from ._fakes import memory_folder


@pytest.fixture
def memory_root() -> Iterator[str]:
    with memory_folder("st") as root:
        yield root


@pytest.fixture(params=["local", "memory"])
def place(request: pytest.FixtureRequest, tmp_path: Path, memory_root: str) -> str:
    """A folder to store in: a local path, or ``memory://`` object storage."""
    return str(tmp_path / "store") if request.param == "local" else f"{memory_root}/store"


def entries(folder: str) -> list[str]:
    target, _ = resolve_destination(folder)
    return sorted(p.name for p in target.iterdir()) if target.exists() else []


# -- resolve_destination --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "local"),
    [
        ("/data/out.mp4", True),
        ("file:///data/out.mp4", True),
        (Path("/data/out.mp4"), True),
        (ObjectStoragePath("file:///data/out.mp4"), True),
        ("memory://bucket/out.mp4", False),
    ],
)
def test_resolve_destination(given: Any, local: bool) -> None:
    target, is_local = resolve_destination(given)
    assert is_local is local
    assert is_local_path(target) is local  # on Airflow 3.1 ObjectStoragePath is a Path subclass
    assert str(target).endswith("out.mp4")


def test_resolve_destination_expands_the_home_folder() -> None:
    target, _ = resolve_destination("~/renders/out.mp4")
    assert target == Path.home() / "renders" / "out.mp4"


# -- write_bytes_atomic / read_bytes / stat_size -----------------------------------------------------


def test_write_then_read(place: str) -> None:
    stored = write_bytes_atomic(f"{place}/deep/record.json", b'{"a": 1}')
    assert stored.endswith("record.json")
    assert read_bytes(f"{place}/deep/record.json") == b'{"a": 1}'
    assert stat_size(f"{place}/deep/record.json") == 8
    assert entries(f"{place}/deep") == ["record.json"]


def test_write_replaces_the_previous_content(place: str) -> None:
    write_bytes_atomic(f"{place}/record.json", b"first, longer content")
    write_bytes_atomic(f"{place}/record.json", b"second")
    assert read_bytes(f"{place}/record.json") == b"second"
    assert entries(place) == ["record.json"]


def test_missing_files_are_none(place: str) -> None:
    assert read_bytes(f"{place}/nothing.json") is None
    assert stat_size(f"{place}/nothing.json") is None
    assert stat_identity(f"{place}/nothing.mp4") is None


def test_read_stops_at_the_limit(place: str) -> None:
    write_bytes_atomic(f"{place}/big.bin", b"x" * 5000)
    assert read_bytes(f"{place}/big.bin", limit=100) == b"x" * 100


def test_read_errors_other_than_missing_are_raised(tmp_path: Path) -> None:
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(OSError):
        read_bytes(tmp_path / "a-folder")


def test_a_failed_write_keeps_the_destination_and_leaves_nothing(place: str) -> None:
    write_bytes_atomic(f"{place}/out.mp4", b"previous render")
    with pytest.raises(RuntimeError), AtomicFile(f"{place}/out.mp4") as sink:
        sink.write(b"half of a new ")
        raise RuntimeError("connection lost")
    assert read_bytes(f"{place}/out.mp4") == b"previous render"
    assert entries(place) == ["out.mp4"]


def test_nothing_is_visible_before_commit(place: str) -> None:
    with AtomicFile(f"{place}/out.mp4") as sink:
        sink.write(memoryview(b"new render"))
        assert stat_size(f"{place}/out.mp4") is None
        sink.commit()
    assert read_bytes(f"{place}/out.mp4") == b"new render"


def test_partial_writes_are_completed(tmp_path: Path) -> None:
    """A raw file may take fewer bytes than offered: the rest is written too."""
    with AtomicFile(tmp_path / "out.bin") as sink:
        sink._file = _Trickle(sink._file)  # type: ignore[assignment]
        sink.write(b"0123456789" * 10)
        sink.commit()
    assert (tmp_path / "out.bin").read_bytes() == b"0123456789" * 10


class _Trickle:
    """A file that takes at most 7 bytes per write."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def write(self, view: memoryview) -> int:
        return int(self._file.write(view[:7]))

    def close(self) -> None:
        self._file.close()


# -- stat_identity ------------------------------------------------------------------------------------------


def test_local_identity_changes_when_the_file_is_replaced(tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"day one")
    os.utime(source, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    first = stat_identity(source)
    assert first == stat_identity(str(source)) == stat_identity(f"file://{source}")
    source.write_bytes(b"day two")  # same size, new content
    os.utime(source, ns=(1_700_000_100_000_000_000, 1_700_000_100_000_000_000))
    assert stat_identity(source) not in (None, first)


def test_object_storage_identity(memory_root: str) -> None:
    write_bytes_atomic(f"{memory_root}/clip.mp4", b"day one")
    first = stat_identity(ObjectStoragePath(f"{memory_root}/clip.mp4"))
    assert first is not None and "size=7" in first
    assert stat_identity(f"{memory_root}/clip.mp4") == first
    write_bytes_atomic(f"{memory_root}/clip.mp4", b"day two, re-staged")
    assert stat_identity(f"{memory_root}/clip.mp4") not in (None, first)


def test_object_storage_etag_is_used_when_the_filesystem_reports_one(
    memory_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_bytes_atomic(f"{memory_root}/clip.mp4", b"video")
    path = ObjectStoragePath(f"{memory_root}/clip.mp4")
    info = {"name": path.path, "size": 5, "ETag": '"abc123"', "LastModified": "2026-01-02T03:04:05Z"}
    monkeypatch.setattr(type(path.fs), "info", lambda self, _path, **kw: info)
    assert stat_identity(path) == 'etag="abc123";modified=2026-01-02T03:04:05Z;size=5'
