"""Pull one model with one client in a fresh process, and meter only that process.

``python -m bench._pull_client CLIENT URL MODEL`` where CLIENT is

- ``ours``: :func:`ollama_ready.pull.pull_model` (no progress reporter);
- ``raw``: a loop over :meth:`ollama_ready.client.OllamaClient.pull`, no pull engine around it;
- ``ollama``: the official client's ``pull(stream=True)`` loop;
- ``floor``: ``requests`` streaming the NDJSON and ``json.loads`` per line, nothing else.

It prints one JSON line: the CPU seconds of the pull (``time.process_time``, every thread),
its wall seconds, the peak RSS in KiB before and after the pull (:func:`peak_rss_kib`), the number
of progress events the loop saw (None for ``ours``, whose engine consumes them).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["CLIENTS", "PullMeasurement", "main", "measure_pull", "peak_rss_kib"]


@dataclass(frozen=True, slots=True)
class PullMeasurement:
    """What one metered pull cost its client process."""

    cpu_s: float
    wall_s: float
    rss_before_kib: int
    rss_peak_kib: int
    events: int | None


def measure_pull(
    python: str, client: str, url: str, model: str, *, timeout: float
) -> PullMeasurement:
    """Pull ``model`` from ``url`` with ``client`` in a fresh process and return its costs."""
    from bench._procs import run_json

    data = run_json([python, "-m", "bench._pull_client", client, url, model], timeout=timeout)
    return PullMeasurement(
        cpu_s=float(data["cpu_s"]),
        wall_s=float(data["wall_s"]),
        rss_before_kib=int(data["rss_before_kib"]),
        rss_peak_kib=int(data["rss_peak_kib"]),
        events=None if data["events"] is None else int(data["events"]),
    )


def _ours(url: str) -> Callable[[str], int | None]:
    from ollama_ready.client import OllamaClient
    from ollama_ready.pull import pull_model

    client = OllamaClient(url)

    def pull(model: str) -> int | None:
        pull_model(client, model, reporter=None)
        return None

    return pull


def _raw(url: str) -> Callable[[str], int | None]:
    from ollama_ready.client import OllamaClient

    client = OllamaClient(url)

    def pull(model: str) -> int | None:
        return sum(1 for _ in client.pull(model))

    return pull


def _floor(url: str) -> Callable[[str], int | None]:
    import json as json_module

    import requests

    session = requests.Session()

    def pull(model: str) -> int | None:
        with session.post(f"{url}/api/pull", json={"model": model}, stream=True) as response:
            response.raise_for_status()
            return sum(1 for line in response.iter_lines() if json_module.loads(line))

    return pull


def _ollama(url: str) -> Callable[[str], int | None]:
    import ollama

    client = ollama.Client(host=url)

    def pull(model: str) -> int | None:
        return sum(1 for _ in client.pull(model, stream=True))

    return pull


CLIENTS: dict[str, Callable[[str], Callable[[str], int | None]]] = {
    "ours": _ours,
    "raw": _raw,
    "ollama": _ollama,
    "floor": _floor,
}


def peak_rss_kib() -> int:
    """Return this process's peak resident set size in KiB.

    On Linux this is ``VmHWM``, the high-water mark of this program's own address space:
    ``ru_maxrss`` would also count the parent's memory that the child had before ``exec``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS counts bytes


def main(argv: Sequence[str] | None = None) -> int:
    """Pull, then print the measurements as one JSON line; return the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 3 or args[0] not in CLIENTS:
        print(f"usage: python -m bench._pull_client {{{'|'.join(CLIENTS)}}} URL MODEL")
        return 2
    name, url, model = args
    pull = CLIENTS[name](url)
    rss_before = peak_rss_kib()
    cpu = time.process_time()
    wall = time.perf_counter()
    events = pull(model)
    result = {
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "rss_before_kib": rss_before,
        "rss_peak_kib": peak_rss_kib(),
        "events": events,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
