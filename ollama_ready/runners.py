"""Ollama runners (era B, v0.3.11 to v0.5.1): where they live and which one serves a GPU.

A *runner* is an llm server build variant named ``<library>[_<variant>]`` (``cpu``, ``cpu_avx``,
``cpu_avx2``, ``cuda_v11``, ``cuda_v12``, ``rocm``, ``metal``), kept in
``<runners dir>/<name>/ollama_llama_server``. This module finds the runners dir when there are no
payloads to extract (:func:`locate_runners`), lists the runners in it (:func:`available_runners`)
and orders them for a GPU (:func:`runners_for_gpu`) or for the CPU (:func:`runner_for_cpu`)
exactly as Ollama's ``ServersForGpu`` and ``ServerForCpu`` did, honouring ``OLLAMA_LLM_LIBRARY``.
Every selection carries the reasons for it, so a diagnosis can explain the choice.

Extraction of embedded payloads into a private temp dir lives in :mod:`ollama_ready.payloads`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, get_args

from ollama_ready.cpu import CpuCapability, host_platform
from ollama_ready.errors import ConfigError, PayloadError

__all__ = [
    "GpuLike",
    "RunnerChoice",
    "available_runners",
    "locate_runners",
    "runner_for_cpu",
    "runners_for_gpu",
]

logger = logging.getLogger(__name__)

_CAPABILITIES: Final[tuple[str, ...]] = get_args(CpuCapability)

# Variants that mean "no vector extensions": Ollama's Go string, and ours.
_NO_VARIANT: Final = frozenset({"no vector extensions", "none"})
_APPLE_SILICON: Final = ("darwin", "arm64")
_LLM_LIBRARY_VAR: Final = "OLLAMA_LLM_LIBRARY"


class GpuLike(Protocol):
    """What runner selection needs to know about a GPU: its library and variant.

    ``gpu.GpuInfo`` satisfies it; so does any object with these two attributes.
    """

    @property
    def library(self) -> str:
        """``cuda``, ``rocm``, ``oneapi``, ``metal`` or ``cpu``."""
        ...

    @property
    def variant(self) -> str:
        """``v11``, ``v12``, ... for CUDA; ``""`` for ROCm; the CPU capability for ``cpu``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerChoice:
    """An ordered list of runners to try, and why.

    ``cpu_only`` is true when ``OLLAMA_LLM_LIBRARY`` forced a ``cpu*`` runner, which also makes
    Ollama offload no layers (``num_gpu=-1``).
    """

    runners: tuple[str, ...]
    reasons: tuple[str, ...]
    requested: str
    override: str | None = None
    cpu_only: bool = False

    @property
    def first(self) -> str:
        """Return the runner Ollama tries first."""
        return self.runners[0]


def locate_runners(
    exe: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    *,
    platform: tuple[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Find an installed runners dir, as Ollama does when it carries no payloads.

    Args:
        exe: The ``ollama`` executable; None looks ``ollama`` up on ``PATH``. Symlinks are
            resolved, as Go's ``os.Executable`` does.
        cwd: The working dir to search last; None means the current one.
        platform: ``(goos, goarch)`` as :func:`~ollama_ready.cpu.host_platform` gives it;
            None means this host.
        environ: Supplies ``PATH`` when ``exe`` is None; None means ``os.environ``.

    Raises:
        PayloadError: No candidate exists; the message lists every path tried.
    """
    goos, goarch = platform or host_platform()
    paths = _runner_search_paths(_executable(exe, environ), cwd, goos, goarch)
    for path in paths:
        candidate = path / "lib" / "ollama" / "runners"
        if candidate.is_dir():
            return candidate
    shown = ", ".join(str(p) for p in paths)
    raise PayloadError(
        f"unable to locate runners in any search path [{shown}]",
        hint="install Ollama's runners next to the ollama executable, or provide payloads",
    )


def _executable(
    exe: str | os.PathLike[str] | None, environ: Mapping[str, str] | None
) -> Path | None:
    if exe is None:
        env = os.environ if environ is None else environ
        found = shutil.which("ollama", path=env.get("PATH", os.defpath))
        if found is None:
            return None
        exe = found
    return Path(os.path.realpath(exe))


def _runner_search_paths(
    exe: Path | None, cwd: str | os.PathLike[str] | None, goos: str, goarch: str
) -> list[Path]:
    roots: list[Path] = []
    if exe is not None:
        # LibRelativeToExe: lib/ sits beside bin/ on Linux and macOS, beside the exe on Windows.
        relative = "." if goos == "windows" else ".."
        roots += [exe.parent, Path(os.path.normpath(exe.parent / relative))]
    roots.append(Path(os.getcwd() if cwd is None else cwd))
    os_arch = f"{goos}-{goarch}"
    return [base for root in roots for base in (root, root / os_arch, root / "dist" / os_arch)]


def available_runners(runners_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    """Return ``{runner name: runner dir}`` for each ``<runners_dir>/*/ollama_*``, sorted by name.

    None or an empty string means no runners dir: the result is empty.
    """
    if runners_dir is None or os.fspath(runners_dir) == "":
        logger.error("empty runner dir")
        return {}
    found = {
        executable.parent.name: executable.parent
        for executable in Path(runners_dir).glob("*/ollama_*")
    }
    return dict(sorted(found.items()))


def runners_for_gpu(
    gpu: GpuLike,
    available: Iterable[str],
    *,
    cpu: CpuCapability,
    platform: tuple[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunnerChoice:
    """Order the runners to try for ``gpu``, best first (Ollama's era B ``ServersForGpu``).

    The exact ``<library>_<variant>`` runner comes first (``metal`` alone ends the search); then
    the other runners of the same library, sorted; then the best CPU runner, unless the GPU's
    library is ``cpu`` or the platform is darwin/arm64; ``["cpu"]`` when nothing else applies.
    ``OLLAMA_LLM_LIBRARY`` naming an available runner replaces the whole list.

    Args:
        gpu: The GPU's ``library`` and ``variant``.
        available: The available runner names (a mapping's keys, as from
            :func:`available_runners`).
        cpu: The CPU capability: ``"avx2"``, ``"avx"`` or ``"none"``.
        platform: ``(goos, goarch)`` as :func:`~ollama_ready.cpu.host_platform` gives it;
            None means this host.
        environ: Supplies ``OLLAMA_LLM_LIBRARY``; None means ``os.environ``.
    """
    _check_capability(cpu)
    names = frozenset(available)
    choice = _order_for_gpu(gpu, names, cpu, platform or host_platform())
    return _apply_override(choice, names, environ)


def _order_for_gpu(
    gpu: GpuLike, names: frozenset[str], cpu: CpuCapability, goos_arch: tuple[str, str]
) -> RunnerChoice:
    library = gpu.library
    # Only "no vector extensions" drops the suffix: ROCm's empty variant asks for "rocm_".
    requested = library if gpu.variant in _NO_VARIANT else f"{library}_{gpu.variant}"
    reasons = [f"GPU library {library!r}, variant {gpu.variant!r}: requested runner {requested!r}"]
    runners: list[str] = []
    if requested in names:
        runners.append(requested)
        if requested == "metal":
            reasons.append("metal is available: it is the only runner tried")
            return RunnerChoice(runners=("metal",), reasons=tuple(reasons), requested=requested)
        reasons.append(f"exact match: {requested} is available")
    else:
        reasons.append(f"no runner named {requested} is available")
    if library != "cpu":
        alternates = sorted(n for n in names if n.split("_", 1)[0] == library and n != requested)
        runners += alternates
        if alternates:
            reasons.append(f"same-library ({library}) alternates, sorted: {', '.join(alternates)}")
        else:
            reasons.append(f"no other {library} runners are available")
        runners += _cpu_fallback(names, cpu, goos_arch, reasons)
    if not runners:
        reasons.append("nothing else matched: falling back to cpu")
        runners.append("cpu")
    return RunnerChoice(runners=tuple(runners), reasons=tuple(reasons), requested=requested)


def _cpu_fallback(
    names: frozenset[str], cpu: CpuCapability, goos_arch: tuple[str, str], reasons: list[str]
) -> list[str]:
    if goos_arch == _APPLE_SILICON:
        reasons.append("no CPU runner appended on darwin/arm64 (metal is the default there)")
        return []
    if cpu == "none":
        reasons.append("CPU has no vector extensions: cpu appended as the fallback")
        return ["cpu"]
    wanted = f"cpu_{cpu}"
    if wanted in names:
        reasons.append(f"CPU capability {cpu}: {wanted} appended as the fallback")
        return [wanted]
    # A runner built for instructions the CPU lacks would crash, so no other variant is tried.
    reasons.append(f"CPU capability {cpu} but no {wanted} runner is available: no CPU fallback")
    return []


def runner_for_cpu(
    available: Iterable[str],
    *,
    cpu: CpuCapability,
    platform: tuple[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunnerChoice:
    """Choose the best CPU runner (Ollama's ``ServerForCpu``), honouring ``OLLAMA_LLM_LIBRARY``.

    ``metal`` on darwin/arm64; else ``cpu_<capability>`` when available; else ``cpu``.
    """
    _check_capability(cpu)
    names = frozenset(available)
    reasons: list[str] = []
    if (platform or host_platform()) == _APPLE_SILICON:
        chosen = "metal"
        reasons.append("darwin/arm64: metal is the CPU-path runner")
    elif cpu != "none" and f"cpu_{cpu}" in names:
        chosen = f"cpu_{cpu}"
        reasons.append(f"CPU capability {cpu}: {chosen} is available")
    else:
        chosen = "cpu"
        if cpu == "none":
            reasons.append("CPU has no vector extensions: cpu")
        else:
            reasons.append(f"CPU capability {cpu} but no cpu_{cpu} runner is available: cpu")
    choice = RunnerChoice(runners=(chosen,), reasons=tuple(reasons), requested=chosen)
    return _apply_override(choice, names, environ)


def _apply_override(
    choice: RunnerChoice, names: frozenset[str], environ: Mapping[str, str] | None
) -> RunnerChoice:
    env = os.environ if environ is None else environ
    demand = env.get(_LLM_LIBRARY_VAR, "")
    if not demand:
        return choice
    if demand not in names:
        message = f"Invalid {_LLM_LIBRARY_VAR} {demand} - not found; ignored"
        logger.warning("%s (available: %s)", message, ", ".join(sorted(names)) or "none")
        return RunnerChoice(
            runners=choice.runners,
            reasons=(*choice.reasons, message),
            requested=choice.requested,
        )
    reasons = [
        *choice.reasons,
        f"{_LLM_LIBRARY_VAR}={demand} overrides the list: only {demand} is tried",
    ]
    cpu_only = demand.startswith("cpu")
    if cpu_only:
        reasons.append(f"{demand} is a CPU runner: no layers are offloaded to a GPU")
    return RunnerChoice(
        runners=(demand,),
        reasons=tuple(reasons),
        requested=choice.requested,
        override=demand,
        cpu_only=cpu_only,
    )


def _check_capability(cpu: str) -> None:
    if cpu not in _CAPABILITIES:
        raise ConfigError(f"CPU capability must be one of {', '.join(_CAPABILITIES)}, got {cpu!r}")
