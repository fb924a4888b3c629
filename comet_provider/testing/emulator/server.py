"""The emulator's aiohttp application: its state, its lifecycle, and task creation.

The routes live with their concern (``routes``, ``files``, ``control``,
``callbacks.Inboxes``); this class owns what they share. One event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import resource
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

from comet_provider.testing.emulator.callbacks import Callbacks, Inboxes
from comet_provider.testing.emulator.capacity import InFlight, Slots
from comet_provider.testing.emulator.control import ControlRoutes, build_stats
from comet_provider.testing.emulator.faults import Faults
from comet_provider.testing.emulator.files import Files
from comet_provider.testing.emulator.official import OfficialInputs
from comet_provider.testing.emulator.render_jobs import RenderJobs
from comet_provider.testing.emulator.routes import ROUTES, ApiRoutes
from comet_provider.testing.emulator.settings import PLACEMENTS, EmulatorConfig
from comet_provider.testing.emulator.timeline import EmulatedTask
from comet_provider.testing.emulator.wire import Errors

log = logging.getLogger("comet_provider.testing")


def _raise_fd_limit() -> None:
    # Thousands of concurrent clients need more descriptors than the usual soft limit.
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 65536
        target = min(target, 65536)
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class EmulatorServer:
    """The aiohttp application and its state. Runs on one event loop; not thread-safe."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._initial = copy.deepcopy(self.config)
        self._owns_data_dir = self.config.data_dir is None
        self.data_dir = Path(self.config.data_dir or tempfile.mkdtemp(prefix="comet-emulator-"))
        self.config.data_dir = str(self.data_dir)
        self._initial.data_dir = self.config.data_dir
        self._blobs_dir = self.data_dir / "blobs"
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._jobs: set[asyncio.Task[Any]] = set()
        self.generation = 0
        self.errors = Errors()
        self.api = ApiRoutes(self)
        self.control = ControlRoutes(self)
        self.inboxes = Inboxes()
        self.faults = Faults(self._config, self.errors)
        self.render_jobs = RenderJobs(self._config, self.data_dir, self._client_session)
        self.callbacks = Callbacks(self._config, self._client_session, lambda: self.base_url)
        self.files = Files(self._config, lambda: self.tasks, self.faults, self.errors, self._blobs_dir)
        self._clear_state()
        self.apply_config()

    # ---- state

    def _config(self) -> EmulatorConfig:
        # Components read it through here: reset(config=True) swaps the object.
        return self.config

    def _client_session(self) -> ClientSession:
        if self._session is None:
            raise RuntimeError("the emulator is not started")
        return self._session

    def _clear_state(self) -> None:
        self.tasks: dict[str, EmulatedTask] = {}
        self.task_counter = 0
        self.route_submissions = dict.fromkeys(ROUTES, 0)
        self.in_flight = InFlight()
        self.slots = Slots(self.config.concurrency)
        for part in (self.api, self.faults, self.callbacks, self.render_jobs, self.files):
            part.clear_counts()
        self.inboxes.clear()

    def apply_config(self, reseed: bool = True) -> None:
        """Carry a config change into running state (cached feed answers, fault sequence, pools)."""
        self.generation += 1
        if reseed:
            self.faults.reseed()
        self.render_jobs.apply_config()
        if self.config.concurrency != self.slots.concurrency:
            self.slots = Slots(self.config.concurrency)

    @property
    def base_url(self) -> str:
        return self.config.public_url or self.url

    def public_config(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "url": self.url}

    def stats(self, include_tasks: bool = True) -> dict[str, Any]:
        return build_stats(self, include_tasks)

    async def _cancel_jobs(self) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        self._jobs.clear()

    async def reset(self, config: bool = False) -> None:
        await self._cancel_jobs()
        if config:
            self.config = copy.deepcopy(self._initial)
        else:
            self.config.fail_next = []
        self._clear_state()
        self.apply_config()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        job = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # ---- tasks

    def create_task(
        self,
        video: str,
        prompt: str,
        model: str,
        options: dict[str, Any],
        callback_url: str | None,
        *,
        official: OfficialInputs | None = None,
    ) -> EmulatedTask:
        """A paid submission (either route: ``official`` holds the official route's inputs)."""
        cfg = self.config
        number = self.task_counter
        self.task_counter += 1
        placement = PLACEMENTS[number % len(PLACEMENTS)] if cfg.url_placement == "rotate" else cfg.url_placement
        now = time.monotonic()
        ready = cfg.not_exist_seconds + cfg.queue_seconds
        start = self.slots.start_offset(now, ready, cfg.render_seconds)
        task = EmulatedTask(
            str(uuid.uuid4()),
            prompt=prompt,
            video=video,
            model=model,
            options=options,
            callback_url=callback_url,
            placement=placement,
            render_mode=cfg.render,
            created_mono=now,
            not_exist_at=cfg.not_exist_seconds,
            ready_at=ready,
            start_at=start,
            end_at=start + cfg.render_seconds,
            official=official,
        )
        self.tasks[task.id] = task
        self.route_submissions[task.route] += 1
        self.in_flight.submitted(task, now)
        if task.outcome == "success":
            self._spawn(self.render_jobs.run(task, self._render_settled))
        if callback_url and callback_url.lower().startswith(("http://", "https://")):
            self._spawn(self.callbacks.run(task))
        log.debug("%s task %s created (placement %s, render %s)", task.route, task.id, placement, task.render_mode)
        return task

    def _render_settled(self, task: EmulatedTask) -> None:
        self.in_flight.settled(task)

    def expire_links(self, task_id: str | None = None) -> int:
        """Expire one task's links, or (None) every link issued so far, i.e. of every succeeded task.

        Returns how many tasks' links this expired; later tasks get working links."""
        now = time.monotonic()
        ttl = self.config.link_ttl
        if task_id is not None:
            targets = [self.tasks[task_id]]
        else:
            targets = [t for t in self.tasks.values() if t.state(now)[0] == "SUCCESS"]
        expired = 0
        for task in targets:
            if not task.link_expired(now, ttl):
                task.link_expired_mono = now
                expired += 1
        return expired

    # ---- lifecycle

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        for part in (self.api, self.files, self.control, self.inboxes):
            part.add_routes(app.router)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, backlog: int = 4096) -> str:
        """Listen on ``host:port`` (0 = a free port); returns the base URL."""
        _raise_fd_limit()
        for folder in (self.render_jobs.renders_dir, self.render_jobs.sources_dir, self._blobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        access_log = logging.getLogger("comet_provider.testing.access") if self.config.log_requests else None
        self._runner = web.AppRunner(self.build_app(), access_log=access_log, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, backlog=backlog).start()
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound_port}"
        self._session = ClientSession()
        log.info("CometAPI emulator listening on %s (data in %s)", self.url, self.data_dir)
        return self.url

    async def stop(self) -> None:
        await self._cancel_jobs()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._owns_data_dir:
            await asyncio.to_thread(shutil.rmtree, self.data_dir, True)
