"""Create a model on the server from a Modelfile or a GGUF file, the way ``ollama create`` does.

For every local file the Modelfile names: hash it (streamed, constant memory), ask the server
whether it has that blob (``HEAD /api/blobs/sha256:...``), upload it only if not (``POST``, the
client streams the file), then call ``/api/create`` with the file names and digests and the
Modelfile's template, system prompt, parameters, licenses and messages. Running it again uploads
nothing; the server answers ``using existing layer`` and the model keeps its digest.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from ollama_ready._format import human_bytes
from ollama_ready.clock import Deadline
from ollama_ready.errors import (
    ConfigError,
    DeadlineExceeded,
    DigestMismatch,
    OllamaConnectionError,
    OllamaReadyError,
    ProtocolError,
    ResponseError,
)
from ollama_ready.modelfile import LocalSource, Modelfile, is_lfs_pointer
from ollama_ready.names import ModelName
from ollama_ready.progress import LayerProgress, Phase, ProgressSnapshot, PullEvent, Reporter

if TYPE_CHECKING:
    from ollama_ready.client import ListedModel, Timeout

__all__ = ["CreateClient", "CreateResult", "create_model", "file_digest"]

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1 << 20
_GGUF_MAGIC = b"GGUF"
_CONNECT_TIMEOUT = 5.0
# Without a deadline a create may be silent for long (safetensors conversion, quantizing).
_UNBOUNDED_READ_TIMEOUT = 3600.0


class CreateClient(Protocol):
    """The part of :class:`~ollama_ready.client.OllamaClient` that :func:`create_model` uses."""

    @property
    def base_url(self) -> str: ...

    def has_blob(self, digest: str, *, timeout: Timeout | None = None) -> bool: ...

    def push_blob(
        self, digest: str, path: str | os.PathLike[str], *, timeout: Timeout | None = None
    ) -> bool: ...

    def list_models(self, *, timeout: Timeout | None = None) -> Sequence[ListedModel]: ...

    def create(
        self,
        name: str,
        *,
        from_: str | None = None,
        files: Mapping[str, str] | None = None,
        adapters: Mapping[str, str] | None = None,
        template: str | None = None,
        system: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        license: str | Sequence[str] | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        quantize: str | None = None,
        timeout: Timeout | None = None,
    ) -> Iterator[PullEvent]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateResult:
    """What :func:`create_model` did.

    ``uploaded`` and ``present`` are blob digests (``sha256:<hex>``): sent in this call, or
    already on the server. ``created`` says whether the server's model is new or changed
    (its manifest digest differs from before); re-creating identical content gives ``False``.
    ``digest`` and ``size`` describe the model afterwards, as ``/api/tags`` lists it (``None``,
    and ``created`` true, when the deadline left no time to look).
    """

    name: str
    created: bool
    uploaded: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    bytes_uploaded: int = 0
    base_model: str | None = None
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    adapters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    digest: str | None = None
    size: int | None = None
    statuses: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def file_digest(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = HASH_CHUNK_BYTES,
    deadline: Deadline | None = None,
) -> tuple[str, int]:
    """Return ``("sha256:<hex>", size)`` of a file, read in ``chunk_size`` pieces.

    Memory stays at one chunk whatever the file size.

    Raises:
        DeadlineExceeded: ``deadline`` ran out (or was cancelled) while hashing.
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            size += count
            if deadline is not None and deadline.expired:
                cause = "was cancelled" if deadline.cancelled else "ran out"
                raise DeadlineExceeded(
                    f"the deadline {cause} while hashing {os.fspath(path)} "
                    f"({human_bytes(size)} read in {deadline.elapsed():.1f}s)",
                    phase="create",
                )
    return f"sha256:{digest.hexdigest()}", size


def create_model(
    client: CreateClient,
    name: str,
    *,
    modelfile: str | os.PathLike[str] | Modelfile | None = None,
    gguf: str | os.PathLike[str] | None = None,
    quantize: str | None = None,
    deadline: Deadline | None = None,
    reporter: Reporter | None = None,
) -> CreateResult:
    """Create model ``name`` from a Modelfile (a path or a parsed one) or from a GGUF file.

    Give exactly one of ``modelfile`` and ``gguf``. Blobs the server already has are not
    uploaded again; calling this twice with the same files is cheap and changes nothing.
    ``deadline`` is checked between steps, while hashing and between stream lines.

    Raises:
        ConfigError: neither or both sources given, a bad model name, a missing GGUF file.
        ModelfileError: the Modelfile does not parse or names a file that does not exist.
        DigestMismatch: a file changed while it was being uploaded.
        DeadlineExceeded: ``deadline`` ran out.
        ResponseError: the server refused the create (its message is kept).
    """
    ModelName.parse(name)
    plan = _plan(modelfile, gguf)
    job = _CreateJob(client, name, deadline or Deadline(None), reporter)
    try:
        return job.run(plan, quantize)
    except OllamaReadyError as exc:
        job.fail(exc)
        raise


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to upload and what to ask ``/api/create`` for, checked before any request."""

    base_model: str | None
    model_files: LocalSource | None
    adapter_files: LocalSource | None
    fields: Mapping[str, Any]
    warnings: tuple[str, ...]


def _plan(
    modelfile: str | os.PathLike[str] | Modelfile | None, gguf: str | os.PathLike[str] | None
) -> _Plan:
    if gguf is not None:
        if modelfile is not None:
            raise ConfigError("create_model needs exactly one of modelfile= and gguf=, not both")
        return _Plan(None, _gguf_source(gguf), None, {}, ())
    if modelfile is None:
        raise ConfigError("create_model needs exactly one of modelfile= and gguf=")
    parsed = modelfile if isinstance(modelfile, Modelfile) else Modelfile.from_path(modelfile)
    base = parsed.resolve_from()
    adapter = parsed.resolve_adapter()
    local = base if isinstance(base, LocalSource) else None
    warnings = [*parsed.warnings]
    for source in (local, adapter):
        if source is not None:
            warnings.extend(source.warnings)
    return _Plan(
        base_model=base if isinstance(base, str) else None,
        model_files=local,
        adapter_files=adapter,
        fields=parsed.request_fields(),
        warnings=tuple(warnings),
    )


def _gguf_source(gguf: str | os.PathLike[str]) -> LocalSource:
    path = Path(os.path.expanduser(os.fspath(gguf))).absolute()
    if path.is_dir():
        raise ConfigError(
            f"GGUF path {path} is a directory; for a model directory pass a Modelfile "
            "whose FROM names it"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_GGUF_MAGIC))
    except FileNotFoundError:
        raise ConfigError(f"GGUF file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read GGUF file {path}: {exc.strerror or exc}") from exc
    if head != _GGUF_MAGIC:
        pointer = "; it is a Git LFS pointer: run `git lfs pull`" if is_lfs_pointer(path) else ""
        raise ConfigError(f"{path} is not a GGUF file (it does not start with 'GGUF'){pointer}")
    return LocalSource(path=path, files=MappingProxyType({path.name: path}))


class _CreateJob:
    """One :func:`create_model` call: its client, deadline, progress and tallies."""

    def __init__(
        self, client: CreateClient, name: str, deadline: Deadline, reporter: Reporter | None
    ) -> None:
        self.client = client
        self.name = name
        self.deadline = deadline
        self.progress = _Progress(name, deadline, reporter)
        self.uploaded: list[str] = []
        self.present: list[str] = []
        self.bytes_uploaded = 0
        self._known: dict[Path, str] = {}

    def run(self, plan: _Plan, quantize: str | None) -> CreateResult:
        files = self._upload_all(plan.model_files)
        adapters = self._upload_all(plan.adapter_files)
        self._check("before /api/create")
        before = self._listed()
        statuses = self._create(plan, files, adapters, quantize)
        # The model exists now; with no time left to look it up, report it as changed.
        after = None if self.deadline.expired else self._listed()
        created = after is None or before is None or before.digest != after.digest
        result = CreateResult(
            name=self.name,
            created=created,
            uploaded=tuple(self.uploaded),
            present=tuple(self.present),
            bytes_uploaded=self.bytes_uploaded,
            base_model=plan.base_model,
            files=MappingProxyType(files),
            adapters=MappingProxyType(adapters),
            digest=after.digest if after is not None else None,
            size=after.size if after is not None else None,
            statuses=statuses,
            warnings=plan.warnings,
        )
        self.progress.done(_summary(result))
        return result

    def fail(self, exc: OllamaReadyError) -> None:
        if exc.model is None:
            exc.model = self.name
        if exc.phase is None:
            exc.phase = "create"
        if exc.host is None:
            exc.host = self.client.base_url
        self.progress.failed(str(exc))

    def _upload_all(self, source: LocalSource | None) -> dict[str, str]:
        if source is None:
            return {}
        return {name: self._upload(name, path) for name, path in source.files.items()}

    def _upload(self, name: str, path: Path) -> str:
        known = self._known.get(path)
        if known is not None:
            return known
        self._check(f"before hashing {path}")
        self.progress.hashing(name, path)
        digest, size = file_digest(path, deadline=self.deadline)
        self._known[path] = digest
        if digest in self.uploaded or digest in self.present:
            return digest  # the same content under another name
        self._check(f"after hashing {path}")
        if self.client.has_blob(digest, timeout=self._timeout()):
            logger.info("%s: %s (%s) is already on the server", self.name, name, digest)
            self.present.append(digest)
            self.progress.blob(name, digest, size, uploaded=False)
            return digest
        self._check(f"before uploading {path}")
        logger.info("%s: uploading %s (%s, %s)", self.name, path, human_bytes(size), digest)
        self.progress.uploading(name, digest, size)
        try:
            self.client.push_blob(digest, path, timeout=self._timeout())
        except ResponseError as exc:
            if "digest mismatch" in exc.server_message:
                raise DigestMismatch(
                    f"uploading {path}: the server computed a different sha256 than {digest} "
                    f"({exc.server_message})",
                    hint="the file changed while it was read; make sure nothing writes to it",
                ) from exc
            raise
        self.uploaded.append(digest)
        self.bytes_uploaded += size
        self.progress.blob(name, digest, size, uploaded=True)
        return digest

    def _create(
        self,
        plan: _Plan,
        files: dict[str, str],
        adapters: dict[str, str],
        quantize: str | None,
    ) -> tuple[str, ...]:
        fields = plan.fields
        statuses: list[str] = []
        stream = self.client.create(
            self.name,
            from_=plan.base_model,
            files=files or None,
            adapters=adapters or None,
            template=fields.get("template"),
            system=fields.get("system"),
            parameters=fields.get("parameters"),
            license=fields.get("license"),
            messages=fields.get("messages"),
            quantize=quantize,
            timeout=self._timeout(),
        )
        try:
            for event in self._guarded(stream):
                statuses.append(event.status)
                self.progress.status(event.status)
                self._check(f"during /api/create (last status {event.status!r})")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if not statuses or statuses[-1] != "success":
            last = repr(statuses[-1]) if statuses else "none"
            raise ProtocolError(
                f"the /api/create stream for {self.name} ended without 'success' "
                f"(last status: {last})"
            )
        return tuple(statuses)

    def _guarded(self, stream: Iterator[PullEvent]) -> Iterator[PullEvent]:
        """Yield the stream's events; a read timeout at the deadline becomes DeadlineExceeded."""
        try:
            yield from stream
        except OllamaConnectionError as exc:
            if exc.kind == "timeout" and self.deadline.expired:
                raise self._deadline_error("waiting for /api/create") from exc
            raise

    def _listed(self) -> ListedModel | None:
        wanted = ModelName.parse(self.name)
        for info in self.client.list_models(timeout=self._timeout()):
            if wanted.matches(info.name):
                return info
        return None

    def _timeout(self) -> tuple[float, float]:
        left = self.deadline.remaining()
        read = _UNBOUNDED_READ_TIMEOUT if math.isinf(left) else left
        return (max(min(_CONNECT_TIMEOUT, read), 0.001), max(read, 0.001))

    def _check(self, step: str) -> None:
        if self.deadline.expired:
            raise self._deadline_error(step)

    def _deadline_error(self, step: str) -> DeadlineExceeded:
        cause = "was cancelled" if self.deadline.cancelled else "ran out"
        return DeadlineExceeded(
            f"creating {self.name}: the deadline {cause} {step} "
            f"after {self.deadline.elapsed():.1f}s",
            host=self.client.base_url,
            model=self.name,
            phase="create",
        )


def _summary(result: CreateResult) -> str:
    verb = "created" if result.created else "already up to date:"
    return (
        f"{verb} {result.name} ({human_bytes(result.bytes_uploaded)} uploaded, "
        f"{len(result.present)} of {len(result.present) + len(result.uploaded)} files "
        "already on the server)"
    )


class _Progress:
    """Turn the steps of a create into :class:`ProgressSnapshot` values for a reporter.

    Files are the layers: a blob already on the server counts as ``cached``, an upload as
    ``downloaded`` (bytes moved). Phases alternate so line reporters print every step.
    """

    def __init__(self, name: str, deadline: Deadline, reporter: Reporter | None) -> None:
        self._name = name
        self._deadline = deadline
        self._reporter = reporter
        self._layers: dict[str, LayerProgress] = {}
        self._uploaded = 0

    def hashing(self, file_name: str, path: Path) -> None:
        if self._reporter is None:
            return
        size = path.stat().st_size
        self._emit("verifying", f"hashing {file_name} ({human_bytes(size)})")

    def uploading(self, file_name: str, digest: str, size: int) -> None:
        self._layers[digest] = LayerProgress(digest=digest, total=size, completed=0, cached=0)
        self._emit("writing", f"uploading {file_name} ({human_bytes(size)})")

    def blob(self, file_name: str, digest: str, size: int, *, uploaded: bool) -> None:
        cached = 0 if uploaded else size
        self._layers[digest] = LayerProgress(
            digest=digest, total=size, completed=size, cached=cached
        )
        if uploaded:
            self._uploaded += size
            self._emit("writing", f"uploaded {file_name}")
        else:
            self._emit("writing", f"{file_name} is already on the server")

    def status(self, status: str) -> None:
        self._emit("writing", status)

    def done(self, message: str) -> None:
        self._emit("done", "success", message)

    def failed(self, message: str) -> None:
        self._emit("failed", "failed", message)

    def _emit(self, phase: Phase, status: str, message: str | None = None) -> None:
        if self._reporter is None:
            return
        layers = tuple(self._layers.values())
        self._reporter(
            ProgressSnapshot(
                model=self._name,
                phase=phase,
                status=status,
                layers=layers,
                layer=layers[-1] if layers else None,
                completed=sum(layer.completed for layer in layers),
                total=sum(layer.total or 0 for layer in layers) if layers else None,
                cached=sum(layer.cached for layer in layers),
                downloaded=self._uploaded,
                elapsed=self._deadline.elapsed(),
                message=message,
            )
        )
