"""What the proxy and metrics scenarios (test_cluster_proxy_metrics.py) run against: a cluster of their own.

A LocalExecutor ``AirflowCluster`` whose components send Airflow's StatsD metrics to
:class:`StatsdListener` (UDP on loopback, in this process), and two emulators that only a
counting forward proxy (:class:`CountingProxy`, this process) can reach: their connections
name the host ``comet-emulator.invalid``, which only the proxy resolves (to 127.0.0.1), and
the emulators' render links name it too.

- ``comet_proxied``: ``http://comet-emulator.invalid:<port>``, the proxy (with credentials)
  in the connection's ``proxy`` extra: the proxy sees every request (absolute URIs).
- ``comet_tls``: ``https://comet-emulator.invalid:<port>`` behind a TLS front
  (``tests/hook/_proxy.TlsFront``, a test CA), the right ``ca_bundle``; the proxy comes from
  ``HTTPS_PROXY`` in the components' environment: CONNECT tunnels.
- ``comet_tls_wrong_ca``: the same host with an unrelated CA as ``ca_bundle``.
- ``comet_bad_proxy_password``: ``comet_proxied`` with a wrong proxy password (the proxy answers 407).

Both proxy and listener name the Airflow component each request or packet came from
(:meth:`ProxyMetricsStack.origin`: the cluster process holding the socket), so "polls from
the triggerer" is read off the socket, not assumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from cluster import AirflowCluster
from stack import BUILD_DIR

from comet_provider.hooks.comet import FEED_PATH, SUBMIT_PATH
from tests.hook._proxy import Certificates, ForwardProxy, TlsFront, _pipe, _ProxyHandler, make_certificates

LOGS_DIR = BUILD_DIR / "integration-logs-proxy-metrics"  # not integration-logs: the session stack resets that one
DAGS_DIR = Path(__file__).resolve().parent / "proxy_metrics_dags"
DAG_ID = "it_proxy_metrics"
ALIAS = "comet-emulator.invalid"  # .invalid never resolves (RFC 6761): only the proxy maps it
PROXY_USER = "egress"
CONN_HTTP, CONN_TLS, CONN_WRONG_CA = "comet_proxied", "comet_tls", "comet_tls_wrong_ca"
CONN_BAD_PROXY = "comet_bad_proxy_password"
STATSD_PREFIX = "airflow"
# A render is invisible for 1 s, queued (0 %) until 9 s, done at 13 s: it ends 10+ s after its task
# deferred (the scheduler race in README.md), and a trigger's first poll sees it at 0 %, so the
# time-to-first-progress timer (sent on the first poll with progress after one without) is sent.
NOT_EXIST_SECONDS, QUEUE_SECONDS, RENDER_SECONDS = 1.0, 8.0, 4.0
CLIP = "clip.mp4"


def operation(method: str, path: str) -> str:
    """What a request through the proxy was for."""
    if method == "CONNECT":
        return "tunnel"
    if (method, path) == ("POST", SUBMIT_PATH):
        return "submit"
    if (method, path) == ("POST", FEED_PATH):
        return "poll"
    if path.startswith("/media/"):
        return "source_head" if method == "HEAD" else "source_get"
    return "download" if method == "GET" and path.startswith("/renders/") else "other"


@dataclass
class ProxyEvent:
    origin: str  # the Airflow component whose process opened the connection
    method: str
    path: str  # host:port for CONNECT
    bytes_up: int = 0  # request body (for a tunnel: everything the client sent)
    bytes_down: int = 0  # answer body (for a tunnel: everything sent back)

    @property
    def op(self) -> str:
        return operation(self.method, self.path)


class _CountingHandler(_ProxyHandler):
    """``tests/hook/_proxy``'s handler, recording each request with its origin and bytes."""

    def setup(self) -> None:
        super().setup()
        proxy: CountingProxy = self.server.owner  # type: ignore[attr-defined]
        # Looked up while the client holds the connection open (it waits for the first answer).
        proxy.local.origin = proxy.origin_of(int(self.client_address[1]))
        proxy.local.up = 0

    def _forward(self, proxy: ForwardProxy, method: str, target: str, headers: list[tuple[str, str]]) -> bool:
        assert isinstance(proxy, CountingProxy)
        proxy.local.up = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        return super()._forward(proxy, method, target, headers)

    def _tunnel(self, proxy: ForwardProxy, target: str) -> None:
        assert isinstance(proxy, CountingProxy)
        host, _, port = target.rpartition(":")
        proxy.count("CONNECT", target)
        event = proxy.local.event
        try:
            upstream = socket.create_connection((proxy.resolve(host), int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with upstream:
            upstream.settimeout(None)
            _pipe(_Counted(self.connection, event, "bytes_up"), _Counted(upstream, event, "bytes_down"))  # type: ignore[arg-type]


class _Counted:
    """A socket whose received bytes are added to ``event.<field>`` (the tunnel's pipe reads both ends)."""

    def __init__(self, sock: socket.socket, event: ProxyEvent, field: str) -> None:
        self._sock, self._event, self._field = sock, event, field

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        setattr(self._event, self._field, getattr(self._event, self._field) + len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class CountingProxy(ForwardProxy):
    """``ForwardProxy`` (absolute URIs and CONNECT, credentials, aliases) keeping one :class:`ProxyEvent` a request."""

    def __init__(self, *, origin_of: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server.RequestHandlerClass = _CountingHandler
        self.origin_of = origin_of
        self.events: list[ProxyEvent] = []
        self.local = threading.local()

    def count(self, method: str, path: str) -> None:
        super().count(method, path)
        event = ProxyEvent(getattr(self.local, "origin", "?"), method, path, bytes_up=getattr(self.local, "up", 0))
        self.local.event = event
        with self._lock:
            self.events.append(event)

    def count_bytes(self, path: str, size: int) -> None:
        super().count_bytes(path, size)
        self.local.event.bytes_down += size

    def tally(self) -> dict[str, dict[str, int]]:
        """``"<origin> <op> <METHOD> <path>"`` -> requests, bytes up, bytes down."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            events = list(self.events)
        for e in events:
            row = out.setdefault(
                f"{e.origin} {e.op} {e.method} {e.path}", {"requests": 0, "bytes_up": 0, "bytes_down": 0}
            )
            row["requests"] += 1
            row["bytes_up"] += e.bytes_up
            row["bytes_down"] += e.bytes_down
        return dict(sorted(out.items()))

    def ops(self, origin: str | None = None) -> Counter[str]:
        """Requests per operation (of one origin)."""
        with self._lock:
            return Counter(e.op for e in self.events if origin in (None, e.origin))


@dataclass(frozen=True)
class Metric:
    name: str  # as received, Airflow's prefix included
    value: float
    kind: str  # c, ms, g
    origin: str


class StatsdListener:
    """A UDP StatsD server on loopback keeping the provider's metrics (Airflow's own are only counted)."""

    def __init__(self, origin_of: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.origin_of = origin_of
        self.metrics: list[Metric] = []
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statsd-listener", daemon=True)

    def start(self) -> StatsdListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.packets += 1
            lines = [line for line in data.decode(errors="replace").splitlines() if "comet_provider." in line]
            if not lines:
                continue
            origin = self.origin_of(int(addr[1]), udp=True)
            for line in lines:
                name, _, rest = line.partition(":")
                value, _, kind = rest.partition("|")
                self.metrics.append(Metric(name, float(value), kind.split("|")[0], origin))

    def values(self, name: str, kind: str | None = None) -> list[float]:
        """Every value received under ``name`` (Airflow's prefix included)."""
        return [m.value for m in list(self.metrics) if m.name == name and kind in (None, m.kind)]

    def total(self, name: str) -> float:
        return sum(self.values(name, "c"))

    def origins(self, name: str) -> Counter[str]:
        return Counter(m.origin for m in list(self.metrics) if m.name == name)


def _socket_inodes(proto: str, local_port: int) -> set[str]:
    """Inodes of the sockets bound to ``local_port`` on loopback (from /proc/net)."""
    found = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                    found.add(fields[9])
    return found


class ProxyMetricsStack:
    """Certificates, emulators, TLS front, proxy, StatsD listener and the cluster; ``close()`` stops all."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="comet-it-proxy-"))
        self.renders = self.root / "renders"
        self.api_key = f"sk-comet-it-{secrets.token_hex(16)}"
        self.proxy_password = f"pr0xy-{secrets.token_hex(8)}"
        self.wrong_proxy_password = f"wr0ng-{secrets.token_hex(8)}"
        self.marks = {"start": time.monotonic()}
        self.timings: dict[str, float] = {}
        self.cluster: AirflowCluster | None = None
        self.emulator: Any = None
        self.tls_emulator: Any = None
        self.tls: TlsFront | None = None
        self.certs: Certificates | None = None
        self.proxy = CountingProxy(
            origin_of=self.origin, aliases={ALIAS: "127.0.0.1"}, credentials=(PROXY_USER, self.proxy_password)
        )
        self.statsd = StatsdListener(self.origin)
        self.runs: dict[str, str] = {}
        self._serving: list[Any] = []  # servers started (shutting down one never started would hang)

    # -- setup -----------------------------------------------------------------------------------

    def start(self) -> ProxyMetricsStack:
        from comet_provider.testing import EmulatorProcess
        from comet_provider.testing.render import make_sample_video

        media = self.root / "media"
        media.mkdir()
        self.renders.mkdir()
        make_sample_video(media / CLIP, seconds=2, size="160x120", rate=10)
        self.certs = make_certificates(self.root, [ALIAS])
        settings: dict[str, Any] = {
            "api_key": self.api_key,
            "render": "copy",
            "media_dir": str(media),
            "not_exist_seconds": NOT_EXIST_SECONDS,
            "queue_seconds": QUEUE_SECONDS,
            "render_seconds": RENDER_SECONDS,
        }
        self.emulator = EmulatorProcess(**settings).start()
        self.tls_emulator = EmulatorProcess(**settings).start()
        self.tls = TlsFront(_port(self.tls_emulator.url), self.certs.cert, self.certs.key).__enter__()
        self._serving.append(self.tls)
        self._serving.append(self.proxy.__enter__())
        self.statsd.start()
        http_base = f"http://{ALIAS}:{_port(self.emulator.url)}"
        tls_base = f"https://{ALIAS}:{self.tls.port}"
        self.emulator.configure(public_url=http_base)  # render links name the alias too
        self.tls_emulator.configure(public_url=tls_base)
        proxy_url = self.proxy.url_with(PROXY_USER, self.proxy_password)
        env = {
            "AIRFLOW_CONN_COMET_PROXIED": self._connection(http_base, proxy=proxy_url),
            "AIRFLOW_CONN_COMET_TLS": self._connection(tls_base, ca_bundle=str(self.certs.ca)),
            "AIRFLOW_CONN_COMET_BAD_PROXY_PASSWORD": self._connection(
                http_base, proxy=self.proxy.url_with(PROXY_USER, self.wrong_proxy_password)
            ),
            "AIRFLOW_CONN_COMET_TLS_WRONG_CA": self._connection(
                tls_base, proxy=proxy_url, ca_bundle=str(self.certs.other_ca)
            ),
            # comet_tls takes its proxy from here (both cases: lower case wins over an outer one).
            "HTTPS_PROXY": proxy_url,
            "https_proxy": proxy_url,
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.statsd.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": STATSD_PREFIX,
        }
        self.timings["emulators_proxy"] = time.monotonic() - self.marks["start"]
        self.cluster = AirflowCluster(dags_folder=DAGS_DIR, logs_dir=LOGS_DIR, extra_env=env, parallelism=4)
        self.cluster.start()
        self.timings.update({f"cluster_{k}": v for k, v in self.cluster.timings.items()})
        self.cluster.wait_dag(DAG_ID)
        self.timings["ready"] = time.monotonic() - self.marks["start"]
        return self

    def _connection(self, host: str, **extra: str) -> str:
        return json.dumps({"conn_type": "comet", "host": host, "password": self.api_key, "extra": extra})

    def case(self, conn_id: str, name: str, prompt: str) -> dict[str, Any]:
        """One restyle: the clip (served by the plain emulator on 127.0.0.1) into ``renders/<name>.mp4``."""
        return {
            "comet_conn_id": conn_id,
            "video": self.emulator.media_url(CLIP),
            "prompt": prompt,
            "output_path": str(self.renders / f"{name}.mp4"),
        }

    def launch(self, name: str, cases: list[dict[str, Any]]) -> str:
        """The run ``name`` (triggered once); returns its run id."""
        assert self.cluster is not None
        if name not in self.runs:
            self.runs[name] = self.cluster.trigger(DAG_ID, {"cases": cases}, run_id=f"it_proxy_{name}_{time.time_ns()}")
        return self.runs[name]

    # -- observing -------------------------------------------------------------------------------

    def origin(self, port: int, udp: bool = False) -> str:
        """The cluster component whose process holds the loopback socket on ``port`` ("worker": a task)."""
        inodes = {f"socket:[{i}]" for i in _socket_inodes("udp" if udp else "tcp", port)}
        if not inodes or self.cluster is None:
            return "?"
        for comp in list(self.cluster.components.values()):
            try:
                root = psutil.Process(comp.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                with contextlib.suppress(OSError):
                    for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                        with contextlib.suppress(OSError):
                            if os.readlink(f"/proc/{proc.pid}/fd/{fd}") in inodes:
                                return "worker" if comp.kind == "scheduler" else comp.kind
        return "?"

    def seconds_since(self, mark: str) -> float:
        return round(time.monotonic() - self.marks[mark], 2)

    # -- teardown --------------------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        found = self.cluster.leftovers() if self.cluster is not None else []
        for name, emu in (("emulator", self.emulator), ("tls emulator", self.tls_emulator)):
            proc = getattr(emu, "process", None)
            if proc is not None and proc.poll() is None:
                found.append(f"{name} pid {proc.pid}")
        return found

    def close(self) -> None:
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        for server in self._serving:
            with contextlib.suppress(Exception):
                server.__exit__(None, None, None)
        self.statsd.stop()
        for name, emu in (("http", self.emulator), ("tls", self.tls_emulator)):
            if emu is None:
                continue
            log_path = getattr(emu, "log_path", None)
            if log_path is not None and Path(log_path).exists():
                with contextlib.suppress(OSError):
                    shutil.copy(log_path, LOGS_DIR / f"emulator-{name}.log")
            with contextlib.suppress(Exception):
                emu.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port
