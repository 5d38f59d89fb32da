"""``ensure_model()``: the one call an application makes before its first inference.

It composes the readiness strategies, the pull engine and the hardware checks into one operation
with ONE deadline. The phases run in order and each gets only what is left of that deadline::

    wait -> version -> pull (presence, pull or create) -> verify -> load -> placement

A failure raises the error of its kind (``NotReadyError``, ``ServerTooOld``, ``ModelNotFound``,
``PlacementError``, ...) with a message naming the phase, the time spent, the host and the model.
"""

from __future__ import annotations

import copy
import functools
import html
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import requests
from packaging.version import InvalidVersion, Version

from ollama_ready._format import human_bytes
from ollama_ready.client import ModelInfo, OllamaClient
from ollama_ready.clock import Clock, Deadline
from ollama_ready.config import Settings, parse_host
from ollama_ready.errors import (
    AggregateError,
    ConfigError,
    DeadlineExceeded,
    DigestMismatch,
    ModelNotPresent,
    OllamaReadyError,
    PlacementError,
    ServerTooOld,
)
from ollama_ready.names import ModelName
from ollama_ready.readiness import Poll, ReadyReport, Strategy

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

    from ollama_ready.fit import Placement
    from ollama_ready.pull import PullResult

__all__ = [
    "EnsureResult",
    "FleetResult",
    "ensure_fleet",
    "ensure_model",
    "ensure_model_async",
    "ensure_models",
    "ensure_models_async",
]

logger = logging.getLogger(__name__)

PHASES = ("wait", "version", "pull", "verify", "load", "placement")
_POLICIES = ("missing", "always", "never")
_NO_DEADLINE_LOAD_WAIT = 3600.0
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsureResult:
    """What :func:`ensure_model` found and did.

    ``phases`` maps each phase that ran to its duration in seconds. ``placement`` is set after a
    load: ``size`` versus ``size_vram`` and the ``ollama ps`` label (``100% GPU``, ...).
    """

    model: str
    requested: str
    host: str
    server_version: str | None
    digest: str | None
    size: int | None
    pulled: bool
    created: bool = False
    bytes_downloaded: int = 0
    phases: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    placement: Placement | None = None
    warnings: tuple[str, ...] = ()
    duration: float = 0.0

    @property
    def display_name(self) -> str:
        """The short name Ollama shows (``llama3.2:1b``)."""
        return ModelName.parse(self.model).display

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["phases"] = dict(self.phases)
        data["warnings"] = list(self.warnings)
        data["placement"] = asdict(self.placement) if self.placement is not None else None
        return data

    def __repr__(self) -> str:
        where = f", placement={self.placement.label!r}" if self.placement else ""
        return (
            f"EnsureResult(model={self.display_name!r}, host={self.host!r}, "
            f"server_version={self.server_version!r}, pulled={self.pulled}, "
            f"bytes_downloaded={self.bytes_downloaded}{where}, duration={self.duration:.3f}s"
            f"{f', warnings={list(self.warnings)!r}' if self.warnings else ''})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("model", self.display_name),
            ("host", self.host),
            ("server version", self.server_version or "unknown"),
            ("digest", (self.digest or "")[:12] or "unknown"),
            ("size", human_bytes(self.size) if self.size is not None else "unknown"),
            ("pulled", "yes" if self.pulled else ("created" if self.created else "no (present)")),
            ("downloaded", human_bytes(self.bytes_downloaded)),
            ("placement", self.placement.label if self.placement else "not loaded"),
            ("phases", ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.phases.items())),
            *(("warning", w) for w in self.warnings),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<table class='ollama-ready-result'>{body}</table>"


@dataclass(frozen=True, slots=True)
class FleetResult:
    """Per-host results of :func:`ensure_fleet`, in the order the hosts were given."""

    results: Mapping[str, tuple[EnsureResult, ...]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __getitem__(self, host: str) -> tuple[EnsureResult, ...]:
        return self.results[host]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Options:
    policy: str
    insecure: bool
    stall_timeout: float
    load: bool
    keep_alive: str | float | None
    require_gpu: bool
    min_server_version: SpecifierSet | None
    digest: str | None
    modelfile: str | os.PathLike[str] | None
    gguf: str | os.PathLike[str] | None
    progress: Any
    nvml: Any


class _Phases:
    """Times the phases of one ensure and gives every failure its context."""

    def __init__(self, deadline: Deadline, host: str, model: str | None) -> None:
        self.deadline = deadline
        self.host = host
        self.model = model
        self.durations: dict[str, float] = {}

    def inherit(self, durations: Mapping[str, float], model: str) -> _Phases:
        child = _Phases(self.deadline, self.host, model)
        child.durations.update(durations)
        return child

    @contextmanager
    def run(self, phase: str) -> Iterator[None]:
        started = self.deadline.elapsed()
        if self.deadline.expired:
            raise self._contextualise(
                DeadlineExceeded("no time left before the phase started"), phase, 0.0
            ) from None
        try:
            yield
        except OllamaReadyError as exc:
            spent = self.deadline.elapsed() - started
            raise self._contextualise(exc, phase, spent) from exc
        finally:
            self.durations[phase] = self.deadline.elapsed() - started

    def _contextualise(self, exc: OllamaReadyError, phase: str, spent: float) -> OllamaReadyError:
        target = f" for {self.model}" if self.model else ""
        error = copy.copy(exc)
        error.message = (
            f"{phase} phase failed after {spent:.1f}s{target} on {self.host}: {exc.message}"
        )
        error.args = (error.message,)
        error.phase = exc.phase or phase
        error.host = exc.host or self.host
        error.model = exc.model or self.model
        return error


class _Ensurer:
    """One server, one deadline: the wait and version phases once, then any number of models."""

    def __init__(
        self, settings: Settings, client: OllamaClient, deadline: Deadline, wait: Strategy
    ) -> None:
        self.settings = settings
        self.client = client
        self.deadline = deadline
        self.wait = wait
        self.phases = _Phases(deadline, client.base_url, None)
        self.server_version: str | None = None
        self.warnings: list[str] = []

    def prepare(self, options: _Options) -> None:
        with self.phases.run("wait"):
            report = self.wait(self.client, self.deadline)
        self.server_version = _report_version(report)
        with self.phases.run("version"):
            if self.server_version is None:
                self.server_version = self.client.version(timeout=self._request_timeout())
            self._check_version(options.min_server_version)

    def ensure(self, requested: str, options: _Options) -> EnsureResult:
        name = ModelName.parse(requested)
        phases = self.phases.inherit(self.phases.durations, name.display)
        warnings = list(self.warnings)
        pulled = created = False
        downloaded = 0
        digest: str | None = None
        size: int | None = None
        with phases.run("pull"):
            if options.modelfile is not None or options.gguf is not None:
                created = self._create(name, options)
            else:
                pull = self._pull(name, options)
                pulled = bool(pull.pulled)
                downloaded = int(pull.bytes_downloaded)
                digest = pull.digest
                size = pull.size
        if pulled or created or digest is None:
            with phases.run("verify"):
                self.client.show(name.full, timeout=self._request_timeout())
                listed = self._listed(name)
                if listed is None:
                    warnings.append(f"{name.display} answers /api/show but is not in /api/tags")
                else:
                    digest, size = listed.digest, listed.size
                if options.digest and digest and not _same_digest(options.digest, digest):
                    raise DigestMismatch(
                        f"{name.display} has manifest digest {digest[:12]}, "
                        f"expected {options.digest}",
                        hint="the tag moved: pin the new digest, or pull a fixed tag",
                    )
        placement: Placement | None = None
        if options.load or options.require_gpu:
            with phases.run("load"):
                self.client.load(
                    name.full, keep_alive=options.keep_alive, timeout=self._load_timeout()
                )
            with phases.run("placement"):
                placement = self._placement(name)
                if placement is None:
                    warnings.append(f"{name.display} was loaded but is not listed in /api/ps")
                elif options.require_gpu and placement.size_vram < placement.size:
                    raise PlacementError(
                        f"the server placed {name.display} {placement.label} "
                        f"({human_bytes(placement.size_vram)} of {human_bytes(placement.size)} "
                        "in VRAM); require_gpu asks for 100% GPU",
                        hint=_gpu_hint(options.nvml, placement),
                    )
        return EnsureResult(
            model=name.full,
            requested=requested,
            host=self.client.base_url,
            server_version=self.server_version,
            digest=digest,
            size=size,
            pulled=pulled,
            created=created,
            bytes_downloaded=downloaded,
            phases=MappingProxyType(dict(phases.durations)),
            placement=placement,
            warnings=tuple(warnings),
            duration=self.deadline.elapsed(),
        )

    def _request_timeout(self) -> tuple[float, float]:
        return (
            self._within_deadline(self.settings.connect_timeout),
            self._within_deadline(self.settings.read_timeout),
        )

    def _load_timeout(self) -> tuple[float, float]:
        # A load blocks until the model is in memory: minutes for a big model. Only the deadline
        # bounds the wait for its answer.
        return (self._within_deadline(self.settings.connect_timeout), self._within_deadline(None))

    def _within_deadline(self, seconds: float | None) -> float:
        # requests rejects a zero timeout; an expired deadline still gets a token millisecond.
        bounded = self.deadline.bound(seconds)
        return max(bounded if bounded is not None else _NO_DEADLINE_LOAD_WAIT, 0.001)

    def _check_version(self, required: SpecifierSet | None) -> None:
        if self.server_version is None:
            return
        try:
            version = Version(self.server_version)
        except InvalidVersion:
            message = f"server version {self.server_version!r} is not a release version"
            if required is not None:
                raise ServerTooOld(
                    f"{message}; cannot check it against {required}",
                    hint="run a released Ollama, or drop min_server_version",
                ) from None
            self.warnings.append(message)
            return
        if required is not None and not required.contains(version, prereleases=True):
            raise ServerTooOld(
                f"server version {version} does not satisfy {required}",
                hint="upgrade Ollama (https://ollama.com/download): new models need new servers",
            )

    def _pull(self, name: ModelName, options: _Options) -> PullResult:
        from ollama_ready.progress import make_reporter
        from ollama_ready.pull import pull_model

        return pull_model(
            self.client,
            name.full,
            policy=options.policy,
            insecure=options.insecure,
            digest=options.digest,
            stall_timeout=options.stall_timeout,
            deadline=self.deadline,
            reporter=make_reporter(options.progress, label=name.display),
            clock=self.deadline.clock,
        )

    def _create(self, name: ModelName, options: _Options) -> bool:
        from ollama_ready.create import create_model
        from ollama_ready.progress import make_reporter

        if options.policy != "always" and self._present(name):
            return False
        if options.policy == "never":
            raise ModelNotPresent(
                f"{name.display} is not on the server and pull_policy is 'never'",
                hint="create it first, or use pull_policy='missing'",
            )
        create_model(
            self.client,
            name.full,
            modelfile=options.modelfile,
            gguf=options.gguf,
            deadline=self.deadline,
            reporter=make_reporter(options.progress, label=name.display),
        )
        return True

    def _present(self, name: ModelName) -> bool:
        try:
            self.client.show(name.full, timeout=self._request_timeout())
        except ModelNotPresent:
            return False
        return True

    def _listed(self, name: ModelName) -> ModelInfo | None:
        for info in self.client.list_models(timeout=self._request_timeout()):
            if name.matches(info.name):
                return info
        return None

    def _placement(self, name: ModelName) -> Placement | None:
        from ollama_ready.fit import Placement  # deferred: only a load needs it

        for running in self.client.ps():
            if name.matches(running.name) or name.matches(running.model):
                return Placement.of(running)
        return None


def ensure_model(
    model: str | None = None,
    *,
    host: str | None = None,
    wait: Strategy | str | None = None,
    pull_policy: str | None = None,
    timeout: float | None = None,
    stall_timeout: float | None = None,
    progress: Any = None,
    insecure: bool | None = None,
    min_server_version: str | SpecifierSet | None = None,
    load: bool | None = None,
    keep_alive: str | float | None = None,
    require_gpu: bool | None = None,
    digest: str | None = None,
    modelfile: str | os.PathLike[str] | None = None,
    gguf: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    clock: Clock | None = None,
    deadline: Deadline | None = None,
    environ: Mapping[str, str] | None = None,
    nvml: Any = None,
) -> EnsureResult:
    """Wait for the server, make sure ``model`` is present (pulling it if needed), and verify it.

    Every argument left as ``None`` falls back to its ``OLLAMA_READY_*`` variable, then to the
    default; ``host`` falls back to ``OLLAMA_HOST``. With no ``model``, the one model named by
    ``OLLAMA_READY_MODELS`` is ensured. ``timeout`` (default 600 s) is ONE deadline for every
    phase together; ``deadline`` lets callers share a deadline across several calls.

    Raises:
        ConfigError: bad input (model name, host, policy, version specifier), before any request.
        NotReadyError: the server did not answer in time.
        ServerTooOld: the server's version does not satisfy ``min_server_version``.
        PullError: the pull failed; the subclass says why (``ModelNotFound``, ``DiskFull``, ...).
        PlacementError: ``require_gpu`` and the model did not land fully on the GPU.
    """
    settings = _settings(
        environ,
        host=host,
        timeout=timeout,
        stall_timeout=stall_timeout,
        pull_policy=pull_policy,
        insecure=insecure,
        load=load,
        keep_alive=keep_alive,
        require_gpu=require_gpu,
        min_server_version=min_server_version,
        progress=progress,
        wait=wait,
    )
    names = _model_names(model, settings, single=True)
    options = _options(
        settings,
        progress=progress,
        min_server_version=min_server_version,
        digest=digest,
        modelfile=modelfile,
        gguf=gguf,
        nvml=nvml,
    )
    with _session_scope(session) as http:
        ensurer = _ensurer(settings, http, clock, deadline, wait)
        ensurer.phases.model = ModelName.parse(names[0]).display
        ensurer.prepare(options)
        return ensurer.ensure(names[0], options)


def ensure_models(
    models: Sequence[str] | None = None,
    *,
    concurrency: int = 4,
    host: str | None = None,
    wait: Strategy | str | None = None,
    pull_policy: str | None = None,
    timeout: float | None = None,
    stall_timeout: float | None = None,
    progress: Any = None,
    insecure: bool | None = None,
    min_server_version: str | SpecifierSet | None = None,
    load: bool | None = None,
    keep_alive: str | float | None = None,
    require_gpu: bool | None = None,
    session: requests.Session | None = None,
    clock: Clock | None = None,
    deadline: Deadline | None = None,
    environ: Mapping[str, str] | None = None,
    nvml: Any = None,
) -> tuple[EnsureResult, ...]:
    """Ensure several models on one server, ``concurrency`` at a time, under one deadline.

    The arguments mean what they mean for :func:`ensure_model`; with no ``models``, every model
    named by ``OLLAMA_READY_MODELS`` is ensured. The server is waited for once. Results come back
    in the order the models were given. If any model fails, :class:`AggregateError` lists every
    failed model with its own cause and carries the successful results in ``results``; no model
    is ever skipped silently.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    settings = _settings(
        environ,
        host=host,
        timeout=timeout,
        stall_timeout=stall_timeout,
        pull_policy=pull_policy,
        insecure=insecure,
        load=load,
        keep_alive=keep_alive,
        require_gpu=require_gpu,
        min_server_version=min_server_version,
        progress=progress,
        wait=wait,
    )
    names = _model_names(models, settings, single=False)
    options = _options(
        settings, progress=progress, min_server_version=min_server_version, nvml=nvml
    )
    with _session_scope(session) as http:
        ensurer = _ensurer(settings, http, clock, deadline, wait)
        ensurer.prepare(options)
        outcomes = _run_all(names, lambda name: ensurer.ensure(name, options), concurrency)
    return _collect(outcomes, f"models on {ensurer.client.base_url}")


def ensure_fleet(
    models: Sequence[str] | str | None,
    hosts: Sequence[str],
    *,
    concurrency: int = 4,
    **options: Any,
) -> FleetResult:
    """Ensure the same models on every host of a fleet, concurrently, and report per host.

    ``options`` are those of :func:`ensure_models`; the hosts run in parallel, each under its own
    ``timeout``. Every host is checked before any request. Raises :class:`AggregateError` keyed
    by host if any host fails; ``results`` then holds ``(host, results)`` for the hosts that
    succeeded.
    """
    if isinstance(hosts, str) or not hosts:
        raise ConfigError("ensure_fleet needs a list of hosts")
    for host in hosts:
        parse_host(host)  # InvalidHost before any request
    wanted = [models] if isinstance(models, str) else models

    def one_host(host: str) -> tuple[EnsureResult, ...]:
        return ensure_models(wanted, host=host, concurrency=concurrency, **options)

    outcomes = _run_all(list(hosts), one_host, concurrency=len(hosts))
    failed = {host: out for host, out in outcomes.items() if isinstance(out, BaseException)}
    done = {host: out for host, out in outcomes.items() if not isinstance(out, BaseException)}
    if failed:
        raise AggregateError(
            f"{len(failed)} of {len(hosts)} hosts failed", failed, results=tuple(done.items())
        )
    return FleetResult(MappingProxyType(done))


async def ensure_model_async(model: str | None = None, **kwargs: Any) -> EnsureResult:
    """Run :func:`ensure_model` without blocking the event loop; cancellation stops it promptly."""
    return await _in_thread(functools.partial(ensure_model, model), kwargs)


async def ensure_models_async(
    models: Sequence[str] | None = None, **kwargs: Any
) -> tuple[EnsureResult, ...]:
    """Run :func:`ensure_models` without blocking the event loop; cancellation stops it promptly."""
    return await _in_thread(functools.partial(ensure_models, models), kwargs)


async def _in_thread(call: Callable[..., _T], kwargs: dict[str, Any]) -> _T:
    import asyncio  # only async callers pay for importing asyncio

    root = kwargs.pop("deadline", None) or Deadline(None, clock=kwargs.get("clock"))
    own_session = kwargs.get("session") is None
    session = kwargs.pop("session", None) or requests.Session()
    loop = asyncio.get_running_loop()
    done = threading.Event()

    def work() -> _T:
        try:
            return call(deadline=root, session=session, **kwargs)
        finally:
            done.set()

    future = loop.run_in_executor(None, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        root.cancel()
        if own_session:
            session.close()
        # Give the worker a moment to notice, so no request outlives the task by much.
        await loop.run_in_executor(None, done.wait, 1.0)
        raise
    finally:
        if own_session and done.is_set():
            session.close()


def _settings(environ: Mapping[str, str] | None, **explicit: Any) -> Settings:
    wait = explicit.pop("wait", None)
    spec = explicit.pop("min_server_version", None)
    progress = explicit.pop("progress", None)
    explicit = {k: v for k, v in explicit.items() if k in _SETTINGS_FIELDS}
    if isinstance(wait, str):
        explicit["wait"] = wait
    if isinstance(spec, str):
        explicit["min_server_version"] = spec
    if isinstance(progress, str):
        explicit["progress"] = progress
    return Settings.from_env(environ, **explicit)


_SETTINGS_FIELDS = frozenset(
    {
        "host",
        "timeout",
        "stall_timeout",
        "pull_policy",
        "insecure",
        "load",
        "keep_alive",
        "require_gpu",
    }
)


def _model_names(
    model: str | Sequence[str] | None, settings: Settings, *, single: bool
) -> list[str]:
    if model is None:
        names = list(settings.models)
        if not names:
            raise ConfigError(
                "no model given and OLLAMA_READY_MODELS is empty",
                hint="pass a model name, or set OLLAMA_READY_MODELS=llama3.2:1b",
            )
    elif isinstance(model, str):
        names = [model]
    else:
        names = list(model)
        if not names:
            raise ConfigError("no models given")
    if single and len(names) > 1:
        raise ConfigError(
            f"OLLAMA_READY_MODELS names {len(names)} models; use ensure_models() for several",
            hint="call ensure_models() to ensure them all",
        )
    for name in names:
        ModelName.parse(name)  # InvalidModelName before any request
    return names


def _options(
    settings: Settings,
    *,
    progress: Any,
    min_server_version: str | SpecifierSet | None,
    nvml: Any,
    digest: str | None = None,
    modelfile: str | os.PathLike[str] | None = None,
    gguf: str | os.PathLike[str] | None = None,
) -> _Options:
    if settings.pull_policy not in _POLICIES:
        raise ConfigError(
            f"pull policy must be one of {', '.join(_POLICIES)}, got {settings.pull_policy!r}"
        )
    if modelfile is not None and gguf is not None:
        raise ConfigError("give either modelfile or gguf, not both")
    return _Options(
        policy=settings.pull_policy,
        insecure=settings.insecure,
        stall_timeout=settings.stall_timeout,
        load=settings.load,
        keep_alive=settings.keep_alive,
        require_gpu=settings.require_gpu,
        min_server_version=(
            min_server_version
            if _is_specifier_set(min_server_version)
            else _specifier(settings.min_server_version)
        ),
        digest=digest,
        modelfile=modelfile,
        gguf=gguf,
        progress=progress
        if progress is not None and not isinstance(progress, str)
        else settings.progress,
        nvml=nvml,
    )


def _is_specifier_set(value: object) -> TypeGuard[SpecifierSet]:
    # packaging.specifiers costs ~15 ms of start-up: a value can only be one once it is loaded.
    module = sys.modules.get("packaging.specifiers")
    return module is not None and isinstance(value, module.SpecifierSet)


def _specifier(value: str | SpecifierSet | None) -> SpecifierSet | None:
    if value is None or _is_specifier_set(value):
        return value
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(value)
    except InvalidSpecifier:
        raise ConfigError(
            f"min_server_version {value!r} is not a version specifier",
            hint="use a packaging specifier such as '>=0.11'",
        ) from None


def _ensurer(
    settings: Settings,
    session: requests.Session,
    clock: Clock | None,
    deadline: Deadline | None,
    wait: Strategy | str | None,
) -> _Ensurer:
    root = deadline if deadline is not None else Deadline(None, clock=clock)
    client = OllamaClient.from_settings(settings, session=session)
    return _Ensurer(settings, client, root.sub(settings.timeout), _strategy(wait, settings))


def _strategy(wait: Strategy | str | None, settings: Settings) -> Strategy:
    if wait is not None and not isinstance(wait, str):
        return wait
    spec = wait if isinstance(wait, str) else settings.wait
    if spec:
        from ollama_ready.readiness import strategy_from_spec  # deferred: loads every strategy

        return strategy_from_spec(spec)
    # Probing /api/version answers readiness and the version check with one request.
    return Poll(path="/api/version", method="GET")


@contextmanager
def _session_scope(session: requests.Session | None) -> Iterator[requests.Session]:
    if session is not None:
        yield session
        return
    own = requests.Session()
    try:
        yield own
    finally:
        own.close()


def _run_all(
    keys: Sequence[str], work: Callable[[str], _T], concurrency: int
) -> dict[str, _T | BaseException]:
    outcomes: dict[str, _T | BaseException] = {}
    if len(keys) == 1:  # the common case needs no pool (and no thread start-up)
        try:
            outcomes[keys[0]] = work(keys[0])
        except Exception as exc:
            outcomes[keys[0]] = exc
        return outcomes
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(keys)))) as pool:
        futures = {key: pool.submit(work, key) for key in keys}
        for key, future in futures.items():
            try:
                outcomes[key] = future.result()
            except Exception as exc:
                outcomes[key] = exc
    return outcomes


def _collect(
    outcomes: Mapping[str, EnsureResult | BaseException], what: str
) -> tuple[EnsureResult, ...]:
    failed = {k: v for k, v in outcomes.items() if isinstance(v, BaseException)}
    done = tuple(v for v in outcomes.values() if isinstance(v, EnsureResult))
    if failed:
        raise AggregateError(
            f"{len(failed)} of {len(outcomes)} {what} failed", failed, results=done
        )
    return done


def _report_version(report: ReadyReport | None) -> str | None:
    version = getattr(report, "version", None)
    return version if isinstance(version, str) and version else None


def _same_digest(expected: str, actual: str) -> bool:
    return expected.removeprefix("sha256:").lower() == actual.removeprefix("sha256:").lower()


def _gpu_hint(nvml: Any, placement: Placement) -> str:
    from ollama_ready.gpu import detect_gpus

    report = detect_gpus(nvml=nvml)
    placed = f"the server placed {human_bytes(placement.size_vram)} in VRAM"
    if report.devices:
        free = sum(gpu.free_memory for gpu in report.devices)
        count = len(report.devices)
        return (
            f"{count} GPU{'s' if count != 1 else ''} visible here with {human_bytes(free)} free; "
            f"{placed}: is the Ollama container started with GPU access "
            "(--gpus=all / deploy.resources.reservations.devices)?"
        )
    return (
        f"no NVIDIA GPU visible on this machine ({report.reason}); {placed}: "
        "start Ollama on a GPU host with GPU access, or drop require_gpu"
    )
