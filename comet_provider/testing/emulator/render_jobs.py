"""Render jobs: fetch the inputs as CometAPI would, render them (ffmpeg, copy or synthetic), record the outcome.

gen4 tasks restyle by prompt keywords (:func:`render_video`); official-route tasks also take the
first reference image's palette and their seed (:mod:`.official_render`)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from pathlib import Path

from aiohttp import ClientSession

from comet_provider.testing.emulator.official import OfficialInputs
from comet_provider.testing.emulator.official_render import render_official
from comet_provider.testing.emulator.settings import EmulatorConfig
from comet_provider.testing.emulator.sources import fetch_source
from comet_provider.testing.emulator.timeline import EmulatedTask
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
        await fetch_source(self._session(), url, dest, timeout=self._config().fetch_timeout)

    async def _fetch_official(self, task_id: str, inputs: OfficialInputs) -> tuple[Path, list[Path]]:
        """The clip and every reference image (Runway fetches them all), with Runway's limits and types."""
        session, timeout = self._session(), self._config().fetch_timeout
        source = self.sources_dir / f"{task_id}.source.mp4"
        references = [self.sources_dir / f"{task_id}.reference{n}" for n in range(len(inputs.references))]
        try:
            await fetch_source(session, inputs.video_uri, source, timeout=timeout, checked=True)
            for n, (uri, dest) in enumerate(zip(inputs.references, references, strict=True)):
                what = f"reference image {n}"
                await fetch_source(session, uri, dest, media="image", timeout=timeout, checked=True, what=what)
        except BaseException:
            for path in (source, *references):
                path.unlink(missing_ok=True)
            raise
        return source, references

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
        inputs = task.official
        if inputs is None:
            source, references = self.sources_dir / f"{task.id}.source.mp4", list[Path]()
            await self.fetch(task.video, source)
        else:
            source, references = await self._fetch_official(task.id, inputs)
        if task.render_mode == "copy":
            for path in references:
                path.unlink(missing_ok=True)
            placeholder = await self.placeholder()
            return RenderOutput(source, placeholder.poster, placeholder.last_frame)
        try:
            timeout = self._config().render_timeout
            async with self._sem:
                if inputs is None:
                    return await render_video(
                        source, self.renders_dir, task.id, task.prompt, task.options, timeout=timeout
                    )
                # Runway picks a seed when none is given: renders of the same inputs then differ.
                seed = random.randrange(1 << 32) if inputs.seed is None else inputs.seed
                return await render_official(
                    source,
                    self.renders_dir,
                    task.id,
                    task.prompt,
                    seed=seed,
                    reference=references[0] if references else None,
                    ratio=inputs.ratio,
                    timeout=timeout,
                )
        finally:
            for path in (source, *references):
                path.unlink(missing_ok=True)

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
