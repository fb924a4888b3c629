"""Files: render links (and their expiry), the media folder, sized blobs."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from _emulator_helpers import Api, all_urls

from comet_provider.testing import CometEmulator


def test_blob_sizes(comet_emulator: CometEmulator) -> None:
    with httpx.Client(trust_env=False) as client:
        for size in (0, 1, 12_345, (1 << 20) + 7):
            response = client.get(comet_emulator.blob_url(size))
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == size == len(response.content)
        again = client.get(comet_emulator.blob_url(12_345)).content
        assert again == client.get(comet_emulator.blob_url((1 << 20) + 7)).content[:12_345]
        partial = client.get(comet_emulator.blob_url(12_345), headers={"Range": "bytes=100-199"})
        assert partial.status_code == 206 and partial.content == again[100:200]
        assert client.get(comet_emulator.url + "/_emulator/blob?size=-1").status_code == 400
        assert client.get(comet_emulator.url + "/_emulator/blob?size=big").status_code == 400


def _raw_get(url: str, path: str) -> tuple[bytes, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def test_media_serves_files_and_rejects_traversal(comet_emulator: CometEmulator, tmp_path: Path) -> None:
    media_dir = comet_emulator.media_dir
    assert media_dir is not None
    (media_dir / "sub").mkdir()
    (media_dir / "sub" / "ok.txt").write_text("fine")
    (media_dir.parent / "secret.txt").write_text("TOP-SECRET")
    status, body = _raw_get(comet_emulator.url, "/media/sub/ok.txt")
    assert b"200" in status and body == b"fine"
    for path in (
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/..%2fsecret.txt",
        "/media/sub/../../secret.txt",
        "/media/sub/%2e%2e/%2e%2e/secret.txt",
        f"/media/{media_dir.parent}/secret.txt",
        "/media/%2F" + str(media_dir.parent / "secret.txt").lstrip("/").replace("/", "%2F"),
    ):
        status, body = _raw_get(comet_emulator.url, path)
        assert b"TOP-SECRET" not in body, path
        assert b"403" in status or b"404" in status, (path, status)
    assert httpx.get(comet_emulator.media_url("nope.mp4"), trust_env=False).status_code == 404


def _succeeded(api: Api, count: int) -> list[dict[str, Any]]:
    ids = [api.submit_id() for _ in range(count)]
    return [api.wait(task_id)[0] for task_id in ids]


def _links(final: dict[str, Any]) -> list[str]:
    return [*all_urls(final).values(), final["poster"], final["last_frame"]]


def _assert_expired(response: httpx.Response) -> None:
    # What a presigned S3 URL past its expiry answers.
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Code>AccessDenied</Code>" in response.text and "<Message>Request has expired</Message>" in response.text


def test_expired_links_answer_403_in_every_url_placement(emu: CometEmulator, api: Api) -> None:
    finals = _succeeded(api, 4)  # "rotate": one task per placement
    assert [next(iter(all_urls(f))) for f in finals] == ["video_url", "result_url", "output", "inner_video_url"]
    with httpx.Client(trust_env=False) as client:
        assert all(client.get(url).status_code == 200 for f in finals for url in _links(f))
        assert emu.expire_links() == 4
        for final in finals:
            for url in _links(final):
                _assert_expired(client.get(url))
        # The feed keeps handing out the dead link; renders finished later get live ones.
        again = api.feed(finals[0]["task_id"]).json()["data"]
        assert again["status"] == "SUCCESS" and all_urls(again) == all_urls(finals[0])
        (fresh,) = _succeeded(api, 1)
        assert client.get(_links(fresh)[0]).status_code == 200
    stats = emu.stats()
    assert stats["links"] == {"downloads": 5, "expired": 12}
    assert [stats["tasks"][f["task_id"]]["link_expired"] for f in finals] == [True] * 4
    assert stats["tasks"][fresh["task_id"]]["link_expired"] is False
    assert stats["tasks"][fresh["task_id"]]["downloads"] == 1


def test_expire_one_task_links(emu: CometEmulator, api: Api) -> None:
    first, second = _succeeded(api, 2)
    assert emu.expire_links(first["task_id"]) == 1
    assert emu.expire_links(first["task_id"]) == 0  # already expired
    _assert_expired(httpx.get(_links(first)[0], trust_env=False))
    assert httpx.get(_links(second)[0], trust_env=False).status_code == 200
    with pytest.raises(LookupError, match="no task 'nope'"):
        emu.expire_links("nope")


def test_link_ttl_expires_links_after_success(emu: CometEmulator, api: Api) -> None:
    emu.configure(link_ttl=0)  # links die the moment the task succeeds
    (final,) = _succeeded(api, 1)
    url = _links(final)[0]
    _assert_expired(httpx.get(url, trust_env=False))
    assert emu.stats()["tasks"][final["task_id"]]["link_expired"] is True
    emu.configure(link_ttl=3600)  # the age is measured when asked: a longer TTL revives it
    assert httpx.get(url, trust_env=False).status_code == 200
    emu.configure(link_ttl=None)
    assert httpx.get(url, trust_env=False).status_code == 200
    assert emu.config()["link_ttl"] is None
