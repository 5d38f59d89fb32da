"""Serve a FakeOllama in its own process, for scenarios that time or meter the client side only.

``python -m bench._server SPEC`` takes a JSON spec::

    {"tick": 0.002, "bandwidth": 2.5e9, "default_registry": false,
     "registry": [{"name": "bench-1:latest", "size": 1000000000, "layers": 3}],
     "present": ["llama3.2:1b"]}

prints ``{"url": "http://127.0.0.1:PORT"}`` on one line, then answers commands read from stdin,
one JSON line each: ``requests`` (the request log as ``[method, path]`` pairs) and ``clear``
(forget it). End of input stops the server.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ollama_ready.testing import FakeModel, FakeOllama

__all__ = ["main", "make_server"]


def make_server(spec: Mapping[str, Any]) -> FakeOllama:
    """Build (without starting) the FakeOllama a spec describes."""
    registry = [
        FakeModel.synthetic(
            str(model["name"]), size=int(model["size"]), layers=int(model.get("layers", 3))
        )
        for model in spec.get("registry", ())
    ]
    server = FakeOllama(
        registry=None if spec.get("default_registry", False) else registry,
        tick=float(spec.get("tick", 0.06)),
        bandwidth=None if spec.get("bandwidth") is None else float(spec["bandwidth"]),
    )
    if spec.get("default_registry", False):
        for model in registry:
            server.add_registry_model(model)
    for name in spec.get("present", ()):
        server.add_model(str(name))
    return server


def _answer(server: FakeOllama, command: str) -> dict[str, Any]:
    if command == "requests":
        return {"requests": [[r.method, r.path] for r in server.requests]}
    if command == "clear":
        server.clear_requests()
        return {"ok": True}
    return {"error": f"unknown command {command!r}"}


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stdin closes; return the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m bench._server SPEC_JSON", file=sys.stderr)
        return 2
    server = make_server(json.loads(args[0]))
    with server:
        print(json.dumps({"url": server.url}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command:
                print(json.dumps(_answer(server, command)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
