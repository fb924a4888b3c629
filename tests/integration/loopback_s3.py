"""Servers of the suite's own on loopback, and what an S3 bucket showed while a test ran.

``LoopbackServer`` runs one server process (Redis, moto's S3 server) with its output in a log;
``BucketWatcher`` lists a bucket's objects and open multipart uploads a few times a second in a
thread, so any partial object that was ever visible is on record (used by test_celery_s3.py).
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from waiting import ClusterError, tail, wait_for

# AtomicFile's temporary sibling: ".<name>.<12 hex>.part" in the same folder.
TEMP_NAME = re.compile(r"^(?P<folder>(?:.*/)?)\.(?P<name>.+)\.[0-9a-f]{12}\.part$")
DUMMY_KEYS = {"login": "it-access-key", "password": "it-secret-key"}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def temp_target(key: str) -> str | None:
    """The destination a temporary ``.part`` object is written for, or None for other keys."""
    match = TEMP_NAME.match(key)
    return f"{match['folder']}{match['name']}" if match else None


class LoopbackServer:
    """A server process of the suite's (Redis, moto) on a loopback port, output in its own log."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_path: Path, env: Mapping[str, str]) -> None:
        self.name, self.argv, self.port, self.log_path, self.env = name, list(argv), port, log_path, dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> LoopbackServer:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ClusterError(f"{self.name} exited with {self.proc.returncode}\n{tail(self.log_path)}")
            with socket.socket() as sock:
                sock.settimeout(1)
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=timeout, interval=0.1, what=f"{self.name} on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=DUMMY_KEYS["login"],
        aws_secret_access_key=DUMMY_KEYS["password"],
    )


class BucketWatcher:
    """Lists the bucket's objects and open multipart uploads every ``interval`` seconds, in a thread.

    ``objects[key]``: every size seen and when (seconds since the watcher started) it was first
    and last seen; ``uploads[(key, upload_id)]``: when a multipart upload was first and last seen.
    """

    def __init__(self, endpoint: str, bucket: str, *, interval: float = 0.2) -> None:
        self.client = s3_client(endpoint)
        self.bucket, self.interval = bucket, interval
        self.started = time.monotonic()
        self.objects: dict[str, dict[str, Any]] = {}
        self.uploads: dict[tuple[str, str], dict[str, float]] = {}
        self.listings = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bucket-watcher", daemon=True)

    def start(self) -> BucketWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan()
            except Exception as exc:  # the server is stopping at teardown; keep the last error only
                self.errors = [repr(exc)]
            self._stop.wait(self.interval)

    def scan(self) -> None:
        objects = list_objects(self.client, self.bucket)
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        t = self.now()
        with self._lock:
            self.listings += 1
            for key, size in objects.items():
                seen = self.objects.setdefault(key, {"sizes": set(), "first": t, "last": t})
                seen["sizes"].add(size)
                seen["last"] = t
            for upload in uploads:
                entry = self.uploads.setdefault((upload["Key"], upload["UploadId"]), {"first": t, "last": t})
                entry["last"] = t

    def temp_objects(self, prefix: str = "") -> list[dict[str, Any]]:
        """Every temporary ``.part`` object ever listed under ``prefix``: key, sizes, when."""
        with self._lock:
            return [
                {
                    "key": k,
                    "target": temp_target(k),
                    "sizes": sorted(v["sizes"]),
                    "first": v["first"],
                    "last": v["last"],
                }
                for k, v in sorted(self.objects.items())
                if k.startswith(prefix) and temp_target(k)
            ]

    def partial_objects(self, final_sizes: Mapping[str, int], prefix: str = "") -> list[str]:
        """Objects under ``prefix`` that were ever listed with fewer (or other) bytes than their
        destination holds at the end: a destination seen mid-write, or a temporary object
        holding a cut-short copy. ``final_sizes``: key -> size at the end."""
        found = []
        with self._lock:
            for key, seen in sorted(self.objects.items()):
                if not key.startswith(prefix):
                    continue
                target = temp_target(key) or key
                final = final_sizes.get(target)
                other = sorted(s for s in seen["sizes"] if s != final)
                if other:
                    found.append(
                        f"{key}: listed with {other} bytes (destination {target} holds {final}) "
                        f"from t={seen['first']}s to t={seen['last']}s"
                    )
        return found


def list_objects(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    """key -> size of every object under ``prefix``."""
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({o["Key"]: int(o["Size"]) for o in page.get("Contents", [])})
    return found
