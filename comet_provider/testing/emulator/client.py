"""The client side: control-API calls shared by :class:`CometEmulator` and :class:`EmulatorProcess`."""

from __future__ import annotations

import functools
import json
import os
import ssl
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # httpx builds (and loads CA files into) a new context per client unless given one: ~50 ms each.
    return ssl.create_default_context()


class EmulatorClient:
    """Control-API calls shared by :class:`CometEmulator` and :class:`EmulatorProcess`.

    Errors: a rejected request (HTTP 400) raises ValueError, an unknown task LookupError."""

    url: str
    api_key: str | None
    _initial_api_key: str | None = None
    _http_client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        if not getattr(self, "url", ""):
            raise RuntimeError("the emulator is not running")
        if self._http_client is None:
            import httpx  # only the client side needs it; keeps the server process's start lean

            # trust_env=False: a proxy from the environment must never see loopback traffic.
            self._http_client = httpx.Client(base_url=self.url, timeout=60.0, trust_env=False, verify=_ssl_context())
        return self._http_client

    def _close_http(self) -> None:
        if self._http_client is not None:
            self._http_client.close()
            self._http_client = None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http().request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except Exception:
                message = response.text
            if response.status_code == 400:
                raise ValueError(message)
            if response.status_code == 404:
                raise LookupError(message)
            response.raise_for_status()
        return response.json()

    def health(self) -> bool:
        import httpx

        try:
            return self._http().get("/_emulator/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stats(self, tasks: bool = True) -> dict[str, Any]:
        """Counters since the last reset (``submissions``, ``in_flight``, ``peak_in_flight``, ``links``, ...)
        and, unless ``tasks=False``, every task with its inputs and current status."""
        result: dict[str, Any] = self._call("GET", "/_emulator/stats", params={"tasks": int(tasks)})
        return result

    def submission_counts(self, route: str | None = None) -> Counter[tuple[str, str]]:
        """Paid submissions since the last reset per ``(source, prompt)``: the inputs a render was paid for.

        Every route counts unless ``route`` ("pro" or "official") picks one. ``source`` is the clip's
        URL without its query string (so two signed URLs of one object count together), or a
        ``data:`` URI's digest; per-route totals are in ``stats()["routes"]``."""
        tasks = self.stats()["tasks"].values()
        return Counter((task["source"], task["prompt"]) for task in tasks if route in (None, task["route"]))

    def expire_links(self, task_id: str | None = None) -> int:
        """Make render links answer 403 (an expired signed URL): ``task_id``'s, or every link
        issued so far (all succeeded tasks). Returns how many tasks' links this expired."""
        body = {} if task_id is None else {"task_id": task_id}
        result: dict[str, Any] = self._call("POST", "/_emulator/expire", json=body)
        return int(result["expired"])

    def config(self) -> dict[str, Any]:
        """The current configuration (``api_key_set`` instead of the key)."""
        result: dict[str, Any] = self._call("GET", "/_emulator/config")
        return result

    def configure(self, **partial: Any) -> dict[str, Any]:
        """Change config keys while running; ``faults`` is merged, ``fail_next`` replaced."""
        if "faults" in partial and hasattr(partial["faults"], "to_dict"):
            partial["faults"] = partial["faults"].to_dict()
        partial = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in partial.items()}
        result: dict[str, Any] = self._call("POST", "/_emulator/config", json=partial)
        if "api_key" in partial:
            self.api_key = partial["api_key"]
        return result

    def reset(self, config: bool = False) -> None:
        """Forget tasks, counters, inboxes and pending one-shot faults; ``config=True``
        also restores the configuration the emulator started with."""
        self._call("POST", "/_emulator/reset", json={"config": config})
        if config:
            self.api_key = self._initial_api_key

    def inbox(self, name: str) -> list[dict[str, Any]]:
        """Requests stored at ``/_emulator/inbox/<name>`` (oldest first)."""
        result: list[dict[str, Any]] = self._call("GET", f"/_emulator/inbox/{name}")
        return result

    def clear_inbox(self, name: str) -> None:
        self._call("DELETE", f"/_emulator/inbox/{name}")

    @property
    def media_dir(self) -> Path | None:
        """The folder served at ``/media/`` (None when unset)."""
        media = self.config()["media_dir"]
        return Path(media) if media else None

    @property
    def data_dir(self) -> Path:
        """Where renders, fetched sources and blobs are written."""
        return Path(self.config()["data_dir"])

    def inbox_url(self, name: str) -> str:
        return f"{self.url}/_emulator/inbox/{name}"

    def media_url(self, relative_path: str) -> str:
        """URL of a file staged in ``media_dir``."""
        return f"{self.url}/media/{relative_path.lstrip('/')}"

    def blob_url(self, size: int) -> str:
        return f"{self.url}/_emulator/blob?size={int(size)}"

    def connection_json(self, conn_type: str = "comet", **extra: Any) -> str:
        """JSON for ``AIRFLOW_CONN_COMET_DEFAULT`` pointing at this emulator."""
        conn: dict[str, Any] = {
            "conn_type": conn_type,
            "host": self.url,
            # Any non-empty token works when the emulator has no key configured.
            "password": self.api_key or "comet-emulator",
        }
        if extra:
            conn["extra"] = extra
        return json.dumps(conn)
