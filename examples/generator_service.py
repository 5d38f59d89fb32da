"""A generator service that makes sure its model is there before it serves.

Run it next to an Ollama server::

    OLLAMA_HOST=ollama:11434 GENERATOR_MODEL=gpt-oss:20b python examples/generator_service.py

At start-up it calls :func:`ensure_model`: it waits for the Ollama server however long the
server takes to start (within ``--timeout``), pulls the model if it is missing, and exits with
one clear error line (and a hint) if it cannot. Only then does it bind its port, so a readiness
probe on ``/healthz`` succeeds exactly when the service can answer. This replaces the seed's
``sleep 2 && ollama pull`` init container for a service that can run Python at start-up.

Endpoints:

- ``GET /healthz``: what ensure_model found, as JSON;
- ``POST /generate`` with ``{"prompt": "..."}``: ``{"model": ..., "response": ...}``.

Options fall back to environment variables: ``--model`` (``GENERATOR_MODEL``), ``--bind``
(``GENERATOR_BIND``), ``--port`` (``GENERATOR_PORT``; 0 picks a free port), ``--timeout``
(``OLLAMA_READY_TIMEOUT``, via ensure_model). ``OLLAMA_HOST`` names the Ollama server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import ollama

from ollama_ready.ensure import EnsureResult, ensure_model
from ollama_ready.errors import OllamaReadyError

logger = logging.getLogger("generator")

MAX_BODY = 1024 * 1024


class GeneratorServer(ThreadingHTTPServer):
    """An HTTP server that answers prompts with one model of one Ollama server."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], ready: EnsureResult) -> None:
        super().__init__(address, GeneratorHandler)
        self.ready = ready
        self.llm = ollama.Client(host=ready.host)

    def generate(self, prompt: str) -> str:
        """Return the model's answer to ``prompt``."""
        answer = self.llm.generate(model=self.ready.display_name, prompt=prompt, stream=False)
        return str(answer.response)


class GeneratorHandler(BaseHTTPRequestHandler):
    """Serve ``/healthz`` and ``/generate``."""

    server: GeneratorServer

    def do_GET(self) -> None:
        """Answer the health probe with what ensure_model found."""
        if self.path != "/healthz":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
            return
        self._send(HTTPStatus.OK, self.server.ready.to_dict())

    def do_POST(self) -> None:
        """Generate an answer for the JSON body's ``prompt``."""
        if self.path != "/generate":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if length > MAX_BODY:
                raise ValueError(f"body over {MAX_BODY} bytes")
            prompt = json.loads(self.rfile.read(length))["prompt"]
            if not isinstance(prompt, str):
                raise TypeError("prompt must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": f'expected {{"prompt": "..."}}: {exc}'})
            return
        try:
            response = self.server.generate(prompt)
        except (ollama.ResponseError, ConnectionError) as exc:
            self._send(HTTPStatus.BAD_GATEWAY, {"error": f"ollama: {exc}"})
            return
        self._send(HTTPStatus.OK, {"model": self.server.ready.display_name, "response": response})

    def _send(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options, each falling back to its environment variable."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default=env.get("GENERATOR_MODEL", "gpt-oss:20b"))
    parser.add_argument("--bind", default=env.get("GENERATOR_BIND", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("GENERATOR_PORT", "8000")))
    parser.add_argument("--timeout", type=float, default=None, help="seconds for start-up")
    parser.add_argument("--load", action="store_true", help="load the model before serving")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Ensure the model, then serve until SIGTERM or Ctrl-C; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        ready = ensure_model(args.model, timeout=args.timeout, load=args.load or None)
    except OllamaReadyError as exc:
        logger.error("cannot start: %s", exc)
        if exc.hint:
            logger.error("hint: %s", exc.hint)
        return 1
    logger.info("model ready: %r", ready)
    server = GeneratorServer((args.bind, args.port), ready)
    host, port = server.server_address[:2]
    print(f"serving {ready.display_name} on http://{host!s}:{port}", flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
