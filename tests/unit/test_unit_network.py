"""The network policy without sockets: proxy choice (environment and extras), credentials kept secret,
TLS settings, the answer cap and its decoding, and the connection form."""

from __future__ import annotations

import gzip
import ssl
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comet_provider.exceptions import CometConfigError, CometConnectionError
from comet_provider.get_provider_info import get_provider_info
from comet_provider.hooks._network import (
    MAX_ANSWER_BYTES,
    AnswerTooLarge,
    NetworkPolicy,
    certificate_failure,
    decode_answer,
    read_answer,
)
from comet_provider.hooks.comet import CometSettings

from ._fakes import FAST_RETRY, SECRET, FakeApi, make_hook

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
PASSWORD = "s3cret-PROXY-pass"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables in either case; set the ones a test needs."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def policy(**extra: Any) -> NetworkPolicy:
    return NetworkPolicy.from_extra("my_comet", extra)


# -- which proxy -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "url", "expected"),
    [
        ({}, "https://api.test/x", None),
        ({"HTTPS_PROXY": "http://p:3128"}, "https://api.test/x", "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://cdn.test/x", None),  # only https goes through it
        ({"HTTP_PROXY": "http://p:3128"}, "http://cdn.test/x", "http://p:3128"),
        ({"https_proxy": "p:3128"}, "https://api.test/x", "http://p:3128"),  # a bare host:port is http://
        ({"ALL_PROXY": "http://all:1"}, "http://cdn.test/x", "http://all:1"),
        ({"ALL_PROXY": "http://all:1", "HTTPS_PROXY": "http://p:2"}, "https://api.test/", "http://p:2"),
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, "https://a.test/", "http://lower:2"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.test"}, "https://api.test/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.test"}, "https://eu.api.test/", None),  # and subdomains
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.test"}, "https://myapi.test/", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".api.test"}, "https://api.test/", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "127.0.0.1,localhost"}, "https://127.0.0.1:8/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://api.test/", None),
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://cdn.test/", None),  # CGI: not trusted
    ],
)
def test_the_environment_is_read_as_httpx_reads_it(
    env: pytest.MonkeyPatch, variables: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    assert policy().proxy_for(url) == expected
    with httpx.Client(trust_env=True) as client:  # httpx's own decision: proxied or not
        proxied = client._transport_for_url(httpx.URL(url)) is not client._transport
    assert proxied == (expected is not None)


def test_the_proxy_extra_replaces_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("HTTPS_PROXY", "http://env:1")
    env.setenv("NO_PROXY", "api.test")
    chosen = policy(proxy="http://extra:3128")
    assert chosen.proxy_for("https://api.test/") == "http://extra:3128"
    assert chosen.proxy_for("http://cdn.test/r.mp4") == "http://extra:3128"


def test_settings_carry_the_policy_of_the_connection(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow.sdk import Connection

    bundle = tmp_path / "ca.pem"
    bundle.write_text("placeholder")
    conn = Connection(conn_id="my_comet", conn_type="comet", password=SECRET)
    extra = {"proxy": "proxy.corp:3128", "ca_bundle": str(bundle), "verify": "true"}
    network = CometSettings.from_connection(conn, extra).network
    assert (network.proxy, network.ca_bundle, network.verify) == ("http://proxy.corp:3128", str(bundle), True)
    assert CometSettings.from_connection(conn, {}).network == NetworkPolicy("my_comet")


def test_a_route_splits_off_the_credentials(env: pytest.MonkeyPatch) -> None:
    route = policy(proxy=f"http://me%40corp:{PASSWORD}@proxy.corp:8080").route("https://api.test/x")
    assert route is not None
    assert (route.url, route.host, route.port) == ("http://proxy.corp:8080", "proxy.corp", 8080)
    assert route.auth == ("me@corp", PASSWORD)
    assert route.headers["Proxy-Authorization"].startswith("Basic ")
    assert PASSWORD not in repr(route)
    assert policy().route("https://api.test/x") is None


# -- credentials stay secret --------------------------------------------------------------------------------


def test_proxy_credentials_are_redacted_everywhere(env: pytest.MonkeyPatch) -> None:
    env.setenv("HTTPS_PROXY", f"http://env-user:{PASSWORD}-env@p:1")
    chosen = policy(proxy=f"http://user:{PASSWORD}@proxy.corp:3128")
    settings = CometSettings("my_comet", "https://api.test", SECRET, network=chosen)
    route = chosen.route("https://api.test/")
    assert route is not None
    text = f"failed via http://user:{PASSWORD}@proxy.corp:3128 ({route.headers['Proxy-Authorization']}); {PASSWORD}-env"
    for shown in (chosen.redact(text), repr(chosen), repr(settings), str(chosen.shown_proxy("https://a.test/"))):
        assert PASSWORD not in shown
        assert route.headers["Proxy-Authorization"].split()[1] not in shown
    assert chosen.shown_proxy("https://a.test/") == "http://***@proxy.corp:3128"


def test_proxy_credentials_are_masked_in_airflow_logs(env: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import redact

    policy(proxy=f"http://user:{PASSWORD}@proxy.corp:3128")
    assert PASSWORD not in str(redact(f"some line naming {PASSWORD}"))


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"proxy": f"socks5://u:{PASSWORD}@p:1080"}, ["'proxy'", "http://"]),
        ({"proxy": f"https://u:{PASSWORD}@p:443"}, ["'proxy'", "http://"]),
        ({"proxy": 3128}, ["'proxy'", "text"]),
        ({"ca_bundle": "/no/such/ca.pem"}, ["'ca_bundle'", "/no/such/ca.pem"]),
        ({"ca_bundle": ["a.pem"]}, ["'ca_bundle'", "text"]),
        ({"verify": "maybe"}, ["'verify'", "true or false"]),
        ({"verify": 2}, ["'verify'", "true or false"]),
    ],
)
def test_bad_extras_name_the_field_and_hide_credentials(
    env: pytest.MonkeyPatch, extra: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(CometConfigError) as info:
        policy(**extra)
    message = str(info.value)
    assert "my_comet" in message and all(name in message for name in names)
    assert PASSWORD not in message


def test_a_bad_environment_proxy_is_refused_when_used(env: pytest.MonkeyPatch) -> None:
    env.setenv("HTTPS_PROXY", f"socks5://u:{PASSWORD}@p:1080")
    chosen = policy()  # building the policy is fine: http:// URLs do not use that variable
    assert chosen.proxy_for("http://cdn.test/") is None
    with pytest.raises(CometConfigError, match="HTTPS_PROXY must be an http:// proxy URL") as info:
        chosen.proxy_for("https://api.test/")
    assert PASSWORD not in str(info.value)


# -- TLS ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "verify"), [(None, True), ("", True), (True, True), ("False", False), ("no", False)])
def test_verify_reads_booleans_and_their_spellings(env: pytest.MonkeyPatch, value: Any, verify: bool) -> None:
    chosen = policy(verify=value)
    assert chosen.verify is verify
    context = chosen.ssl_context()
    assert context.verify_mode == (ssl.CERT_REQUIRED if verify else ssl.CERT_NONE)
    assert context.check_hostname is verify
    assert chosen.custom_trust is not verify


def test_a_bundle_that_is_not_pem_is_refused_naming_it(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(CometConfigError, match=r"extra 'ca_bundle' .*ca\.pem.* could not be loaded"):
        policy(ca_bundle=str(bundle)).ssl_context()


def test_certificate_failures_are_found_behind_wrappers_and_explained(env: pytest.MonkeyPatch) -> None:
    failure = ssl.SSLCertVerificationError(1, "certificate verify failed")
    failure.verify_message = "self-signed certificate"
    try:
        try:
            raise failure
        except ssl.SSLError as exc:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from exc
    except httpx.ConnectError as wrapped:
        assert certificate_failure(wrapped) is failure
    assert certificate_failure(httpx.ConnectError("refused")) is None
    bundled = NetworkPolicy("c", ca_bundle="/etc/corp-ca.pem").certificate_message("api.test", failure)
    assert "with the CA bundle /etc/corp-ca.pem" in bundled and "self-signed certificate" in bundled
    system = NetworkPolicy("c").certificate_message("api.test", failure)
    assert "this machine's trusted CAs" in system and "'ca_bundle'" in system


# -- the answer cap ----------------------------------------------------------------------------------------


class Counted(httpx.SyncByteStream):
    """A body of ``pieces`` chunks of ``size`` bytes that counts how many were read."""

    def __init__(self, pieces: int, size: int = 65536) -> None:
        self.pieces, self.size, self.read = pieces, size, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.pieces):
            self.read += 1
            yield b"x" * self.size


def test_a_streamed_answer_stops_at_the_cap() -> None:
    body = Counted(pieces=1000)  # 64 MiB if read whole
    with pytest.raises(AnswerTooLarge, match="1 MiB cap"):
        read_answer(httpx.Response(200, stream=body))
    assert body.read == MAX_ANSWER_BYTES // body.size + 1


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    body = Counted(pieces=1)
    with pytest.raises(AnswerTooLarge, match="declares 2097152 bytes"):
        read_answer(httpx.Response(200, headers={"Content-Length": str(2 << 20)}, stream=body))
    assert body.read == 0


def test_answers_under_the_cap_are_decoded() -> None:
    text = b'{"code": "success"}' * 1000
    assert read_answer(httpx.Response(200, stream=httpx.ByteStream(text))) == text
    gzipped = httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Stream(gzip.compress(text)))
    assert read_answer(gzipped) == text


class Stream(httpx.SyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
    ],
)
def test_compressed_answers_are_bounded_once_decoded(coding: str, encode: Any) -> None:
    small = b"{}" * 1000
    assert decode_answer(encode(small), coding) == small
    bomb = encode(b" " * (MAX_ANSWER_BYTES + 1))  # a few KiB on the wire
    assert len(bomb) < 64 << 10
    with pytest.raises(AnswerTooLarge, match="decompresses to more than"):
        decode_answer(bomb, coding)


def test_exactly_the_cap_is_allowed_and_other_codings_pass_through() -> None:
    assert len(decode_answer(gzip.compress(b"a" * MAX_ANSWER_BYTES), "gzip")) == MAX_ANSWER_BYTES
    assert decode_answer(b"raw", "br") == b"raw"  # never asked for: parsing it fails, clearly
    assert decode_answer(gzip.compress(gzip.compress(b"{}")), "gzip, gzip") == b"{}"
    with pytest.raises(httpx.TransportError, match="not valid gzip"):
        decode_answer(b"not gzip", "gzip")


def test_the_hook_refuses_an_oversized_api_answer_without_reading_it(fake_api: FakeApi) -> None:
    body = Counted(pieces=1000)
    fake_api.script(lambda request: httpx.Response(200, stream=body))
    with pytest.raises(CometConnectionError, match="was refused: more than the 1 MiB cap") as info:
        make_hook(fake_api, retry_policy=FAST_RETRY).get_task("task-1")
    assert body.read <= FAST_RETRY.max_attempts * (MAX_ANSWER_BYTES // body.size + 1)
    assert "gateway or proxy" in str(info.value)


def test_api_calls_ask_only_for_codings_the_cap_can_decode(fake_api: FakeApi) -> None:
    from ._fakes import feed_answer

    fake_api.script(feed_answer())
    make_hook(fake_api).get_task("task-1")
    assert fake_api.requests[0].headers["Accept-Encoding"] == "gzip, deflate"


# -- the connection form -----------------------------------------------------------------------------------


def test_the_connection_form_shows_the_network_extras() -> None:
    (conn_type,) = get_provider_info()["connection-types"]
    fields = conn_type["conn-fields"]
    assert fields["proxy"]["schema"]["format"] == "password"  # masked like the API key
    assert fields["ca_bundle"]["schema"]["type"] == ["string", "null"]
    assert fields["verify"]["schema"] == {"type": ["boolean", "null"], "default": True}
