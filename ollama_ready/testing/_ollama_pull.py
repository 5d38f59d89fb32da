"""The pull stream of FakeOllama: status lines, per-tick progress and the faults a pull carries.

:func:`pull_events` yields the objects of one ``/api/pull`` stream in the order a real server
writes them (``server/images.go`` ``PullModel``): ``pulling manifest``; one ``pulling <id>``
line per blob in manifest order, config last (a single full line for a blob already present,
otherwise the shared download's progress re-sent every tick); ``verifying sha256 digest``;
``writing manifest``; ``removing unused layers`` when an older manifest left blobs unused;
``success``. An ``{"error": ...}`` object ends the stream early.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ollama_ready.names import ModelName
from ollama_ready.testing._ollama_catalogue import FakeBlob, FakeModel
from ollama_ready.testing._ollama_downloads import Download, DownloadManager, StreamFault
from ollama_ready.testing._ollama_wire import is_ip, progress_line

__all__ = ["PullHooks", "ResetConnection", "Waiter", "manifest_error", "pull_events"]

_ALL_FAULTS = frozenset({"error", "reset", "stall"})
#: Before the first blob only the faults that end a pull fire; a stall needs a blob line.
_ENDING_FAULTS = frozenset({"error", "reset"})
_DNS_RESOLVER = "127.0.0.53:53"
#: Where a registry host name "resolves" in dial errors (an RFC 5737 documentation address).
_REGISTRY_ADDRESS = "203.0.113.10"

Events = Generator[dict[str, Any], None, bool]


class ResetConnection(Exception):
    """Abort the client's connection with a TCP reset."""


@dataclass(frozen=True, slots=True)
class Waiter:
    """A pull's view of its connection: sleep a tick, notice a client that left."""

    peer_gone: Callable[[], bool]
    stopping: threading.Event
    current: Callable[[], bool]

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False once the client left or the server stopped or restarted."""
        end = time.monotonic() + seconds
        while True:
            if self.stopping.is_set() or not self.current() or self.peer_gone():
                return False
            remaining = end - time.monotonic()
            if remaining <= 0:
                return True
            self.stopping.wait(min(remaining, 0.05))


@dataclass(frozen=True, slots=True)
class PullHooks:
    """What a pull needs from the server's state."""

    downloads: DownloadManager
    tick: Callable[[], float]
    has_blob: Callable[[str], bool]
    add_blob: Callable[[str, int], None]
    install: Callable[[FakeModel], bool]


@dataclass(slots=True)
class _Plan:
    """The faults one pull carries, in the order their byte thresholds are reached."""

    faults: list[tuple[int, StreamFault]] = field(default_factory=list)

    def next_target(self) -> int | None:
        return self.faults[0][0] if self.faults else None

    def due(self, reported: int, kinds: frozenset[str]) -> list[StreamFault]:
        due = [pair for pair in self.faults if reported >= pair[0] and pair[1].kind in kinds]
        self.faults = [pair for pair in self.faults if all(pair is not d for d in due)]
        return [fault for _, fault in due]


def manifest_error(name: ModelName, insecure: bool, unreachable: str | None) -> str:
    """Return the real server's text for a manifest fetch that failed.

    ``unreachable`` is None (the registry answered 404), ``"dial"`` or ``"dns"``.
    """
    if unreachable is None:
        return "pull model manifest: file does not exist"
    scheme = "http" if insecure else "https"
    url = f"{scheme}://{name.host}/v2/{name.namespace}/{name.model}/manifests/{name.tag}"
    host, _, port = name.host.partition(":")
    prefix = f'pull model manifest: Get "{url}": dial tcp'
    if unreachable == "dns":
        return f"{prefix}: lookup {host} on {_DNS_RESOLVER}: no such host"
    address = host if is_ip(host) else _REGISTRY_ADDRESS
    port = port or ("80" if insecure else "443")
    return f"{prefix} {address}:{port}: connect: connection refused"


def pull_events(
    model: FakeModel | str,
    hooks: PullHooks,
    waiter: Waiter,
    faults: list[StreamFault],
) -> Generator[dict[str, Any], None, None]:
    """Yield one pull stream; ``model`` is the manifest, or the error text fetching it gave.

    Raises:
        ResetConnection: a ``reset`` fault fired; the caller must reset the TCP connection.
    """
    yield {"status": "pulling manifest"}
    if isinstance(model, str):
        yield {"error": model}
        return
    targets = ((int(fault.at_fraction * model.size), fault) for fault in faults)
    plan = _Plan(sorted(targets, key=lambda pair: pair[0]))
    if (yield from _fire(plan, 0, {}, hooks, waiter, None, _ENDING_FAULTS)) is False:
        return
    reported = 0
    for blob in model.blobs:
        if hooks.has_blob(blob.digest):
            line = progress_line(blob, blob.size)
            yield line
            if (yield from _fire(plan, reported + blob.size, line, hooks, waiter, None)) is False:
                return
        elif not (yield from _download(blob, reported, plan, hooks, waiter)):
            return
        reported += blob.size
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    if hooks.install(model):
        yield {"status": "removing unused layers"}
    yield {"status": "success"}


def _download(
    blob: FakeBlob, reported: int, plan: _Plan, hooks: PullHooks, waiter: Waiter
) -> Events:
    """Follow one shared blob download to its end; return False if the pull must stop."""
    downloads = hooks.downloads
    download = downloads.acquire(blob.digest, blob.size)
    try:
        _cap(plan, download, reported, downloads)
        while True:
            if not waiter.wait(hooks.tick()):
                return False
            completed, finished = downloads.poll(download)
            line = progress_line(blob, completed)
            yield line
            if (
                yield from _fire(plan, reported + completed, line, hooks, waiter, download)
            ) is False:
                return False
            _cap(plan, download, reported, downloads)
            if finished:
                if downloads.finish(download):
                    hooks.add_blob(download.digest, download.total)
                return True
    finally:
        downloads.set_cap(download, None)
        downloads.release(download)


def _cap(plan: _Plan, download: Download, reported: int, downloads: DownloadManager) -> None:
    """Hold the download at the next fault's byte threshold if it falls inside this blob."""
    target = plan.next_target()
    if target is not None and reported <= target < reported + download.total:
        downloads.set_cap(download, target - reported)
    else:
        downloads.set_cap(download, None)


def _fire(  # noqa: PLR0917 - internal helper, every argument is needed
    plan: _Plan,
    reported: int,
    line: dict[str, Any],
    hooks: PullHooks,
    waiter: Waiter,
    download: Download | None,
    kinds: frozenset[str] = _ALL_FAULTS,
) -> Events:
    """Yield what the faults due at ``reported`` bytes send; return False to end the pull."""
    for fault in plan.due(reported, kinds):
        if fault.kind == "error":
            yield {"error": fault.message}
            return False
        if fault.kind == "reset":
            raise ResetConnection
        if download is not None:
            hooks.downloads.freeze(download, fault.seconds)
        if fault.mode == "silent":
            if not waiter.wait(fault.seconds):
                return False
            continue
        end = time.monotonic() + fault.seconds
        while (remaining := end - time.monotonic()) > 0:
            if not waiter.wait(min(hooks.tick(), remaining)):
                return False
            yield dict(line)
    return True
