"""The wire format every route shares: compact JSON, CometAPI's error envelope, safe URLs."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

#: The feed's answer for a task that is unknown or not visible yet.
TASK_NOT_EXIST = b'{"code":"task_not_exist","message":"task_not_exist","data":null}'


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps(payload), status=status, content_type="application/json", charset="utf-8", headers=headers
    )


def task_not_exist() -> web.Response:
    return web.Response(body=TASK_NOT_EXIST, status=400, content_type="application/json")


def safe_url(url: str) -> str:
    """URL without query/fragment/userinfo, for messages (signed URLs carry secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return url.split("?", 1)[0]


class Reject(Exception):
    """Turns into a JSON error envelope."""

    def __init__(self, status: int, message: str, param: str = "", code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


class Errors:
    """CometAPI-style error answers, each with its own request id (as the real gateway gives)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)

    def request_id(self) -> str:
        return f"{time.strftime('%Y%m%d%H%M%S')}{self._prefix}{next(self._ids):08d}"

    def response(self, status: int, message: str, param: str = "", code: str = "invalid_request") -> web.Response:
        rid = self.request_id()
        body = {
            "error": {
                "message": f"{message} (request id: {rid})",
                "type": "comet_api_error",
                "param": param,
                "code": code,
            }
        }
        return json_response(body, status, headers={"X-Oneapi-Request-Id": rid})

    def rejected(self, exc: Reject) -> web.Response:
        return self.response(exc.status, exc.message, exc.param, exc.code)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; :class:`Reject` (400) for anything else."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise Reject(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Reject(400, "request body must be a JSON object")
    return body
