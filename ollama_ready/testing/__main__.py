"""Run a FakeOllama server standalone: ``python -m ollama_ready.testing``.

It prints one line, ``listening on http://HOST:PORT``, and serves until SIGTERM or SIGINT.
Readiness tests (the ``Serve`` strategy) and demos start it as a subprocess.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ollama_ready.testing._ollama import FakeOllama

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ollama_ready.testing",
        description="Serve a fake Ollama (simulated models, real HTTP) until SIGTERM or SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="a model present from the start (repeatable); catalogue models keep their sizes",
    )
    parser.add_argument(
        "--ready-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep the port open but answer nothing this long, like GPU discovery",
    )
    parser.add_argument("--tick", type=float, default=0.06, help="seconds between progress lines")
    parser.add_argument(
        "--bandwidth",
        type=float,
        default=None,
        metavar="BYTES_PER_S",
        help="simulated download speed per blob (default: unlimited)",
    )
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="pace pulls like a real server (>= 1 s per blob, 10 MB/s unless --bandwidth)",
    )
    parser.add_argument("--server-version", default="0.12.11", help="what /api/version reports")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; return the exit status."""
    args = _parser().parse_args(argv)
    bandwidth = args.bandwidth
    if args.realistic and bandwidth is None:
        bandwidth = 10_000_000
    server = FakeOllama(
        models=args.model,
        version=args.server_version,
        tick=args.tick,
        bandwidth=bandwidth,
        blob_min_seconds=1.0 if args.realistic else 0.0,
        host=args.host,
        port=args.port,
        ready_after=args.ready_after,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
