"""The ``ollama-ready`` command: a thin argparse adapter over the library.

It is the only place in ollama_ready that configures logging or prints. Exit codes are stable
(see :data:`EXIT_CODES` and ``docs/cli.md``). Every option falls back to an environment variable:
command-line option > environment variable > default.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from ollama_ready._format import human_bytes
from ollama_ready._version import __version__
from ollama_ready.clock import Deadline
from ollama_ready.errors import (
    ConfigError,
    DiskFull,
    ModelNotFound,
    ModelNotPresent,
    NotReadyError,
    OllamaConnectionError,
    OllamaReadyError,
    PlacementError,
    PullError,
    ServerTooOld,
)

__all__ = ["EXIT_CODES", "build_parser", "main"]

logger = logging.getLogger("ollama_ready.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_READY = 3
EXIT_MODEL_NOT_FOUND = 4
EXIT_PULL_FAILED = 5
EXIT_DISK_FULL = 6
EXIT_NOT_ON_GPU = 7
EXIT_SERVER_TOO_OLD = 8
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: Exit code -> meaning; documented in docs/cli.md and checked against it by a test.
EXIT_CODES: Mapping[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILURE: "any other failure (a server error with no more specific code)",
    EXIT_USAGE: "usage or bad input: an invalid model name, host, option or strategy spec",
    EXIT_NOT_READY: "server not ready in time (not reachable, not answering, or not at the level)",
    EXIT_MODEL_NOT_FOUND: "model not found in the registry, or not present when it must be",
    EXIT_PULL_FAILED: "pull failed after retries, or stalled",
    EXIT_DISK_FULL: "no space left on the server's disk",
    EXIT_NOT_ON_GPU: "GPU required but the model is not (fully) on the GPU",
    EXIT_SERVER_TOO_OLD: "server too old for the requested version or model",
    EXIT_INTERRUPTED: "interrupted (SIGINT)",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}

_LEVELS = ("server", "version", "model", "loaded", "gpu")


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler."""


def exit_code_for(error: BaseException) -> int:
    """Return the documented exit code for ``error``."""
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    if isinstance(error, ServerTooOld):
        return EXIT_SERVER_TOO_OLD
    if isinstance(error, DiskFull):
        return EXIT_DISK_FULL
    if isinstance(error, ModelNotFound | ModelNotPresent):
        return EXIT_MODEL_NOT_FOUND
    if isinstance(error, PlacementError):
        return EXIT_NOT_ON_GPU
    if isinstance(error, PullError):
        return EXIT_PULL_FAILED
    if isinstance(error, NotReadyError | OllamaConnectionError):
        return EXIT_NOT_READY
    if isinstance(error, TimeoutError) and getattr(error, "phase", None) in (None, "wait"):
        return EXIT_NOT_READY
    if isinstance(error, TimeoutError):
        return EXIT_PULL_FAILED
    if isinstance(error, OllamaReadyError):
        return EXIT_FAILURE
    return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``ollama-ready`` command."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--host",
        help="Ollama server, with OLLAMA_HOST rules (env: OLLAMA_HOST; default 127.0.0.1:11434)",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        help="one deadline for the whole command, seconds (env: OLLAMA_READY_TIMEOUT; default 600)",
    )
    group.add_argument(
        "--json", action="store_true", help="print the final result as JSON on stdout"
    )
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging; -vv shows tracebacks"
    )
    group.add_argument("-q", "--quiet", action="store_true", help="only errors")

    parser = argparse.ArgumentParser(
        prog="ollama-ready",
        description="Wait for an Ollama server, make sure models are present, check the GPU.",
        epilog="Exit codes: "
        + "; ".join(f"{code} {text.split(' (')[0]}" for code, text in EXIT_CODES.items()),
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ollama-ready {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    wait = commands.add_parser("wait", parents=[common], help="wait until the server answers")
    _add_wait(wait)

    pull = commands.add_parser("pull", parents=[common], help="pull models (with retries)")
    pull.add_argument("models", nargs="+", metavar="MODEL")
    _add_pull(pull)
    _add_wait(pull)

    ensure = commands.add_parser(
        "ensure", parents=[common], help="wait, pull if missing, verify, optionally load"
    )
    ensure.add_argument(
        "models", nargs="*", metavar="MODEL", help="models (env: OLLAMA_READY_MODELS, comma list)"
    )
    _add_wait(ensure)
    _add_pull(ensure)
    _add_load(ensure)
    ensure.add_argument(
        "--min-server-version",
        help="packaging specifier, e.g. '>=0.11' (env: OLLAMA_READY_MIN_SERVER_VERSION)",
    )

    check = commands.add_parser(
        "check", parents=[common], help="one readiness probe for healthchecks (exit 0 or not)"
    )
    check.add_argument(
        "--level", choices=_LEVELS, default="server", help="what must hold (default: server)"
    )
    check.add_argument("--model", action="append", default=[], help="model for model levels")
    check.add_argument("--min-server-version", help="packaging specifier for --level version")

    commands.add_parser("list", parents=[common], help="list the models on the server")
    commands.add_parser("gpus", parents=[common], help="show the GPUs NVML sees on this machine")
    runners = commands.add_parser(
        "runners", parents=[common], help="show the runner Ollama would pick here, and why"
    )
    runners.add_argument("--dir", help="runners directory (default: search like Ollama)")
    doctor = commands.add_parser("doctor", parents=[common], help="diagnose server, models, GPUs")
    doctor.add_argument("--model", help="also estimate whether this model fits in VRAM")

    demo = commands.add_parser(
        "demo", parents=[common], help="run ensure against a built-in fake Ollama"
    )
    demo.add_argument(
        "--model", default="llama3.2:1b", help="model to ensure (default: %(default)s)"
    )
    demo.add_argument(
        "--seconds", type=_seconds, default=4.0, help="how long the simulated download takes"
    )
    demo.add_argument("--progress", choices=("auto", "lines", "json", "none"), default=None)
    return parser


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        metavar="SPEC",
        help="wait strategy, e.g. 'poll:interval=0.2' or 'sleep:2' (env: OLLAMA_READY_WAIT)",
    )


def _add_pull(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        choices=("missing", "always", "never"),
        help="when to pull (env: OLLAMA_READY_PULL_POLICY; default missing)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a plain-HTTP registry (env: OLLAMA_READY_INSECURE)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=_seconds,
        help="seconds without progress before a pull is retried (env: OLLAMA_READY_STALL_TIMEOUT)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "lines", "json", "none"),
        help="progress display (env: OLLAMA_READY_PROGRESS; default auto)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="models pulled at once")


def _add_load(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--load", action="store_true", default=None, help="load the model after it is present"
    )
    parser.add_argument(
        "--keep-alive",
        help="how long the model stays loaded, e.g. 5m, -1 (env: OLLAMA_READY_KEEP_ALIVE)",
    )
    parser.add_argument(
        "--require-gpu",
        action="store_true",
        default=None,
        help="fail unless the model is 100%% on the GPU (implies --load)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite, non-negative number: {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, or a usage error
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging(args.verbose, args.quiet)
    command: Callable[[argparse.Namespace, Deadline], int] = _COMMANDS[args.command]
    root = Deadline(None)
    with _signals(root):
        try:
            return command(args, root)
        except OllamaReadyError as exc:
            _report_error(exc, args.verbose)
            return exit_code_for(exc)
        except KeyboardInterrupt:
            return _interrupted(root, EXIT_INTERRUPTED, "interrupted")
        except _Terminated:
            return _interrupted(root, EXIT_TERMINATED, "terminated")


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose else logging.WARNING)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        force=True,
    )
    if verbose == 1:
        logging.getLogger("urllib3").setLevel(logging.INFO)
    logging.getLogger("ollama_ready").setLevel(logging.DEBUG if verbose else level)
    if not verbose and not quiet:
        logging.getLogger("ollama_ready").setLevel(logging.INFO)


def _report_error(error: OllamaReadyError, verbose: int) -> None:
    if verbose >= 2:
        logger.exception("traceback")
    first, *rest = str(error).splitlines() or [type(error).__name__]
    print(f"error: {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line.strip()}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)


def _interrupted(root: Deadline, code: int, what: str) -> int:
    root.cancel()
    print(
        f"{what}: stopped waiting. If a pull was in progress, the server stops it once no other "
        "client is waiting for it, keeps the partial download, and the next pull resumes from it "
        "(unless the server restarts without OLLAMA_NOPRUNE).",
        file=sys.stderr,
    )
    sys.stderr.flush()
    _exit_if_stuck(code)
    return code


def _exit_if_stuck(code: int, grace: float = 0.5) -> None:
    """Leave at once when worker threads are still blocked in a read after an interrupt."""
    until = time.monotonic() + grace
    while time.monotonic() < until:
        if all(t.daemon or t is threading.main_thread() for t in threading.enumerate()):
            return
        time.sleep(0.02)
    sys.stdout.flush()
    os._exit(code)


@contextmanager
def _signals(root: Deadline) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        root.cancel()
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress(args: argparse.Namespace) -> str | None:
    if args.quiet:
        return "none"
    value: str | None = getattr(args, "progress", None)
    if value is None and args.json:
        return "none" if sys.stderr.isatty() else None
    return value


def _ensure_kwargs(args: argparse.Namespace, root: Deadline) -> dict[str, Any]:
    return {
        "host": args.host,
        "timeout": args.timeout,
        "wait": getattr(args, "wait", None),
        "pull_policy": getattr(args, "policy", None),
        "insecure": getattr(args, "insecure", None),
        "stall_timeout": getattr(args, "stall_timeout", None),
        "progress": _progress(args),
        "load": getattr(args, "load", None),
        "keep_alive": _keep_alive(getattr(args, "keep_alive", None)),
        "require_gpu": getattr(args, "require_gpu", None),
        "min_server_version": getattr(args, "min_server_version", None),
        "deadline": root,
    }


def _keep_alive(value: str | None) -> str | float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _cmd_ensure(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.ensure import ensure_models

    results = ensure_models(
        args.models or None, concurrency=args.concurrency, **_ensure_kwargs(args, root)
    )
    _emit(args, [r.to_dict() for r in results], [_describe(r) for r in results])
    return EXIT_OK


def _cmd_pull(args: argparse.Namespace, root: Deadline) -> int:
    return _cmd_ensure(args, root)


def _cmd_wait(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.readiness import wait_until_ready

    report = wait_until_ready(args.host, strategy=args.wait, timeout=args.timeout, deadline=root)
    _emit(args, report.to_dict(), [f"ready: {report.describe()}"])
    return EXIT_OK


def _cmd_check(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.readiness import check

    report = check(
        args.host,
        level=args.level,
        models=tuple(args.model),
        min_server_version=args.min_server_version,
        timeout=args.timeout,
        deadline=root,
    )
    _emit(args, report.to_dict(), [f"ok: {report.describe()}"])
    return EXIT_OK


def _cmd_list(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.client import OllamaClient
    from ollama_ready.config import Settings

    settings = Settings.from_env(host=args.host, timeout=args.timeout)
    with OllamaClient.from_settings(settings) as client:
        models = client.list_models()
    rows = [f"{'NAME':<40} {'ID':<12} {'SIZE':>10}  MODIFIED"]
    rows += [
        f"{m.name:<40} {m.digest[:12]:<12} {human_bytes(m.size):>10}  {m.modified_at}"
        for m in models
    ]
    _emit(args, [_model_dict(m) for m in models], rows)
    return EXIT_OK


def _cmd_gpus(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.gpu import detect_gpus

    report = detect_gpus()
    _emit(args, report.to_dict(), report.describe().splitlines())
    return EXIT_OK


def _cmd_runners(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.doctor import runner_report

    report = runner_report(runners_dir=args.dir)
    _emit(args, report.to_dict(), report.describe().splitlines())
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.doctor import doctor

    report = doctor(host=args.host, model=args.model, timeout=args.timeout or 10.0)
    _emit(args, report.to_dict(), report.describe().splitlines())
    return EXIT_OK if report.ok else EXIT_FAILURE


def _cmd_demo(args: argparse.Namespace, root: Deadline) -> int:
    from ollama_ready.ensure import ensure_model
    from ollama_ready.names import ModelName
    from ollama_ready.testing import FakeOllama
    from ollama_ready.testing._ollama_catalogue import default_registry

    catalogue = default_registry()
    wanted = ModelName.parse(args.model)
    model = next((m for m in catalogue if wanted.matches(m.name)), None)
    if model is None:
        raise ConfigError(
            f"the demo server has no {wanted.display}",
            hint="choose one of: " + ", ".join(m.display for m in catalogue),
        )
    server = FakeOllama(tick=0.06, registry=catalogue)
    server.set_bandwidth(max(1.0, model.size / max(args.seconds, 0.1)))
    with server:
        if not args.quiet and not args.json:
            print(
                f"demo: a fake Ollama is serving at {server.url} (simulated download, no network)"
            )
        kwargs = _ensure_kwargs(args, root)
        kwargs["host"] = server.url
        result = ensure_model(args.model, **kwargs)
        _emit(args, result.to_dict(), [_describe(result)])
        if not args.quiet and not args.json:
            again = ensure_model(args.model, **kwargs)
            print(f"again: {_describe(again)} (cached: no pull, no registry contact)")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, Deadline], int]] = {
    "check": _cmd_check,
    "demo": _cmd_demo,
    "doctor": _cmd_doctor,
    "ensure": _cmd_ensure,
    "gpus": _cmd_gpus,
    "list": _cmd_list,
    "pull": _cmd_pull,
    "runners": _cmd_runners,
    "wait": _cmd_wait,
}


def _describe(result: Any) -> str:
    how = (
        f"pulled {human_bytes(result.bytes_downloaded)}"
        if result.pulled
        else ("created" if result.created else "already present")
    )
    where = f", {result.placement.label}" if result.placement else ""
    return (
        f"ready: {result.display_name} on {result.host} (Ollama {result.server_version}): "
        f"{how}{where} in {result.duration:.2f}s"
    )


def _model_dict(model: Any) -> dict[str, Any]:
    return {
        "name": model.name,
        "digest": model.digest,
        "size": model.size,
        "modified_at": model.modified_at,
    }


def _emit(
    args: argparse.Namespace, data: object, lines: Sequence[str], out: TextIO | None = None
) -> None:
    stream = out or sys.stdout
    if args.json:
        json.dump(data, stream, indent=2, default=str)
        stream.write("\n")
    elif not args.quiet:
        for line in lines:
            print(line, file=stream)
    stream.flush()
