"""Render jobs: fetch the source clip as CometAPI would, render it (ffmpeg, copy or synthetic), record the outcome."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout

from comet_provider.testing.emulator.settings import EmulatorConfig
from comet_provider.testing.emulator.timeline import EmulatedTask
from comet_provider.testing.emulator.wire import safe_url
from comet_provider.testing.render import RenderError, RenderOutput, make_placeholder, render_video

log = logging.getLogger("comet_provider.testing")


class RenderJobs:
    """Runs one job per successful task, at most ``render_workers`` ffmpeg runs at once."""

    def __init__(
        self, config: Callable[[], EmulatorConfig], data_dir: Path, session: Callable[[], ClientSession]
    ) -> None:
        self._config = config
        self._session = session
        self.data_dir = data_dir
        self.renders_dir = data_dir / "renders"
        self.sources_dir = data_dir / "sources"
        self._workers = config().render_workers
        self._sem = asyncio.Semaphore(self._workers)
        self._placeholder: RenderOutput | None = None
        self._placeholder_lock = asyncio.Lock()
        self.clear_counts()

    def clear_counts(self) -> None:
        self.done = 0
        self.failed = 0

    def apply_config(self) -> None:
        workers = self._config().render_workers
        if workers != self._workers:
            self._sem = asyncio.Semaphore(workers)
            self._workers = workers

    async def fetch(self, url: str, dest: Path) -> None:
        """Download the source to ``dest`` (atomically); RenderError ``ASSET.INVALID`` on any failure."""
        partial = dest.with_name(dest.name + ".partial")
        shown = safe_url(url)
        try:
            timeout = ClientTimeout(total=self._config().fetch_timeout)
            async with self._session().get(url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise RenderError("ASSET.INVALID", f"could not fetch source video: HTTP {resp.status} from {shown}")
                with partial.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        out.write(chunk)
        except (ClientError, asyncio.TimeoutError, OSError) as exc:
            partial.unlink(missing_ok=True)
            detail = str(exc) or type(exc).__name__
            raise RenderError("ASSET.INVALID", f"could not fetch source video from {shown}: {detail}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, dest)

    async def placeholder(self) -> RenderOutput:
        async with self._placeholder_lock:
            if self._placeholder is None:
                folder = self.data_dir / "placeholder"
                folder.mkdir(parents=True, exist_ok=True)
                self._placeholder = await make_placeholder(folder)
            return self._placeholder

    async def _produce(self, task: EmulatedTask) -> RenderOutput:
        if task.render_mode == "synthetic":
            return await self.placeholder()
        source = self.sources_dir / f"{task.id}.source.mp4"
        await self.fetch(task.video, source)
        if task.render_mode == "copy":
            placeholder = await self.placeholder()
            return RenderOutput(source, placeholder.poster, placeholder.last_frame)
        try:
            async with self._sem:
                return await render_video(
                    source,
                    self.renders_dir,
                    task.id,
                    task.prompt,
                    task.options,
                    timeout=self._config().render_timeout,
                )
        finally:
            source.unlink(missing_ok=True)

    async def run(self, task: EmulatedTask, settled: Callable[[EmulatedTask], None]) -> None:
        """Render ``task``; ``settled(task)`` once its outcome is on record."""
        output: RenderOutput | None = None
        error: RenderError | None = None
        try:
            output = await self._produce(task)
            self.done += 1
        except RenderError as exc:
            error = exc
            self.failed += 1
            log.debug("render of task %s failed: %s", task.id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("render of task %s crashed", task.id, exc_info=True)
            error = RenderError("INTERNAL.BAD_OUTPUT.CODE01", f"emulator render error: {exc}")
            self.failed += 1
        finally:
            task.finish_render(output, error)
            settled(task)
