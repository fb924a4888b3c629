"""What the suite asks a running cluster: SQL on its metadata DB and calls to its REST API."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import psycopg2
from postgres import PostgresCluster
from waiting import ApiError, ClusterError, wait_for

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class ClusterApi:
    """The query half of :class:`cluster.AirflowCluster` (which starts and kills the processes)."""

    base_url: str
    postgres: PostgresCluster
    components: dict[str, Any]
    _token: str | None
    _client: httpx.Client | None
    _pg_conn: Any
    # and, from AirflowCluster: describe() and _check_alive(names), for error messages

    # -- SQL ---------------------------------------------------------------------------------

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on the metadata DB; returns the rows (empty for statements without)."""
        for attempt in range(2):
            if self._pg_conn is None or self._pg_conn.closed:
                self._pg_conn = self.postgres.connect()
            try:
                with self._pg_conn.cursor() as cur:
                    cur.execute(query, params)
                    return list(cur.fetchall()) if cur.description else []
            except psycopg2.OperationalError:
                with contextlib.suppress(Exception):
                    self._pg_conn.close()
                self._pg_conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    # -- REST API ----------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT from the API server (simple auth manager, all users admins)."""
        if self._token is None:
            resp = httpx.get(f"{self.base_url}/auth/token", timeout=10)
            resp.raise_for_status()
            self._token = str(resp.json()["access_token"])
        return self._token

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=f"{self.base_url}/api/v2",
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=30,
                trust_env=False,
            )
        return self._client

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``path`` below /api/v2); raise on HTTP errors; return the JSON body."""
        resp = self.client.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise ApiError(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        if not resp.content:
            return None
        if "json" in resp.headers.get("content-type", ""):
            return resp.json()
        return resp.text

    def wait_dag(self, dag_id: str, *, timeout: float = 120) -> dict[str, Any]:
        """Wait until the DAG processor has serialized ``dag_id``; unpause it; return its details."""

        def parsed() -> dict[str, Any] | None:
            resp = self.client.get(f"/dags/{dag_id}")
            if resp.status_code == 404:
                # The DAG folder is the suite's own: any import error in it is fatal.
                errors = self.import_errors()
                if errors:
                    detail = "\n".join(f"{e.get('filename')}: {e.get('stack_trace')}" for e in errors)
                    raise ClusterError(f"DAG {dag_id} not parsed; import errors:\n{detail}")
                return None
            resp.raise_for_status()
            return dict(resp.json())

        dag = wait_for(parsed, timeout=timeout, what=f"DAG {dag_id} to be parsed", on_timeout=self.describe)
        if dag.get("is_paused"):
            self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        return dag

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/importErrors")["import_errors"])

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: str | None = None,
    ) -> str:
        """Trigger a DAG run (by default without a logical date); returns its run id."""
        body: dict[str, Any] = {"logical_date": logical_date, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 180,
        states: Iterable[str] = TERMINAL_RUN_STATES,
    ) -> dict[str, Any]:
        wanted = set(states)

        def done() -> dict[str, Any] | None:
            self._check_alive(n for n in self.components if n in {"api-server", "scheduler"})
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in wanted else None

        def why() -> str:
            tis = self.task_instances(dag_id, run_id)
            states_seen = sorted({(t["task_id"], t["map_index"], t["state"]) for t in tis})
            return f"task instances: {states_seen}\n{self.describe()}"

        return wait_for(done, timeout=timeout, interval=1, what=f"{dag_id}/{run_id} in {wanted}", on_timeout=why)

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """All task instances of a run (mapped ones each separately), optionally of one task."""
        out: list[dict[str, Any]] = []
        offset = 0
        params: dict[str, Any] = {"limit": 100}
        if task_id:
            params["task_id"] = task_id
        for _ in range(100):
            page = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                params={**params, "offset": offset},
            )
            items = page["task_instances"]
            out.extend(items)
            offset += len(items)
            if not items or offset >= page["total_entries"]:
                break
        return out

    def wait_task_states(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        predicate: Callable[[list[str | None]], bool],
        *,
        timeout: float = 120,
        what: str = "task states",
    ) -> list[dict[str, Any]]:
        """Wait until ``predicate`` holds for the states of all instances of ``task_id``."""

        def check() -> list[dict[str, Any]] | None:
            tis = [t for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id]
            return tis if tis and predicate([t["state"] for t in tis]) else None

        return wait_for(check, timeout=timeout, interval=0.5, what=f"{dag_id}.{task_id}: {what}")

    def ti_counts(self, dag_id: str | None = None) -> dict[str, int]:
        """Task-instance counts by state, straight from the metadata DB."""
        if dag_id:
            rows = self.sql(
                "SELECT coalesce(state, 'none'), count(*) FROM task_instance WHERE dag_id = %s GROUP BY 1",
                (dag_id,),
            )
        else:
            rows = self.sql("SELECT coalesce(state, 'none'), count(*) FROM task_instance GROUP BY 1")
        return {str(state): int(n) for state, n in rows}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        entry = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": True, "stringify": False},
        )
        return entry["value"]

    def xcom_entries(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        page = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/~/xcomEntries",
            params={"limit": 1000},
        )
        return list(page["xcom_entries"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """A task try's log as text (worker and triggerer parts) through the REST API."""
        resp = self.client.get(
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        resp.raise_for_status()
        body = resp.json()
        content = body.get("content")
        if isinstance(content, list):
            lines = []
            for item in content:
                if isinstance(item, dict):
                    lines.append(json.dumps(item, default=str))
                else:
                    lines.append(str(item))
            return "\n".join(lines)
        return str(content)

    def extra_links(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        body = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links",
            params={"map_index": map_index},
        )
        return dict(body.get("extra_links", body))

    def set_variable(self, key: str, value: str) -> None:
        resp = self.client.patch(f"/variables/{key}", json={"key": key, "value": value})
        if resp.status_code == 404:
            self.api("POST", "/variables", json={"key": key, "value": value})
        elif resp.status_code >= 400:
            raise ApiError(f"PATCH variable {key}: {resp.status_code} {resp.text}")

    def pool(self, name: str = "default_pool") -> dict[str, Any]:
        return dict(self.api("GET", f"/pools/{name}"))

    def set_connection(self, conn_id: str, **fields: Any) -> None:
        """Create or replace a connection in the metadata DB (``conn_type``, ``host``, ``password``, ...)."""
        self.client.delete(f"/connections/{conn_id}")
        self.api("POST", "/connections", json={"connection_id": conn_id, **fields})

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: Sequence[str | tuple[str, int]]) -> list[dict[str, Any]]:
        """Clear task instances of one run (a task id: all its map indices), as the UI's "Clear" does."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [list(t) if isinstance(t, tuple) else t for t in task_ids],
            "only_failed": False,
            "reset_dag_runs": True,
            "include_downstream": False,
        }
        return list(self.api("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)["task_instances"])

    def hitl_details(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's human-in-the-loop requests (approvals), answered or not."""
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/hitlDetails")["hitl_details"])

    def respond_hitl(self, dag_id: str, run_id: str, task_id: str, options: Sequence[str], map_index: int = -1) -> Any:
        """Answer a human-in-the-loop request as a person in the UI would (e.g. ``["Approve"]``)."""
        return self.api(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/{map_index}/hitlDetails",
            json={"chosen_options": list(options)},
        )
