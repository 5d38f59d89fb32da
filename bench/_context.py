"""What every scenario gets: the run level, where to write, the machine it runs on."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["LEVELS", "REPO_ROOT", "Context", "Level", "clean_environment", "describe_machine"]

_T = TypeVar("_T")

Level = Literal["full", "quick", "smoke"]
LEVELS: tuple[Level, ...] = ("full", "quick", "smoke")

REPO_ROOT = Path(__file__).resolve().parent.parent

# Variables that would change what ollama_ready, curl or the official client talk to.
_SCRUBBED_PREFIXES = ("OLLAMA_", "CUDA_VISIBLE_DEVICES")
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """The run a scenario belongs to.

    ``level`` is ``full`` (the published numbers), ``quick`` (a reduced run, under two
    minutes for the whole suite) or ``smoke`` (the least that exercises every code path).
    ``work_dir`` is a private temporary directory, removed after the run.
    """

    level: Level
    work_dir: Path
    seed: int
    python: str = sys.executable

    def pick(self, *, full: _T, quick: _T, smoke: _T) -> _T:
        """Return the value for this run's level."""
        return {"full": full, "quick": quick, "smoke": smoke}[self.level]


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``os.environ`` without Ollama, CUDA and proxy variables (plus ``extra``)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(_SCRUBBED_PREFIXES) and name.upper() not in _PROXY_VARIABLES
    }
    env.update(extra or {})
    return env


def describe_machine() -> dict[str, Any]:
    """Describe this machine and software, for the report's header."""
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": _load_average(),
        "versions": {
            name: _version(name)
            for name in ("ollama-ready", "requests", "ollama", "httpx", "urllib3")
        },
        "curl": _curl_version(),
        "commit": _git_commit(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    return None


def _load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _curl_version() -> str | None:
    curl = shutil.which("curl")
    if curl is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [curl, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.split("\n", 1)[0].split(" (", 1)[0] or None
    return None


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            [git, "rev-parse", "--short=12", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no", "--", "ollama_ready"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{head}{' (package modified)' if dirty else ''}"
    return None
