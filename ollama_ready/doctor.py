"""A diagnosis of one Ollama setup: the server, its models, this machine's GPUs, runner and fit.

:func:`doctor` asks the server for its version, its models and the loaded ones (with their
``ollama ps`` placement), detects this machine's GPUs (NVML, ROCm sysfs, Metal) and CPU,
explains which runner Ollama would pick (seed 001's era B rules), estimates whether a requested
model fits in free VRAM, and collects everything worth a human's attention as :class:`Finding`\\ s,
each with a hint where the fix is known. What it diagnoses never raises: an unreachable server,
a missing NVML library, a model that is not there or an invalid environment variable are
findings. Only bad explicit arguments (a host or model name that cannot be parsed, a negative
timeout) raise :class:`~ollama_ready.errors.ConfigError`.

:func:`runner_report` is the runner part alone (``ollama-ready runners``).

Reports are frozen values that render as aligned text (:meth:`DoctorReport.describe`), as JSON
(:meth:`DoctorReport.to_dict`) and as HTML in notebooks. Secrets (the API key, extra header
values) never appear in them, even when a server or proxy echoes them back.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import requests
from packaging.version import InvalidVersion, Version

from ollama_ready._format import human_bytes
from ollama_ready.client import ModelDetails, ModelInfo, OllamaClient, RunningModel, Timeout
from ollama_ready.clock import Clock, Deadline
from ollama_ready.config import Settings, is_loopback_url, parse_host
from ollama_ready.cpu import (
    CpuCapability,
    cpu_capability,
    cpu_flags,
    host_platform,
    notable_cpu_flags,
)
from ollama_ready.errors import (
    ConfigError,
    DeadlineExceeded,
    HostNotAllowed,
    ModelNotPresent,
    OllamaConnectionError,
    OllamaReadyError,
    PayloadError,
    ProtocolError,
    ResponseError,
    ServerBusy,
)
from ollama_ready.fit import DEFAULT_NUM_CTX, FitEstimate, Placement, estimate_fit
from ollama_ready.gpu import DEFAULT_CUDA_ERA, CudaEra, GpuInfo, GpuReport, NvmlApi, detect_all
from ollama_ready.names import ModelName
from ollama_ready.pull import classify_error
from ollama_ready.runners import (
    RunnerChoice,
    available_runners,
    locate_runners,
    runner_for_cpu,
    runners_for_gpu,
)

__all__ = [
    "CpuStatus",
    "DoctorReport",
    "Finding",
    "LoadedModel",
    "ModelCheck",
    "RunnerReport",
    "ServerStatus",
    "doctor",
    "runner_report",
]

Severity = Literal["error", "warning", "info"]
ServerState = Literal["ok", "unreachable", "error", "not checked"]

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds the whole diagnosis may spend talking to the server."""

_SEVERITIES: Final[tuple[Severity, ...]] = ("error", "warning", "info")
_ERA_B: Final = (Version("0.3.11"), Version("0.5.2"))  # runners dirs: v0.3.11 up to v0.5.1
_APPLE_SILICON: Final = ("darwin", "arm64")
_MIN_SECRET_CHARS: Final = 4  # shorter values would mask ordinary words, not secrets
_MASK: Final = "***"
_KEY_WIDTH: Final = 12
_SOURCES: Final = {
    "argument": "given",
    "OLLAMA_HOST": "from OLLAMA_HOST",
    "default": "default",
}
# Variables that reaching the server needs; tried alone when the full environment is invalid.
_CONNECTION_VARIABLES: Final = (
    "OLLAMA_HOST",
    "OLLAMA_API_KEY",
    "OLLAMA_READY_HEADERS",
    "OLLAMA_READY_VERIFY",
    "OLLAMA_READY_CA_BUNDLE",
    "OLLAMA_READY_CONNECT_TIMEOUT",
    "OLLAMA_READY_READ_TIMEOUT",
)
_SECRET_VARIABLES: Final = ("OLLAMA_API_KEY", "OLLAMA_READY_HEADERS")

_T = TypeVar("_T")
_Row = tuple[str, str]
_Section = tuple[str, list[_Row]]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing the doctor noticed: how serious, about what, and what to do about it.

    ``severity`` is ``error`` (the setup does not work: :attr:`DoctorReport.ok` is false),
    ``warning`` (it works, but not as well as it could) or ``info``. ``topic`` is one of
    ``config``, ``server``, ``models``, ``model``, ``gpu``, ``runners`` and ``fit``.
    """

    severity: Severity
    topic: str
    message: str
    hint: str | None = None

    def describe(self) -> str:
        """Return the finding as one line, plus a hint line when there is one."""
        text = f"{self.severity}: {self.topic}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping."""
        return {
            "severity": self.severity,
            "topic": self.topic,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedModel:
    """A model loaded in the server's memory (``/api/ps``) and where it went."""

    name: str
    size: int
    size_vram: int
    placement: Placement
    expires_at: str | None = None
    context_length: int | None = None

    @classmethod
    def of(cls, model: RunningModel) -> LoadedModel:
        """Build the entry for one ``OllamaClient.ps()`` item."""
        return cls(
            name=model.name,
            size=model.size,
            size_vram=model.size_vram,
            placement=Placement.of(model),
            expires_at=model.expires_at,
            context_length=model.context_length,
        )

    def describe(self) -> str:
        """Return one line: name, ``ollama ps`` label, sizes."""
        return (
            f"{self.name}  {self.placement.label}  ({human_bytes(self.size)}, "
            f"{human_bytes(self.size_vram)} in VRAM)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping."""
        return {
            "name": self.name,
            "size": self.size,
            "size_vram": self.size_vram,
            "placement": self.placement.label,
            "gpu_fraction": self.placement.gpu_fraction,
            "expires_at": self.expires_at,
            "context_length": self.context_length,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatus:
    """What the server answered, or how reaching it failed.

    ``state`` is ``ok``; ``unreachable`` (no connection: refused, DNS, TLS, timeout);
    ``error`` (something answered, but not as a working Ollama: an HTTP error, a proxy's HTML
    page, the host-header guard); or ``not checked`` (the settings named no usable host).
    ``error_kind`` is the connection error's kind (``refused``, ``timeout``, ...), ``http 500``
    style for an HTTP status, ``protocol`` or ``deadline``.
    """

    host: str | None
    host_source: str | None
    state: ServerState
    version: str | None = None
    error: str | None = None
    error_kind: str | None = None
    hint: str | None = None
    models: tuple[ModelInfo, ...] = ()
    loaded: tuple[LoadedModel, ...] = ()

    @property
    def reachable(self) -> bool:
        """Return whether anything answered at the host."""
        return self.state in ("ok", "error")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping."""
        return {
            "host": self.host,
            "host_source": self.host_source,
            "state": self.state,
            "reachable": self.reachable,
            "version": self.version,
            "error": self.error,
            "error_kind": self.error_kind,
            "hint": self.hint,
            "models": [_model_dict(model) for model in self.models],
            "loaded": [model.to_dict() for model in self.loaded],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuStatus:
    """The CPU as Ollama judges it: its capability and the flags that matter."""

    capability: CpuCapability
    flags: tuple[str, ...]
    platform: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping."""
        return {"capability": self.capability, "flags": list(self.flags), "platform": self.platform}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerReport:
    """Which runner Ollama (v0.3.11 to v0.5.1) would start on this machine, and why.

    Attributes:
        runners_dir: The runners dir used, or ``None`` when none was found.
        missing: Why there is no runners dir (or no runner in it); ``None`` when there is.
        available: ``{runner name: its dir}``.
        cpu: The CPU capability used for the CPU fallback.
        platform: ``goos/goarch``.
        target: The device the runner is chosen for (a GPU's one-line description, or
            ``"CPU"``).
        requested: The runner name Ollama asks for first (``cuda_v12``, ``cpu_avx2``, ...),
            known even without a runners dir.
        runners: The runners in the order Ollama would try them; empty without runners.
        reasons: How the choice was made, one step a line.
        override: The ``OLLAMA_LLM_LIBRARY`` value that replaced the list, if any.
        cpu_only: The override names a CPU runner, so no layer is offloaded.
    """

    runners_dir: str | None
    missing: str | None
    available: Mapping[str, str]
    cpu: CpuCapability
    platform: str
    target: str
    requested: str
    runners: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    override: str | None = None
    cpu_only: bool = False

    @property
    def chosen(self) -> str | None:
        """Return the runner Ollama would try first, or ``None`` without runners."""
        return self.runners[0] if self.runners else None

    def describe(self) -> str:
        """Return aligned human lines."""
        return _render([("Runner", _runner_rows(self))])

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping."""
        return {
            "runners_dir": self.runners_dir,
            "missing": self.missing,
            "available": dict(self.available),
            "cpu": self.cpu,
            "platform": self.platform,
            "target": self.target,
            "requested": self.requested,
            "runners": list(self.runners),
            "chosen": self.chosen,
            "reasons": list(self.reasons),
            "override": self.override,
            "cpu_only": self.cpu_only,
        }

    def __repr__(self) -> str:
        return (
            f"RunnerReport(chosen={self.chosen!r}, requested={self.requested!r}, "
            f"runners={list(self.runners)!r}, runners_dir={self.runners_dir!r})"
        )

    def _repr_html_(self) -> str:
        return _html([("Runner", _runner_rows(self))])


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCheck:
    """The requested model: is it there, would it fit, where did it go.

    ``present`` is ``None`` when the server could not be asked. ``fit`` is the estimate for
    this machine's GPUs (see :func:`~ollama_ready.fit.estimate_fit`), ``None`` with
    ``fit_note`` saying why. ``placement`` is the measured one when the model is loaded.
    """

    name: str
    present: bool | None
    size: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    num_ctx: int | None = None
    fit: FitEstimate | None = None
    fit_note: str | None = None
    placement: Placement | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping."""
        return {
            "name": self.name,
            "present": self.present,
            "size": self.size,
            "details": _jsonable(self.details),
            "num_ctx": self.num_ctx,
            "fit": _jsonable(dataclasses.asdict(self.fit)) if self.fit else None,
            "fit_summary": self.fit.summary() if self.fit else None,
            "fit_note": self.fit_note,
            "placement": self.placement.label if self.placement else None,
            "gpu_fraction": self.placement.gpu_fraction if self.placement else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorReport:
    """Everything :func:`doctor` found; :attr:`ok` says whether the setup works.

    ``remote`` is true when the server is not on this machine: then the GPUs, the runner and
    the fit describe this machine, not the server's.
    """

    server: ServerStatus
    gpus: GpuReport
    cpu: CpuStatus
    runners: RunnerReport
    model: ModelCheck | None = None
    findings: tuple[Finding, ...] = ()
    remote: bool = False

    @property
    def ok(self) -> bool:
        """Return whether nothing is broken: no finding is an ``error``."""
        return not self.problems

    @property
    def problems(self) -> tuple[Finding, ...]:
        """Return the ``error`` findings."""
        return tuple(f for f in self.findings if f.severity == "error")

    def headline(self) -> str:
        """Return one line: ok, or how many errors and warnings."""
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in _SEVERITIES}
        found = [
            f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}"
            for s in ("error", "warning")
            if counts[s]
        ]
        verdict = "ok" if self.ok else "not ok"
        return f"ollama-ready doctor: {verdict}" + (f" ({', '.join(found)})" if found else "")

    def describe(self) -> str:
        """Return the whole report as aligned plain text (no colours)."""
        return f"{self.headline()}\n\n{_render(self._sections())}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of the whole report."""
        return {
            "ok": self.ok,
            "remote": self.remote,
            "server": self.server.to_dict(),
            "gpus": self.gpus.to_dict(),
            "cpu": self.cpu.to_dict(),
            "runners": self.runners.to_dict(),
            "model": self.model.to_dict() if self.model else None,
            "findings": [finding.to_dict() for finding in self.findings],
        }

    def __repr__(self) -> str:
        runner = self.runners.chosen or self.runners.requested
        model = ""
        if self.model is not None:
            model = f", model={self.model.name!r}, present={self.model.present}"
        return (
            f"DoctorReport(ok={self.ok}, host={self.server.host!r}, "
            f"server={self.server.state!r}, version={self.server.version!r}, "
            f"gpus={len(self.gpus.devices)}, runner={runner!r}"
            f"{model}, errors={len(self.problems)}, findings={len(self.findings)})"
        )

    def _repr_html_(self) -> str:
        title = f"<p><b>{html.escape(self.headline())}</b></p>"
        return title + _html(self._sections())

    def _sections(self) -> list[_Section]:
        sections: list[_Section] = [
            ("Server", _server_rows(self.server)),
            ("GPUs", _gpu_rows(self.gpus)),
            ("CPU", _cpu_rows(self.cpu)),
            ("Runner", _runner_rows(self.runners)),
        ]
        if self.model is not None:
            sections.append((f"Model {self.model.name}", _model_rows(self.model)))
        findings = [row for finding in self.findings for row in _finding_rows(finding)] or [
            ("ok", "nothing to report")
        ]
        sections.append(("Findings", findings))
        return sections


# --------------------------------------------------------------------------- entry points


def doctor(
    host: str | None = None,
    *,
    model: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    runners_dir: str | os.PathLike[str] | None = None,
    num_ctx: int | None = None,
    parallel: int = 1,
    gpu_overhead: int = 0,
    kv_cache_type: str = "f16",
    era: CudaEra | str | None = None,
    environ: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
    nvml: NvmlApi | None = None,
    cpuinfo: str | None = None,
    platform: tuple[str, str] | None = None,
    sysfs_root: str | os.PathLike[str] | None = None,
    kfd_device: str | os.PathLike[str] | None = None,
    exe: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
) -> DoctorReport:
    """Diagnose the Ollama server at ``host`` and this machine's hardware; never raise for it.

    Args:
        host: The server, with ``OLLAMA_HOST`` rules; ``None`` reads ``OLLAMA_HOST``.
        model: Also check this model: present, its VRAM fit, its placement if loaded.
        timeout: Seconds for all requests to the server together; ``None``: per request only.
        runners_dir: The runners dir; ``None`` searches like Ollama (:func:`locate_runners`).
        num_ctx: Context per slot for the fit; ``None`` uses the model's ``num_ctx``
            parameter, else Ollama's default.
        parallel: The server's ``OLLAMA_NUM_PARALLEL``, for the fit (this process cannot
            see the server's settings, so they are arguments).
        gpu_overhead: The server's ``OLLAMA_GPU_OVERHEAD`` in bytes, for the fit.
        kv_cache_type: The server's ``OLLAMA_KV_CACHE_TYPE``, for the fit.
        era: The CUDA variant rule; ``None`` picks the rule of the server's version when it
            has one, else seed 001's (v0.4).
        environ: The environment (settings, ``CUDA_VISIBLE_DEVICES``, ``OLLAMA_LLM_LIBRARY``,
            ``PATH``); ``None`` means ``os.environ``.
        session: The HTTP session (a seam for tests, as are the arguments below).
        nvml: The NVML binding.
        cpuinfo: The ``/proc/cpuinfo`` text.
        platform: ``(goos, goarch)``.
        sysfs_root: The sysfs root (ROCm).
        kfd_device: The ``/dev/kfd`` device (ROCm).
        exe: The ``ollama`` executable (runners search).
        cwd: The working dir (runners search).
        clock: The clock of the ``timeout``.

    Raises:
        ConfigError: ``host``, ``model`` or a number argument is invalid (checked before
            anything is done). Everything else becomes a :class:`Finding`.
    """
    name = _check_arguments(host, model, timeout)
    findings: list[Finding] = []
    settings = _load_settings(host, environ, findings)
    server, facts = _check_server(settings, name, Deadline(timeout, clock=clock), session, findings)
    goos, goarch = platform or host_platform()
    cuda_era = _choose_era(era, server.version)
    gpus = detect_all(
        nvml,
        environ,
        era=cuda_era.era,
        system=goos,
        machine=goarch,
        sysfs_root=sysfs_root,
        kfd_device=kfd_device,
        cpuinfo=cpuinfo,
    )
    cpu = CpuStatus(
        capability=cpu_capability(cpuinfo),
        flags=notable_cpu_flags(cpuinfo),
        platform=f"{goos}/{goarch}",
    )
    remote = settings is not None and not is_loopback_url(settings.host)
    check = None
    if name is not None and model is not None:
        fit_options = _FitOptions(num_ctx, parallel, gpu_overhead, kv_cache_type)
        check = _check_model(
            name,
            requested=model,
            server=server,
            facts=facts,
            gpus=gpus,
            options=fit_options,
            findings=findings,
        )
    runners = runner_report(
        runners_dir,
        gpus=gpus,
        fit=check.fit if check else None,
        environ=environ,
        cpuinfo=cpuinfo,
        platform=(goos, goarch),
        exe=exe,
        cwd=cwd,
    )
    findings += _hardware_findings(gpus, runners, server=server, remote=remote, era=cuda_era)
    report = DoctorReport(
        server=server,
        gpus=gpus,
        cpu=cpu,
        runners=runners,
        model=check,
        findings=_ordered(findings),
        remote=remote,
    )
    return _Redactor(_secrets(settings, environ)).apply(report)


def runner_report(
    runners_dir: str | os.PathLike[str] | None = None,
    *,
    gpus: GpuReport | None = None,
    fit: FitEstimate | None = None,
    era: CudaEra | str = DEFAULT_CUDA_ERA,
    environ: Mapping[str, str] | None = None,
    nvml: NvmlApi | None = None,
    cpuinfo: str | None = None,
    platform: tuple[str, str] | None = None,
    sysfs_root: str | os.PathLike[str] | None = None,
    kfd_device: str | os.PathLike[str] | None = None,
    exe: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> RunnerReport:
    """Explain which runner Ollama v0.3.11 to v0.5.1 would start here, and why.

    The runner serves the first usable GPU (the CPU when there is none, when ``fit`` says no
    layer fits on a non-Metal GPU, or when an x86-64 CPU lacks AVX, as in Ollama v0.4). Without
    a runners dir the report still names the runner Ollama would request. ``nvml``,
    ``cpuinfo``, ``platform``, ``sysfs_root``, ``kfd_device``, ``exe`` and ``cwd`` are seams
    for tests, as in :func:`doctor`.

    Args:
        runners_dir: The runners dir; ``None`` searches like Ollama (:func:`locate_runners`).
        gpus: Detected GPUs; ``None`` detects them (:func:`~ollama_ready.gpu.detect_all`).
        fit: The fit estimate of the model to run, if known.
        era: The CUDA variant rule for detection (when ``gpus`` is ``None``).
        environ: Supplies ``OLLAMA_LLM_LIBRARY``, ``PATH`` and the GPU variables; ``None``
            means ``os.environ``.
    """
    goos, goarch = platform or host_platform()
    cpu = cpu_capability(cpuinfo)
    if gpus is None:
        gpus = detect_all(
            nvml,
            environ,
            era=era,
            system=goos,
            machine=goarch,
            sysfs_root=sysfs_root,
            kfd_device=kfd_device,
            cpuinfo=cpuinfo,
        )
    flags_known = bool(cpu_flags(cpuinfo))
    gpu, why_cpu = _runner_target(gpus, fit, cpu if flags_known else None, (goos, goarch))
    directory, missing = _runners_dir(runners_dir, exe, cwd, (goos, goarch), environ)
    available = available_runners(directory) if directory is not None else {}
    if directory is not None and not available:
        missing = f"{directory} holds no runners (no */ollama_* files)"
    choice = _select(gpu, available, cpu, (goos, goarch), environ if available else {})
    if available:
        reasons = [*why_cpu, *choice.reasons]
    else:
        # Only the first step applies: the rest explains an ordering there is nothing to order.
        reasons = [
            *why_cpu,
            choice.reasons[0],
            f"no runners, so nothing to order: Ollama would request {choice.requested}",
        ]
    return RunnerReport(
        runners_dir=str(directory) if directory is not None and available else None,
        missing=missing,
        available={runner: str(path) for runner, path in available.items()},
        cpu=cpu,
        platform=f"{goos}/{goarch}",
        target=f"{gpu.library} GPU {gpu.index}: {gpu.name}" if gpu is not None else "CPU",
        requested=choice.requested,
        runners=choice.runners if available else (),
        reasons=tuple(reasons),
        override=choice.override,
        cpu_only=choice.cpu_only,
    )


# --------------------------------------------------------------------------- arguments, settings


def _check_arguments(
    host: str | None, model: str | None, timeout: float | None
) -> ModelName | None:
    if host is not None:
        parse_host(host)
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout <= 0
    ):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return ModelName.parse(model) if model is not None else None


def _load_settings(
    host: str | None, environ: Mapping[str, str] | None, findings: list[Finding]
) -> Settings | None:
    """Read the settings; an invalid environment is a finding, then fewer variables are tried."""
    env = os.environ if environ is None else environ
    attempts: tuple[Mapping[str, str], ...] = (
        env,
        {k: env[k] for k in _CONNECTION_VARIABLES if k in env},
        {k: env[k] for k in ("OLLAMA_HOST",) if k in env},
    )
    for attempt in attempts:
        try:
            return Settings.from_env(attempt, host=host)
        except ConfigError as exc:
            message = f"invalid setting: {exc.message}"
            if not any(f.message == message for f in findings):
                findings.append(
                    Finding(
                        severity="error",
                        topic="config",
                        message=message,
                        hint=exc.hint or "fix or unset the variable",
                    )
                )
    return None


@dataclass(frozen=True, slots=True)
class _FitOptions:
    num_ctx: int | None
    parallel: int
    gpu_overhead: int
    kv_cache_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _ModelFacts:
    """What the server said about the requested model."""

    present: bool | None
    details: ModelDetails | None = None
    listed: ModelInfo | None = None
    error: str | None = None


# --------------------------------------------------------------------------- server


def _check_server(
    settings: Settings | None,
    name: ModelName | None,
    deadline: Deadline,
    session: requests.Session | None,
    findings: list[Finding],
) -> tuple[ServerStatus, _ModelFacts]:
    if settings is None:
        findings.append(
            Finding(severity="error", topic="server", message="not checked: no usable host setting")
        )
        return ServerStatus(host=None, host_source=None, state="not checked"), _ModelFacts(
            present=None, error="the server was not checked"
        )
    with OllamaClient.from_settings(settings, session=session) as client:
        call = _Caller(settings, deadline, findings)
        try:
            version = call(lambda t: client.version(timeout=t), "asking the version")
        except OllamaReadyError as exc:
            status = _failed(settings, exc)
            findings.append(
                Finding(
                    severity="error", topic="server", message=status.error or "", hint=status.hint
                )
            )
            return status, _ModelFacts(present=None, error="the server could not be reached")
        models = call.attempt(
            lambda t: client.list_models(timeout=t), "listing the models", severity="error"
        )
        running = call.attempt(
            lambda t: client.ps(timeout=t), "listing the loaded models", severity="warning"
        )
        facts = (
            _model_facts(client, call, name, models)
            if name is not None
            else _ModelFacts(present=None)
        )
    status = ServerStatus(
        host=settings.host,
        host_source=settings.host_source,
        state="ok",
        version=version,
        models=models or (),
        loaded=tuple(LoadedModel.of(item) for item in running or ()),
    )
    return status, facts


class _Caller:
    """Call the client with per-request timeouts bounded by the diagnosis deadline."""

    def __init__(self, settings: Settings, deadline: Deadline, findings: list[Finding]) -> None:
        self._settings = settings
        self._deadline = deadline
        self._findings = findings

    def __call__(self, request: Callable[[Timeout], _T], what: str) -> _T:
        if self._deadline.expired:
            raise DeadlineExceeded(
                f"skipped {what}: the doctor's timeout of {self._deadline.timeout:g}s ran out",
                hint="give the doctor more time (--timeout)",
            )
        connect = self._deadline.bound(self._settings.connect_timeout)
        read = self._deadline.bound(self._settings.read_timeout)
        return request((max(connect or 0.0, 0.001), max(read or 0.0, 0.001)))

    def attempt(
        self, request: Callable[[Timeout], _T], what: str, *, severity: Severity
    ) -> _T | None:
        """Return the answer, or ``None`` after recording the failure as a finding."""
        try:
            return self(request, what)
        except OllamaReadyError as exc:
            message = f"{what} failed: {exc}"
            self._findings.append(
                Finding(severity=severity, topic="models", message=message, hint=_hint_for(exc))
            )
            return None


def _failed(settings: Settings, exc: OllamaReadyError) -> ServerStatus:
    unreachable = isinstance(exc, (OllamaConnectionError, DeadlineExceeded))
    return ServerStatus(
        host=settings.host,
        host_source=settings.host_source,
        state="unreachable" if unreachable else "error",
        error=str(exc),
        error_kind=_error_kind(exc),
        hint=_hint_for(exc),
    )


def _error_kind(exc: OllamaReadyError) -> str:
    if isinstance(exc, OllamaConnectionError):
        return exc.kind
    if isinstance(exc, HostNotAllowed):
        return "host not allowed"
    if isinstance(exc, ServerBusy):
        return "busy"
    if isinstance(exc, ResponseError):
        return f"http {exc.status}"
    if isinstance(exc, ProtocolError):
        return "protocol"
    if isinstance(exc, DeadlineExceeded):
        return "deadline"
    return type(exc).__name__


def _hint_for(exc: OllamaReadyError) -> str | None:
    """Return the error's own hint, else the hint of the error table's matching rule."""
    if exc.hint:
        return exc.hint
    if isinstance(exc, ResponseError):
        rule = classify_error(exc.server_message or exc.message, status=exc.status)
        if rule.pattern is not None:
            return rule.hint
    return None


def _model_facts(
    client: OllamaClient, call: _Caller, name: ModelName, models: tuple[ModelInfo, ...] | None
) -> _ModelFacts:
    listed = next((m for m in models or () if name.matches(m.name)), None)
    try:
        details = call(lambda t: client.show(name.display, timeout=t), f"showing {name.display}")
    except ModelNotPresent:
        return _ModelFacts(present=False, listed=listed)
    except OllamaReadyError as exc:
        text = f"asking about {name.display} failed: {exc}"
        return _ModelFacts(present=None, listed=listed, error=text)
    return _ModelFacts(present=True, details=details, listed=listed)


# --------------------------------------------------------------------------- model and fit


def _check_model(
    name: ModelName,
    *,
    requested: str,
    server: ServerStatus,
    facts: _ModelFacts,
    gpus: GpuReport,
    options: _FitOptions,
    findings: list[Finding],
) -> ModelCheck:
    loaded = next((m for m in server.loaded if name.matches(m.name)), None)
    placement = loaded.placement if loaded else None
    size = facts.listed.size if facts.listed else None
    if facts.present is None:
        if server.state == "ok":  # otherwise the server's own finding already says why
            findings.append(
                Finding(severity="error", topic="model", message=facts.error or requested)
            )
        return ModelCheck(
            name=requested,
            present=None,
            size=size,
            fit_note="unknown: the server could not be asked",
        )
    if not facts.present or facts.details is None:
        findings.append(
            Finding(
                severity="error",
                topic="model",
                message=f"{name.display} is not on the server at {server.host}",
                hint=f"pull it: `ollama pull {name.display}` or `ollama-ready pull {name.display}`",
            )
        )
        return ModelCheck(
            name=requested, present=False, fit_note="no estimate: the model is not present"
        )
    details = facts.details
    num_ctx = options.num_ctx or _model_num_ctx(details.parameters) or DEFAULT_NUM_CTX
    fit, note = _estimate(details, size, num_ctx, gpus, options)
    if placement is not None:
        findings += _placement_findings(name, placement)
    elif fit is not None and not fit.fits_fully:
        findings.append(_fit_finding(name, fit))
    if placement is not None and fit is not None:
        note = (
            "the model is loaded, so the free VRAM above already excludes it; "
            "its placement is measured"
        )
    return ModelCheck(
        name=requested,
        present=True,
        size=size,
        details=dict(details.details),
        num_ctx=num_ctx,
        fit=fit,
        fit_note=note,
        placement=placement,
    )


def _estimate(
    details: ModelDetails, size: int | None, num_ctx: int, gpus: GpuReport, options: _FitOptions
) -> tuple[FitEstimate | None, str | None]:
    if size is None:
        return None, "no estimate: the server did not list the model's size"
    devices = (
        [gpu for gpu in gpus.devices if gpu.library == gpus.devices[0].library]
        if gpus.devices
        else []
    )
    try:
        fit = estimate_fit(
            details.model_info,
            file_size=size,
            gpus=[gpu.free_memory for gpu in devices],
            num_ctx=num_ctx,
            parallel=options.parallel,
            gpu_overhead=options.gpu_overhead,
            kv_cache_type=options.kv_cache_type,
            minimum_memory=devices[0].minimum_memory if devices else 0,
        )
    except ConfigError as exc:
        return None, f"no estimate: {exc.message}"
    return fit, None


def _model_num_ctx(parameters: str) -> int | None:
    """Return the ``num_ctx`` of the model's parameters text (``num_ctx  8192`` lines)."""
    for line in parameters.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "num_ctx" and value.strip().isdigit() and int(value) > 0:
            return int(value)
    return None


def _placement_findings(name: ModelName, placement: Placement) -> list[Finding]:
    if placement.on_gpu:
        return []
    where = "entirely on the CPU" if placement.on_cpu else f"split {placement.label}"
    return [
        Finding(
            severity="warning",
            topic="fit",
            message=f"{name.display} is loaded {where} (size {human_bytes(placement.size)}, "
            f"{human_bytes(placement.size_vram)} in VRAM)",
            hint=_FIT_HINT,
        )
    ]


_FIT_HINT: Final = (
    "the model does not fit in free VRAM: free VRAM (unload other models), lower num_ctx or "
    "OLLAMA_NUM_PARALLEL, use a smaller quantisation, or add a GPU"
)


def _fit_finding(name: ModelName, fit: FitEstimate) -> Finding:
    return Finding(
        severity="warning",
        topic="fit",
        message=f"{name.display}: {fit.summary()}",
        hint=_FIT_HINT if fit.free_bytes else None,
    )


# --------------------------------------------------------------------------- runners


def _runner_target(
    gpus: GpuReport,
    fit: FitEstimate | None,
    cpu: CpuCapability | None,
    platform: tuple[str, str],
) -> tuple[GpuInfo | None, list[str]]:
    """Return the GPU the runner is for (``None``: the CPU), with the reasons for the CPU.

    ``cpu`` is ``None`` when the CPU's flags are unknown (no ``/proc/cpuinfo``).
    """
    if not gpus.devices:
        return None, ["no usable GPU: the CPU runner is chosen"]
    gpu = gpus.devices[0]
    if platform[1] == "amd64" and cpu == "none":
        return None, [
            "the CPU has no AVX: Ollama v0.4 skips GPU discovery, so a CPU runner is chosen"
        ]
    if fit is not None and fit.layers == 0 and gpu.library != "metal":
        return None, [
            "the model is estimated to fit no layer on the GPU: Ollama starts the CPU runner"
        ]
    return gpu, []


def _runners_dir(
    runners_dir: str | os.PathLike[str] | None,
    exe: str | os.PathLike[str] | None,
    cwd: str | os.PathLike[str] | None,
    platform: tuple[str, str],
    environ: Mapping[str, str] | None,
) -> tuple[Path | None, str | None]:
    if runners_dir is not None:
        path = Path(runners_dir)
        if not path.is_dir():
            return None, f"{path} is not a directory"
        return path, None
    try:
        return locate_runners(exe, cwd, platform=platform, environ=environ), None
    except PayloadError as exc:
        return None, f"no runners dir found: {exc.message}"


@dataclass(frozen=True, slots=True)
class _Cpu:
    """The CPU as a runner-selection target (Ollama's CPU ``GpuInfo``)."""

    library: str
    variant: str


def _select(
    gpu: GpuInfo | None,
    available: Mapping[str, Path],
    cpu: CpuCapability,
    platform: tuple[str, str],
    environ: Mapping[str, str] | None,
) -> RunnerChoice:
    if gpu is not None:
        return runners_for_gpu(gpu, available, cpu=cpu, platform=platform, environ=environ)
    if available:
        return runner_for_cpu(available, cpu=cpu, platform=platform, environ=environ)
    # Without runners only the name matters: what Ollama would look for first.
    target = _Cpu("metal", "") if platform == _APPLE_SILICON else _Cpu("cpu", cpu)
    choice = runners_for_gpu(target, (), cpu=cpu, platform=platform, environ={})
    return dataclasses.replace(
        choice, reasons=(f"CPU capability {cpu}: the CPU runner is {choice.requested}",)
    )


# --------------------------------------------------------------------------- findings


@dataclass(frozen=True, slots=True)
class _EraChoice:
    era: CudaEra
    source: str | None  # how it was chosen; None when the caller named it


def _choose_era(era: CudaEra | str | None, version: str | None) -> _EraChoice:
    if era is not None:
        return _EraChoice(CudaEra.parse(era), None)
    if version is None:
        return _EraChoice(DEFAULT_CUDA_ERA, "the default: the server's version is unknown")
    try:
        return _EraChoice(CudaEra.for_version(version), f"from the server's version {version}")
    except ConfigError:
        return _EraChoice(
            DEFAULT_CUDA_ERA, f"the default: Ollama {version} has no CUDA variant rule"
        )


def _hardware_findings(
    gpus: GpuReport,
    runners: RunnerReport,
    *,
    server: ServerStatus,
    remote: bool,
    era: _EraChoice,
) -> list[Finding]:
    found: list[Finding] = []
    if remote:
        found.append(
            Finding(
                severity="info",
                topic="gpu",
                message=f"the server at {server.host} is not this machine: the GPUs, runner "
                "and fit shown are this machine's, not the server's",
            )
        )
    if not gpus.devices:
        # The reason already names every unusable GPU and why.
        found.append(
            Finding(severity="warning", topic="gpu", message=f"no usable GPU: {gpus.reason}")
        )
    else:
        found += [
            Finding(
                severity="warning",
                topic="gpu",
                message=f"GPU {gpu.index} ({gpu.name}) is not usable: {gpu.unsupported_reason}",
            )
            for gpu in gpus.unsupported
        ]
    found += [
        Finding(severity="warning", topic="gpu", message=warning) for warning in gpus.warnings
    ]
    if era.source is not None and any(gpu.library == "cuda" for gpu in gpus.devices):
        found.append(
            Finding(
                severity="info",
                topic="gpu",
                message=f"CUDA variants follow Ollama {era.era.versions} ({era.source})",
            )
        )
    found += _runner_findings(runners, server.version)
    return found


def _runner_findings(runners: RunnerReport, version: str | None) -> list[Finding]:
    found: list[Finding] = []
    if runners.runners_dir is None:
        found.append(
            Finding(
                severity="info",
                topic="runners",
                message=f"{runners.missing}; Ollama v0.3.11-v0.5.1 would request "
                f"{runners.requested}",
                hint="only Ollama v0.3.11-v0.5.1 keeps runners in a runners dir; newer "
                "versions carry their GPU libraries in lib/ollama",
            )
        )
    found += [
        Finding(
            severity="warning",
            topic="runners",
            message=reason,
            hint="set OLLAMA_LLM_LIBRARY to an available runner, or unset it",
        )
        for reason in runners.reasons
        if reason.startswith("Invalid OLLAMA_LLM_LIBRARY")
    ]
    if version is not None and not _in_era_b(version):
        found.append(
            Finding(
                severity="info",
                topic="runners",
                message=f"the runner selection shown is Ollama v0.3.11-v0.5.1's; Ollama {version} "
                "chooses its GPU libraries differently",
            )
        )
    return found


def _in_era_b(version: str) -> bool:
    try:
        parsed = Version(Version(version.removeprefix("v")).base_version)
    except InvalidVersion:
        return False
    return _ERA_B[0] <= parsed < _ERA_B[1]


def _ordered(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Sort errors first, then warnings, then information, keeping the order within each."""
    return tuple(sorted(findings, key=lambda f: _SEVERITIES.index(f.severity)))


# --------------------------------------------------------------------------- secrets


def _secrets(settings: Settings | None, environ: Mapping[str, str] | None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    values: list[str] = []
    if settings is not None:
        values += [settings.api_key or "", *settings.headers.values()]
    for variable in _SECRET_VARIABLES:
        raw = env.get(variable, "")
        values.append(raw)
        # A headers variable that did not parse still holds its values: after each colon,
        # or anywhere in an item without one.
        for item in raw.split(";"):
            name, colon, value = item.partition(":")
            values += [value] if colon else name.split()
    cleaned = {value.strip().strip("'\"") for value in values}
    return tuple(sorted((v for v in cleaned if len(v) >= _MIN_SECRET_CHARS), key=len, reverse=True))


class _Redactor:
    """Replace every secret in every string of a report (longest secrets first)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._secrets = secrets

    def apply(self, value: _T) -> _T:
        if not self._secrets:
            return value
        return self._walk(value)  # type: ignore[no-any-return]

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, _MASK)
            return value
        if isinstance(value, tuple):
            return tuple(self._walk(item) for item in value)
        if isinstance(value, Mapping):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {
                f.name: self._walk(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.init
            }
            return dataclasses.replace(value, **changes)
        return value


# --------------------------------------------------------------------------- rendering


def _server_rows(server: ServerStatus) -> list[_Row]:
    source = _SOURCES.get(server.host_source or "", server.host_source or "")
    rows: list[_Row] = [("host", f"{server.host or 'none'}" + (f" ({source})" if source else ""))]
    if server.state == "ok":
        rows.append(("status", f"reachable, Ollama {server.version}"))
    else:
        rows.append(("status", f"{server.state}: {server.error or 'not checked'}"))
        if server.hint:
            rows.append(("hint", server.hint))
        return rows
    models = [f"{m.name}  {human_bytes(m.size)}  {m.digest[:12]}" for m in server.models]
    rows.append(("models", "\n".join(models) if models else "none"))
    loaded = [m.describe() for m in server.loaded]
    rows.append(("loaded", "\n".join(loaded) if loaded else "none"))
    return rows


def _gpu_rows(gpus: GpuReport) -> list[_Row]:
    rows: list[_Row] = [("device", gpu.describe()) for gpu in gpus.all_devices]
    if not gpus.devices:
        backends = gpus.backends or (gpus,)
        rows += [(backend.library, f"none: {backend.reason}") for backend in backends]
    driver = [gpus.driver_version] if gpus.driver_version else []
    if gpus.cuda_driver_version is not None:
        driver.append("CUDA {}.{}".format(*gpus.cuda_driver_version))
    if driver:
        rows.append(("driver", ", ".join(driver)))
    rows += [("note", note) for note in gpus.notes]
    return rows


def _cpu_rows(cpu: CpuStatus) -> list[_Row]:
    return [
        ("capability", cpu.capability),
        ("flags", " ".join(cpu.flags) or "none of note"),
        ("platform", cpu.platform),
    ]


def _runner_rows(runners: RunnerReport) -> list[_Row]:
    rows: list[_Row] = [
        ("runners dir", runners.runners_dir or f"none: {runners.missing}"),
        ("available", ", ".join(runners.available) or "none"),
        ("for", runners.target),
        ("requested", runners.requested),
    ]
    if runners.runners:
        rows.append(("order", " > ".join(runners.runners)))
        rows.append(("chosen", runners.chosen or ""))
    rows.append(("why", "\n".join(f"- {reason}" for reason in runners.reasons)))
    return rows


def _model_rows(check: ModelCheck) -> list[_Row]:
    if check.present is None:
        present = "unknown"
    elif check.present:
        size = human_bytes(check.size) if check.size is not None else "size unknown"
        facts = [
            str(check.details.get(k))
            for k in ("family", "parameter_size", "quantization_level")
            if check.details.get(k)
        ]
        present = f"yes, {size}" + (f" ({' '.join(facts)})" if facts else "")
    else:
        present = "no"
    rows: list[_Row] = [("present", present)]
    if check.fit is not None:
        fit = check.fit
        rows.append(("fit", fit.summary()))
        rows.append(
            (
                "estimate",
                f"weights {human_bytes(fit.weights_bytes)}, "
                f"KV cache {human_bytes(fit.kv_cache_bytes)}, "
                f"graph {human_bytes(fit.graph_bytes)}, "
                f"reserve {human_bytes(fit.reserve_bytes)} per GPU; "
                f"num_ctx {fit.num_ctx} x {fit.parallel} parallel",
            )
        )
    if check.fit_note:
        rows.append(("fit note", check.fit_note))
    if check.present:
        rows.append(
            ("placement", f"{check.placement.label} (loaded)" if check.placement else "not loaded")
        )
    return rows


def _finding_rows(finding: Finding) -> list[_Row]:
    rows: list[_Row] = [(finding.severity, f"{finding.topic}: {finding.message}")]
    if finding.hint:
        rows.append(("", f"hint: {finding.hint}"))
    return rows


def _render(sections: Sequence[_Section]) -> str:
    width = max([_KEY_WIDTH, *(len(key) for _, rows in sections for key, _ in rows)])
    blocks = []
    for title, rows in sections:
        lines = [title]
        for key, value in rows:
            first, *rest = value.splitlines() or [""]
            lines.append(f"  {key:<{width}}  {first}".rstrip())
            lines += [f"  {'':<{width}}  {line}".rstrip() for line in rest]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _html(sections: Sequence[_Section]) -> str:
    parts = []
    for title, rows in sections:
        body = "".join(
            f"<tr><th style='text-align:left;vertical-align:top'>{html.escape(key)}</th>"
            f"<td style='text-align:left'>{html.escape(value).replace(chr(10), '<br>')}</td></tr>"
            for key, value in rows
        )
        parts.append(
            f"<h4>{html.escape(title)}</h4><table class='ollama-ready-doctor'>{body}</table>"
        )
    return "".join(parts)


def _model_dict(model: ModelInfo) -> dict[str, Any]:
    return {
        "name": model.name,
        "model": model.model,
        "digest": model.digest,
        "size": model.size,
        "modified_at": model.modified_at,
        "details": _jsonable(model.details),
    }


def _jsonable(value: Any) -> Any:
    """Return ``value`` with tuples as lists and mappings as dicts, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


class _CallableModule(types.ModuleType):
    """Let ``ollama_ready.doctor(...)`` work even after ``import ollama_ready.doctor``.

    Importing the submodule makes it the package attribute ``doctor``, shadowing the function
    of the same name; calling the module calls the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> DoctorReport:
        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
