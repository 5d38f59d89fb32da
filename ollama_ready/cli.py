"""The ``ollama-ready`` command: a thin argparse adapter over the library.

It is the only place in ollama_ready that configures logging or prints. Exit codes are stable
(see :data:`EXIT_CODES` and ``docs/cli.md``). Every option falls back to an environment variable:
command-line option > environment variable > default.

Output goes where a pipeline expects it: the result (text, or JSON with ``--json``) on stdout;
progress, logs and errors on stderr. An error is one ``error:`` line, plus a ``hint:`` line when a
fix is known; ``-v`` adds debug logs and the traceback.

The command runs on a worker thread while the main thread waits for it, so SIGINT and SIGTERM are
handled at once whatever the worker is blocked in: the signal cancels the shared deadline, the
worker stops at its next check and closes its connections, and the process exits with 130 or 143
within a second (without waiting for a network call that does not return by itself).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from ollama_ready._format import human_bytes
from ollama_ready._version import __version__
from ollama_ready.clock import Deadline
from ollama_ready.errors import (
    AggregateError,
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

if TYPE_CHECKING:
    from ollama_ready.config import Settings
    from ollama_ready.ensure import EnsureResult
    from ollama_ready.progress import ProgressSnapshot, Reporter

__all__ = ["EXIT_CODES", "build_parser", "exit_code_for", "main"]

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
    EXIT_FAILURE: "any other failure (a server error with no more specific code, a bug)",
    EXIT_USAGE: "usage or bad input: an invalid model name, host, option or strategy spec",
    EXIT_NOT_READY: "server not ready in time (not reachable, not answering, or not at the level)",
    EXIT_MODEL_NOT_FOUND: "model not found in the registry, or not present when it must be",
    EXIT_PULL_FAILED: "pull failed after retries, or stalled, or ran out of time",
    EXIT_DISK_FULL: "no space left on the server's disk",
    EXIT_NOT_ON_GPU: "GPU required but the model is not (fully) on the GPU",
    EXIT_SERVER_TOO_OLD: "server too old for the requested version or model",
    EXIT_INTERRUPTED: "interrupted (SIGINT, Ctrl-C)",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}

LEVELS = ("server", "version", "model", "loaded", "gpu")
PROGRESS_CHOICES = ("auto", "lines", "json", "none")
POLICY_CHOICES = ("missing", "always", "never")

# How long an interrupted command may take to stop by itself before the process leaves anyway.
INTERRUPT_GRACE = 0.3

_PHASES_OF_READINESS = frozenset({"wait", "version", "verify", "load", "placement"})


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler, like KeyboardInterrupt for SIGINT."""


def exit_code_for(error: BaseException) -> int:
    """Return the documented exit code for ``error``.

    A deadline that runs out during a pull is a failed pull (5); during any other phase the
    server was not ready in time (3). For several failed models, the first one decides.
    """
    if isinstance(error, AggregateError):
        causes = list(error.errors.values())
        return exit_code_for(causes[0]) if causes else EXIT_FAILURE
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
    if isinstance(error, TimeoutError) and isinstance(error, OllamaReadyError):
        return EXIT_PULL_FAILED if error.phase == "pull" else EXIT_NOT_READY
    return EXIT_FAILURE


# --------------------------------------------------------------------------- the parser

_DESCRIPTION = """\
Wait for an Ollama server, make sure models are present (pulling them with retries and
progress), check readiness for healthchecks and probes, and diagnose GPUs and runners.

Start with `ollama-ready demo`: it runs `ensure` against a built-in fake server."""


def _epilog() -> str:
    codes = "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    return (
        "Every option falls back to the environment variable named in its help; precedence:\n"
        "command-line option > environment variable > default. OLLAMA_HOST follows Ollama's\n"
        "own rules. The result goes to stdout (JSON with --json); progress, logs and errors go\n"
        "to stderr.\n\n"
        f"exit codes:\n{codes}"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``ollama-ready`` command."""
    parser = argparse.ArgumentParser(
        prog="ollama-ready",
        description=_DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Defaults are SUPPRESSed so that an option given before the command (`-v ensure`) is not
    # overwritten by the subcommand's own default; main() fills in the defaults afterwards.
    _add_output(parser)
    parser.add_argument("--version", action="version", version=f"ollama-ready {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_output(sub)
        return sub

    _add_wait_command(command)
    _add_pull_command(command)
    _add_ensure_command(command)
    _add_check_command(command)
    _add_list_command(command)
    _add_machine_commands(command)
    _add_demo_command(command)
    return parser


_Factory = Callable[[str, str, str], argparse.ArgumentParser]


def _add_wait_command(command: _Factory) -> None:
    wait = command(
        "wait",
        "wait until the server is ready",
        "Wait until the Ollama server answers, with a wait strategy, within one deadline.",
    )
    wait.add_argument(
        "spec",
        nargs="?",
        metavar="SPEC",
        help="wait strategy, e.g. 'poll:interval=0.2', 'sleep:2', "
        "'healthcheck:level=model,model=llama3.2:1b' (env: OLLAMA_READY_WAIT; default: poll)",
    )
    _add_host(wait)
    _add_deadline(wait)


def _add_pull_command(command: _Factory) -> None:
    pull = command(
        "pull",
        "pull models from the registry (with retries)",
        "Wait for the server, then pull each MODEL from the registry even when it is present "
        "(like `ollama pull`: a moved tag is updated), with retries, stall detection and "
        "progress, then verify it. Use `ensure` to pull only what is missing.",
    )
    pull.add_argument("models", nargs="+", metavar="MODEL", help="model names, e.g. llama3.2:1b")
    _add_host(pull)
    _add_deadline(pull)
    _add_wait_option(pull)
    _add_transfer(pull)


def _add_ensure_command(command: _Factory) -> None:
    ensure = command(
        "ensure",
        "wait, pull what is missing, verify, optionally load",
        "Make the models present and ready: wait for the server, check its version, pull each "
        "MODEL that is missing (with retries and progress), verify it, and optionally load it "
        "and check that it runs on the GPU. All of it shares one deadline (--timeout).",
    )
    ensure.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="model names (env: OLLAMA_READY_MODELS, a comma list)",
    )
    _add_host(ensure)
    _add_deadline(ensure)
    _add_wait_option(ensure)
    ensure.add_argument(
        "--policy",
        choices=POLICY_CHOICES,
        help="when to pull: missing (only what is absent), always (re-pull, updates a moved tag), "
        "never (fail if absent) (env: OLLAMA_READY_PULL_POLICY; default: missing)",
    )
    _add_transfer(ensure)
    ensure.add_argument(
        "--load",
        action=argparse.BooleanOptionalAction,
        help="load each model into memory after it is present "
        "(env: OLLAMA_READY_LOAD; default: no)",
    )
    ensure.add_argument(
        "--keep-alive",
        metavar="DURATION",
        help="how long a loaded model stays loaded: seconds, a duration such as 5m, or -1 for "
        "ever (env: OLLAMA_READY_KEEP_ALIVE; default: the server's, 5m)",
    )
    ensure.add_argument(
        "--require-gpu",
        action=argparse.BooleanOptionalAction,
        help="load each model and fail (exit 7) unless it is 100%% on the GPU "
        "(env: OLLAMA_READY_REQUIRE_GPU; default: no)",
    )
    _add_min_version(ensure)


def _add_check_command(command: _Factory) -> None:
    from ollama_ready.readiness import CHECK_TIMEOUT

    check = command(
        "check",
        "one readiness probe, for healthchecks and probes",
        "Look once, without retrying, whether the server is at LEVEL, and exit 0 if it is. "
        "Made for Docker HEALTHCHECK and Kubernetes exec probes: it never waits longer than "
        "--timeout.\n\nlevels: server (answers HTTP), version (reports a version, satisfying "
        "--min-server-version if given), model (the models are present), loaded (they are in "
        "memory), gpu (they are fully on the GPU).",
    )
    _add_host(check)
    check.add_argument(
        "--level",
        choices=LEVELS,
        help="what must hold (default: model when models are given, version when "
        "--min-server-version is given, else server)",
    )
    check.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="MODEL",
        help="a model the model levels check; repeat for several "
        "(env: OLLAMA_READY_MODELS, read for the model levels only)",
    )
    _add_min_version(check)
    check.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"limit for the whole probe (default: {CHECK_TIMEOUT:g}; OLLAMA_READY_TIMEOUT is "
        "not used here: it is the budget of the commands that wait)",
    )


def _add_list_command(command: _Factory) -> None:
    listing = command(
        "list",
        "list the models on the server",
        "List the models on the server, like `ollama list`.",
    )
    _add_host(listing)
    listing.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="limit for the request (env: OLLAMA_READY_READ_TIMEOUT; default: 30)",
    )


def _add_machine_commands(command: _Factory) -> None:
    command(
        "gpus",
        "show the GPUs of this machine",
        "Show the GPUs that NVML (and ROCm's sysfs) report on this machine, with free memory "
        "and the CUDA variant Ollama would choose.",
    )
    runners = command(
        "runners",
        "show the runner Ollama would pick here, and why",
        "Show the llm runner variants found here and the one Ollama would choose for this "
        "machine's GPUs and CPU, with the reasons.",
    )
    runners.add_argument(
        "--dir", metavar="PATH", help="runners directory (default: search like Ollama)"
    )
    doctor = command(
        "doctor",
        "diagnose the server, models, GPUs and runners",
        "Diagnose the server, its models, this machine's GPUs and runners, and print every "
        "finding with a hint. Exits 1 when a finding is an error.",
    )
    _add_host(doctor)
    doctor.add_argument(
        "--model", help="also check this model: present, VRAM fit, placement (default: none)"
    )
    doctor.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="limit for all requests to the server together (default: 10)",
    )


def _add_demo_command(command: _Factory) -> None:
    demo = command(
        "demo",
        "run ensure against a built-in fake Ollama",
        "Start a fake Ollama server in this process (no network, no download: the transfer "
        "is simulated) and run `ensure` against it with live progress, then once more to show "
        "the cached path. The environment is ignored.",
    )
    demo.add_argument(
        "--model", default="llama3.2:1b", help="model to ensure (default: %(default)s)"
    )
    demo.add_argument(
        "--seconds",
        type=_seconds,
        default=4.0,
        help="how long the simulated download takes (default: %(default)s)",
    )
    demo.add_argument(
        "--progress",
        choices=PROGRESS_CHOICES,
        help="progress display (default: auto)",
    )
    demo.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="one deadline for the whole demo (default: 600; the environment is ignored)",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help='print the result as JSON on stdout (an error too, as {"error": ...})',
    )
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="debug logs and tracebacks on stderr; -vv adds HTTP connection logs",
    )
    loudness.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only errors (and the --json result); no progress",
    )


def _add_host(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        help="the Ollama server, written as OLLAMA_HOST is: host[:port] or a URL "
        "(env: OLLAMA_HOST; default: 127.0.0.1:11434)",
    )


def _add_deadline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="one deadline for the whole command: seconds or a duration such as 30m "
        "(env: OLLAMA_READY_TIMEOUT; default: 600)",
    )


def _add_wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        metavar="SPEC",
        help="how to wait for the server first, e.g. 'poll:interval=0.2' or 'sleep:2' "
        "(env: OLLAMA_READY_WAIT; default: poll GET /api/version)",
    )


def _add_transfer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--insecure",
        action=argparse.BooleanOptionalAction,
        help="allow a registry that speaks plain HTTP (env: OLLAMA_READY_INSECURE; default: no)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="seconds without download progress before a pull is retried "
        "(env: OLLAMA_READY_STALL_TIMEOUT; default: 120)",
    )
    parser.add_argument(
        "--progress",
        choices=PROGRESS_CHOICES,
        help="progress on stderr: auto (a bar on a terminal, else lines), lines (plain, no "
        "ANSI), json (one object per line), none (env: OLLAMA_READY_PROGRESS; default: auto)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="how many models are pulled at once (default: %(default)s)",
    )


def _add_min_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-server-version",
        metavar="SPEC",
        help="required server version: '0.11' means >=0.11, or a specifier such as "
        "'>=0.11,<1' (env: OLLAMA_READY_MIN_SERVER_VERSION)",
    )


def _seconds(text: str) -> float:
    """Parse seconds or a duration exactly as the ``OLLAMA_READY_*`` variables are parsed."""
    from ollama_ready.config import Settings

    try:
        return Settings.from_env({}, timeout=text).timeout
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"not a positive number of seconds or a duration such as 90s, 5m or 1h30m: {text!r}"
        ) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number >= 1: {text!r}")
    return value


_OUTPUT_DEFAULTS: Mapping[str, object] = {"json": False, "verbose": 0, "quiet": False}


# --------------------------------------------------------------------------- running


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    As the installed command (``argv=None``), an interrupt that leaves a network call blocked
    past a short grace ends the process at once with the interrupt's exit code. Called with an
    explicit ``argv`` (tests, embedding), it always returns, leaving such a call to finish on
    its daemon thread.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    for name, value in _OUTPUT_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    run = _Run(args)
    with _logging(args.verbose, args.quiet) as handler:
        run.log_handler = handler
        code = _execute(run, hard_exit=argv is None)
    if argv is None:
        # The process exits next. Frozen objects are left out of the collections that
        # interpreter shutdown runs, which otherwise take ~30 ms over requests and our modules.
        gc.freeze()
    return code


@dataclass(eq=False)
class _Run:
    """One invocation: its arguments, its deadline, and what an interrupt note needs."""

    args: argparse.Namespace
    root: Deadline = field(default_factory=lambda: Deadline(None))
    progress: _PullProgress | None = None
    log_handler: logging.Handler | None = None
    loading: bool = False
    silenced: bool = False

    def quiet_down(self) -> None:
        """Stop progress, log and result output: after an interrupt only its note is printed."""
        self.silenced = True
        if self.progress is not None:
            self.progress.mute()
        if self.log_handler is not None:
            self.log_handler.setLevel(logging.CRITICAL + 1)


def _execute(run: _Run, *, hard_exit: bool) -> int:
    command = _COMMANDS[run.args.command]
    outcome: list[int | BaseException] = []
    # An Event, not Thread.join(): on Python < 3.12 a join that a signal interrupts marks the
    # thread as stopped while it still runs.
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(command(run))
        except BaseException as exc:  # handed over to the main thread
            outcome.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=work, name="ollama-ready-command", daemon=True)
    with _signals(run.root):
        try:
            worker.start()
            done.wait()
            result = outcome[0]
            return result if isinstance(result, int) else _failed(result, run.args)
        except KeyboardInterrupt:
            return _interrupted(run, done, EXIT_INTERRUPTED, "SIGINT", hard_exit=hard_exit)
        except _Terminated:
            return _interrupted(run, done, EXIT_TERMINATED, "SIGTERM", hard_exit=hard_exit)
        except BrokenPipeError:
            return _broken_pipe()


@contextmanager
def _signals(root: Deadline) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not root.cancelled:
            root.cancel()
        if signum == signal.SIGTERM:
            raise _Terminated
        raise KeyboardInterrupt

    # A signal the parent process ignores (a background job's SIGINT) stays ignored, as Python
    # itself leaves an inherited SIG_IGN for SIGINT alone.
    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted(run: _Run, done: threading.Event, code: int, name: str, *, hard_exit: bool) -> int:
    run.quiet_down()
    try:
        _print_interrupt_note(run, name)
        # The worker stops at its next look at the deadline and closes its connections.
        done.wait(INTERRUPT_GRACE)
    except (KeyboardInterrupt, _Terminated):
        pass  # a second signal: leave now
    if hard_exit and not done.is_set():
        _exit_now(code)
    return code


def _print_interrupt_note(run: _Run, name: str) -> None:
    if _isatty(sys.stderr):
        print(file=sys.stderr)  # end a progress bar's line
    print(f"interrupted ({name}) after {run.root.elapsed():.1f}s", file=sys.stderr)
    for line in _server_side_effects(run):
        print(f"  {line}", file=sys.stderr)
    sys.stderr.flush()


def _server_side_effects(run: _Run) -> list[str]:
    """Say what the server may still be doing on our behalf."""
    lines = []
    pulls = run.progress.unfinished() if run.progress is not None else ()
    for snapshot in pulls:
        fraction = snapshot.fraction
        where = (
            f"{fraction:.0%} of {human_bytes(snapshot.total or 0)} done"
            if fraction is not None
            else "just started"
        )
        lines.append(
            f"the pull of {snapshot.model} was {where}: the server stops downloading it unless "
            "another client pulls it too; it keeps the partial download and the next pull "
            "resumes from there"
        )
    if run.loading:
        lines.append(
            "a model load the server already started completes there, and the model then stays "
            "loaded for its keep-alive (default 5m)"
        )
    if not lines:
        lines.append("no pull or load of ours was in progress on the server")
    return lines


def _exit_now(code: int) -> NoReturn:
    """Leave without waiting for a worker blocked in a network call; the OS closes its sockets."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _broken_pipe() -> int:
    # The reader of our stdout went away (`ollama-ready list | head -1`): stop quietly, and keep
    # the interpreter's final flush from failing again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with suppress(OSError, ValueError):
            os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_FAILURE


def _failed(error: BaseException, args: argparse.Namespace) -> int:
    if isinstance(error, BrokenPipeError):
        return _broken_pipe()
    if not isinstance(error, Exception):  # SystemExit and the like from a command: pass it on
        raise error
    error = _unwrap(error)
    code = exit_code_for(error)
    if args.verbose:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    for line in _error_lines(error):
        print(line, file=sys.stderr)
    sys.stderr.flush()
    if args.json:
        _write_json(_error_dict(error, code))
    return code


def _unwrap(error: Exception) -> Exception:
    """Return the one cause of a one-model ``ensure`` that failed: it says more, with its hint."""
    if isinstance(error, AggregateError) and len(error.errors) == 1 and not error.results:
        (cause,) = error.errors.values()
        if isinstance(cause, Exception):
            return cause
    return error


def _error_lines(error: Exception) -> list[str]:
    if not isinstance(error, OllamaReadyError):
        return [
            f"error: unexpected {type(error).__name__}: {_first_line(error)}",
            "hint: this is a bug in ollama-ready; run again with -v for the traceback and "
            "report it",
        ]
    first, *rest = error.message.strip().splitlines() or [type(error).__name__]
    lines = [f"error: {first}", *(f"  {line.strip()}" for line in rest)]
    hints = [error.hint] if error.hint else []
    if isinstance(error, AggregateError):
        hints += [
            f"{key}: {cause.hint}"
            for key, cause in error.errors.items()
            if isinstance(cause, OllamaReadyError) and cause.hint
        ]
    lines += [f"hint: {hint}" for hint in hints]
    return lines


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def _error_dict(error: Exception, code: int) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error), "exit_code": code}
    if isinstance(error, OllamaReadyError):
        data.update(host=error.host, model=error.model, phase=error.phase, hint=error.hint)
    if isinstance(error, AggregateError):
        data["errors"] = {
            key: _error_dict(cause, exit_code_for(cause))
            for key, cause in error.errors.items()
            if isinstance(cause, Exception)
        }
    return {"error": data}


# --------------------------------------------------------------------------- logging


class _Formatter(logging.Formatter):
    """``warning: message`` lines, like the ``error:`` and ``hint:`` lines of the command."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


@contextmanager
def _logging(verbose: int, quiet: bool) -> Iterator[logging.Handler]:
    """Send ollama_ready's logs (and urllib3's with -vv) to stderr while the command runs."""
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        level = logging.DEBUG
    else:
        handler.setFormatter(_Formatter("%(message)s"))
        level = logging.ERROR if quiet else logging.WARNING
    names = ["ollama_ready", *(["urllib3"] if verbose >= 2 else [])]
    saved = []
    for name in names:
        target = logging.getLogger(name)
        saved.append((target, target.level, target.propagate))
        target.addHandler(handler)
        target.setLevel(level)
        target.propagate = False
    try:
        yield handler
    finally:
        for target, old_level, old_propagate in saved:
            target.removeHandler(handler)
            target.setLevel(old_level)
            target.propagate = old_propagate


# --------------------------------------------------------------------------- progress


class _PullProgress:
    """Show pull progress with the chosen reporter, one per model, and remember where each is."""

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self._lock = threading.Lock()
        self._reporters: dict[str, Reporter] = {}
        self._last: dict[str, ProgressSnapshot] = {}
        self._muted = False

    def __call__(self, snapshot: ProgressSnapshot) -> None:
        from ollama_ready.progress import make_reporter

        with self._lock:
            self._last[snapshot.model] = snapshot
            if self._muted:
                return
            reporter = self._reporters.get(snapshot.model)
            if reporter is None:
                reporter = self._reporters[snapshot.model] = make_reporter(self._mode)
        reporter(snapshot)

    def mute(self) -> None:
        """Show nothing more."""
        with self._lock:
            self._muted = True

    def unfinished(self) -> tuple[ProgressSnapshot, ...]:
        """Return the last snapshot of every pull that has not finished."""
        with self._lock:
            return tuple(s for s in self._last.values() if not s.finished)


def _progress_mode(args: argparse.Namespace, settings: Settings | None) -> str:
    if args.quiet:
        return "none"
    chosen: str | None = getattr(args, "progress", None)
    if chosen is not None:
        return chosen
    return settings.progress if settings is not None else "auto"


# --------------------------------------------------------------------------- commands


def _settings(**explicit: Any) -> Settings:
    from ollama_ready.config import Settings

    return Settings.from_env(**explicit)


def _ensure_options(run: _Run, *, policy: str | None) -> dict[str, Any]:
    args = run.args
    # Validates the environment before anything starts. The version requirement goes through
    # Settings, which reads a bare version ("0.5") as ">=0.5", as it reads the variable.
    settings = _settings(min_server_version=getattr(args, "min_server_version", None))
    run.progress = _PullProgress(_progress_mode(args, settings))
    load = getattr(args, "load", None)
    require_gpu = getattr(args, "require_gpu", None)
    run.loading = bool(
        (load if load is not None else settings.load)
        or (require_gpu if require_gpu is not None else settings.require_gpu)
    )
    return {
        "host": args.host,
        "timeout": args.timeout,
        "wait": args.wait,
        "pull_policy": policy,
        "insecure": args.insecure,
        "stall_timeout": args.stall_timeout,
        "progress": run.progress,
        "load": load,
        "keep_alive": getattr(args, "keep_alive", None),
        "require_gpu": require_gpu,
        "min_server_version": settings.min_server_version,
        "deadline": run.root,
    }


def _cmd_ensure(run: _Run) -> int:
    from ollama_ready.ensure import ensure_models

    args = run.args
    options = _ensure_options(run, policy=getattr(args, "policy", None))
    results = ensure_models(args.models or None, concurrency=args.concurrency, **options)
    _emit(run, [r.to_dict() for r in results], [_describe(r) for r in results])
    return EXIT_OK


def _cmd_pull(run: _Run) -> int:
    from ollama_ready.ensure import ensure_models

    args = run.args
    options = _ensure_options(run, policy="always")
    results = ensure_models(args.models, concurrency=args.concurrency, **options)
    _emit(run, [r.to_dict() for r in results], [_describe(r) for r in results])
    return EXIT_OK


def _cmd_wait(run: _Run) -> int:
    from ollama_ready.readiness import wait_until_ready

    args = run.args
    report = wait_until_ready(
        args.host, strategy=args.spec, timeout=args.timeout, deadline=run.root
    )
    _emit(run, report.to_dict(), [f"ready: {report.describe()}"])
    return EXIT_OK


def _cmd_check(run: _Run) -> int:
    from ollama_ready.readiness import check

    args = run.args
    level = args.level
    if level is None:
        level = "model" if args.models else ("version" if args.min_server_version else "server")
    report = check(
        args.host,
        level=level,
        models=tuple(args.models or ()),
        min_server_version=args.min_server_version,
        timeout=args.timeout,
        deadline=run.root,
    )
    _emit(run, report.to_dict(), [f"ok: {report.describe()}"])
    return EXIT_OK


def _cmd_list(run: _Run) -> int:
    from ollama_ready.client import OllamaClient

    args = run.args
    settings = _settings(host=args.host, read_timeout=args.timeout)
    with OllamaClient.from_settings(settings) as client:
        models = client.list_models()
    rows = [f"{'NAME':<40} {'ID':<12} {'SIZE':>10}  MODIFIED"]
    rows += [
        f"{m.name:<40} {m.digest[:12]:<12} {human_bytes(m.size):>10}  {m.modified_at}"
        for m in models
    ]
    data = [
        {"name": m.name, "digest": m.digest, "size": m.size, "modified_at": m.modified_at}
        for m in models
    ]
    _emit(run, data, rows)
    return EXIT_OK


def _cmd_gpus(run: _Run) -> int:
    from ollama_ready.gpu import detect_gpus

    report = detect_gpus()
    _emit(run, report.to_dict(), report.describe().splitlines())
    return EXIT_OK


def _cmd_runners(run: _Run) -> int:
    from ollama_ready.doctor import runner_report

    report = runner_report(runners_dir=run.args.dir)
    _emit(run, report.to_dict(), report.describe().splitlines())
    return EXIT_OK


def _cmd_doctor(run: _Run) -> int:
    from ollama_ready.doctor import doctor

    args = run.args
    report = doctor(host=args.host, model=args.model, timeout=args.timeout or 10.0)
    _emit(run, report.to_dict(), report.describe().splitlines())
    return EXIT_OK if report.ok else EXIT_FAILURE


def _cmd_demo(run: _Run) -> int:
    from ollama_ready.ensure import ensure_model
    from ollama_ready.names import ModelName
    from ollama_ready.testing import FakeOllama
    from ollama_ready.testing._ollama_catalogue import default_registry

    args = run.args
    catalogue = default_registry()
    wanted = ModelName.parse(args.model)
    model = next((m for m in catalogue if wanted.matches(m.name)), None)
    if model is None:
        raise ConfigError(
            f"the demo server has no {wanted.display}",
            hint="choose one of: " + ", ".join(ModelName.parse(m.name).display for m in catalogue),
        )
    run.progress = _PullProgress(_progress_mode(args, None))
    talk = not args.quiet and not args.json
    server = FakeOllama(tick=0.06, registry=catalogue)
    server.set_bandwidth(max(1.0, model.size / args.seconds))
    with server:
        if talk:
            _say(
                run,
                f"demo: a fake Ollama serves at {server.url} (a simulated download, no network)",
            )
            _say(run, f"$ ollama-ready ensure {wanted.display} --host {server.url}")
        options: dict[str, Any] = {
            "host": server.url,
            "timeout": args.timeout,
            "progress": run.progress,
            "deadline": run.root,
            "environ": {},
        }
        result = ensure_model(args.model, **options)
        _emit(run, result.to_dict(), [_describe(result)])
        if talk:
            _say(run, "$ ollama-ready ensure again: the model is there, so no pull and no registry")
            _say(run, _describe(ensure_model(args.model, **options)))
            _say(run, f"next: ollama-ready ensure {wanted.display} --host YOUR-SERVER")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[_Run], int]] = {
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


# --------------------------------------------------------------------------- output


def _describe(result: EnsureResult) -> str:
    how = (
        f"pulled {human_bytes(result.bytes_downloaded)}"
        if result.pulled
        else ("created" if result.created else "already present")
    )
    where = f", {result.placement.label}" if result.placement else ""
    version = f" (Ollama {result.server_version})" if result.server_version else ""
    return (
        f"ready: {result.display_name} on {result.host}{version}: "
        f"{how}{where} in {result.duration:.2f}s"
    )


def _say(run: _Run, line: str) -> None:
    if not run.silenced:
        print(line, flush=True)


def _emit(run: _Run, data: object, lines: Sequence[str]) -> None:
    args = run.args
    if run.silenced:  # interrupted: a late result of a command that was given up on
        return
    if args.json:
        _write_json(data)
    elif not args.quiet:
        for line in lines:
            print(line)
        sys.stdout.flush()


def _write_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
