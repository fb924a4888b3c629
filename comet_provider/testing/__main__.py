"""``python -m comet_provider.testing``: run the CometAPI emulator as a server process."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

API_KEY_ENV = "COMET_EMULATOR_API_KEY"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m comet_provider.testing",
        description="Local emulator of CometAPI's Runway video2video endpoints.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (see --ready-file)")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"accepted Bearer token (default: ${API_KEY_ENV}; unset = any non-empty token)",
    )
    p.add_argument("--not-exist-seconds", type=float)
    p.add_argument("--queue-seconds", type=float)
    p.add_argument("--render-seconds", type=float)
    p.add_argument("--concurrency", type=int, help="running tasks before THROTTLED (0 = unlimited)")
    p.add_argument("--render", choices=("ffmpeg", "copy", "synthetic"))
    p.add_argument("--render-workers", type=int, help="concurrent ffmpeg runs")
    p.add_argument("--url-placement", help="rotate|video_url|result_url|output|inner_video_url|none")
    p.add_argument("--media-dir", help="served at /media/ (where pipelines stage source clips)")
    p.add_argument("--data-dir", help="renders, sources and blobs (default: a temp dir removed on exit)")
    p.add_argument("--public-url", help="base of URLs in payloads (default: the listening URL)")
    p.add_argument("--link-ttl", type=float, help="seconds render links work after success (default: forever)")
    p.add_argument(
        "--no-version-header",
        action="store_true",
        help="do not require the X-Runway-Version header",
    )
    p.add_argument("--config", help="more config as JSON, or @file.json (flags win)")
    p.add_argument("--ready-file", help="write the URL here once listening")
    p.add_argument("--cpu", help="pin to these CPUs, e.g. 0 or 0,2")
    p.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    p.add_argument("--log-requests", action="store_true", help="access log on stderr")
    p.add_argument("--log-level", default="INFO")
    return p


def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.config:
        text = Path(args.config[1:]).read_text() if args.config.startswith("@") else args.config
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise SystemExit("--config must be a JSON object")
        config.update(loaded)
    flags = {
        "not_exist_seconds": args.not_exist_seconds,
        "queue_seconds": args.queue_seconds,
        "render_seconds": args.render_seconds,
        "concurrency": args.concurrency,
        "render": args.render,
        "render_workers": args.render_workers,
        "url_placement": args.url_placement,
        "media_dir": args.media_dir,
        "data_dir": args.data_dir,
        "public_url": args.public_url,
        "link_ttl": args.link_ttl,
    }
    config.update({k: v for k, v in flags.items() if v is not None})
    if args.no_version_header:
        config["require_version_header"] = False
    if args.log_requests:
        config["log_requests"] = True
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    if api_key:
        config["api_key"] = api_key
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cpu:
        # Before anything starts threads, so every thread inherits the mask.
        os.sched_setaffinity(0, {int(c) for c in args.cpu.split(",") if c.strip()})
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    import asyncio

    from comet_provider.testing.emulator import EmulatorConfig, new_event_loop, serve

    try:
        config = EmulatorConfig.from_kwargs(_config_from_args(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loop = new_event_loop(args.loop)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(config, args.host, args.port, args.ready_file))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
