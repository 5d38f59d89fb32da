"""pytest plugin: an Ollama server and its models as fixtures (the ``pytest11`` entry point).

pytest loads this module by itself once ollama-ready is installed; ``import ollama_ready`` never
imports it. It adds:

- options ``--ollama-host``, ``--ollama-timeout`` and ``--ollama-required``, each with an ini
  twin (``ollama_host``, ``ollama_timeout``, ``ollama_required``) and an environment fallback
  (``OLLAMA_HOST``, ``OLLAMA_READY_TIMEOUT``, ``OLLAMA_READY_REQUIRED``), resolved by
  :func:`resolve_options` with the precedence command line > environment > ini > default;
- the markers ``ollama_model(*names, load=False, ...)`` and ``fake_ollama(**kwargs)``;
- the fixtures ``ollama_settings``, ``ollama_server``, ``ollama_client``, ``ollama_model``,
  ``fake_ollama`` and ``fake_ollama_factory``, each of which a ``conftest.py`` may override;
- a report header line with the host, the server version and this machine's GPUs.

Under pytest-xdist, ``ollama_model`` takes a file lock per model in the temporary directory the
workers share, so one worker pulls a model while the others wait and then find it present.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TextIO

import pytest

if TYPE_CHECKING:
    from ollama_ready.client import OllamaClient
    from ollama_ready.clock import Deadline
    from ollama_ready.config import Settings
    from ollama_ready.ensure import EnsureResult
    from ollama_ready.readiness import ReadyReport
    from ollama_ready.testing import FakeOllama

__all__ = [
    "ENSURE_OPTIONS",
    "FAKE_TICK",
    "OllamaOptions",
    "ensure_locked",
    "fake_ollama",
    "fake_ollama_factory",
    "ollama_client",
    "ollama_model",
    "ollama_server",
    "ollama_settings",
    "pytest_addoption",
    "pytest_configure",
    "pytest_report_header",
    "resolve_options",
    "wait_for_server",
]

logger = logging.getLogger(__name__)

#: Keyword arguments the ``ollama_model`` marker passes on to ``ensure_models``.
ENSURE_OPTIONS: Final = frozenset(
    {
        "insecure",
        "keep_alive",
        "load",
        "min_server_version",
        "progress",
        "pull_policy",
        "require_gpu",
        "stall_timeout",
    }
)

#: FakeOllama's progress tick in the ``fake_ollama`` fixtures: fast unit tests, same protocol.
FAKE_TICK: Final = 0.01

_TRUE: Final = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE: Final = frozenset({"0", "false", "no", "off", "n", "f"})
# The report header must never hold up a test run: it gets this long for the version request.
_HEADER_TIMEOUT: Final = (0.5, 1.5)
_LOCK_POLL: Final = 0.05
_OPTIONS_KEY = pytest.StashKey["OllamaOptions"]()


@dataclass(frozen=True, slots=True)
class _Option:
    name: str
    flag: str
    ini: str
    env: str


_HOST: Final = _Option("host", "--ollama-host", "ollama_host", "OLLAMA_HOST")
_TIMEOUT: Final = _Option("timeout", "--ollama-timeout", "ollama_timeout", "OLLAMA_READY_TIMEOUT")
_REQUIRED: Final = _Option(
    "required", "--ollama-required", "ollama_required", "OLLAMA_READY_REQUIRED"
)
_ALL_OPTIONS: Final = (_HOST, _TIMEOUT, _REQUIRED)


@dataclass(frozen=True, slots=True, kw_only=True)
class OllamaOptions:
    """The plugin's options after resolution: the settings to use and where each value came from.

    ``origins`` maps ``host``, ``timeout`` and ``required`` to the place their value came from:
    the flag (``--ollama-host``), the variable (``OLLAMA_HOST``), the ini key with its file
    (``ollama_host in pytest.ini``) or ``default``.
    """

    settings: Settings
    required: bool
    origins: Mapping[str, str]

    def describe(self) -> str:
        """Return one line: the host, where it came from, the timeout and the mode."""
        mode = "required" if self.required else "skip if absent"
        return (
            f"{self.settings.host} (from {self.origins['host']}), "
            f"timeout {self.settings.timeout:g} s, {mode}"
        )


# --------------------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``--ollama-*`` options, in their own group, and their ini twins."""
    group = parser.getgroup("ollama", "ollama_ready: an Ollama server and its models")
    group.addoption(
        _HOST.flag,
        dest=_HOST.ini,
        metavar="HOST",
        default=None,
        help="Ollama server for the ollama_* fixtures, with OLLAMA_HOST rules "
        "(env: OLLAMA_HOST; ini: ollama_host; default 127.0.0.1:11434)",
    )
    group.addoption(
        _TIMEOUT.flag,
        dest=_TIMEOUT.ini,
        metavar="SECONDS",
        default=None,
        help="one deadline for waiting for the server, and for ensuring each test's models, "
        "e.g. 120 or 5m (env: OLLAMA_READY_TIMEOUT; ini: ollama_timeout; default 600)",
    )
    group.addoption(
        _REQUIRED.flag,
        dest=_REQUIRED.ini,
        action="store_const",
        const=True,
        default=None,
        help="fail, instead of skip, the tests that need a server when none answers within "
        "the timeout (env: OLLAMA_READY_REQUIRED; ini: ollama_required; default false)",
    )
    parser.addini(_HOST.ini, "Ollama server for the ollama_* fixtures (OLLAMA_HOST rules)")
    parser.addini(_TIMEOUT.ini, "seconds to wait for the server and to ensure models")
    parser.addini(_REQUIRED.ini, "fail instead of skip when no Ollama server answers (bool)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers; check the ``--ollama-*`` values given on the command line."""
    config.addinivalue_line(
        "markers",
        "ollama_model(*names, load=False, **options): the models the ollama_model fixture "
        "ensures (pulled if missing) before the test; options: "
        + ", ".join(sorted(ENSURE_OPTIONS)),
    )
    config.addinivalue_line(
        "markers",
        "fake_ollama(**kwargs): FakeOllama arguments for the fake_ollama fixture, e.g. "
        "models=['llama3.2:1b'], version='0.5.7', vram_fraction=1.0",
    )
    if any(config.getoption(option.ini) is not None for option in _ALL_OPTIONS):
        _options(config)  # a bad value on the command line is a usage error at once


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show the Ollama host, its version and this machine's GPUs (fast; it never hangs)."""
    try:
        resolved = _options(config)
    except pytest.UsageError as exc:
        return [f"ollama: configuration error: {exc}"]
    return [
        f"ollama: {resolved.settings.host} (from {resolved.origins['host']}): "
        f"{_server_summary(resolved.settings)}",
        f"ollama: GPUs here: {_gpu_summary()}",
    ]


# --------------------------------------------------------------------------- options


def resolve_options(
    config: pytest.Config, environ: Mapping[str, str] | None = None
) -> OllamaOptions:
    """Resolve the plugin's options: command line > environment > ini file > default.

    ``environ`` defaults to ``os.environ``. The other ``OLLAMA_READY_*`` variables (API key,
    headers, TLS, pull policy, ...) reach the settings through :meth:`Settings.from_env`.

    Raises:
        pytest.UsageError: a value is invalid; the message names where it came from.
    """
    from ollama_ready.config import Settings
    from ollama_ready.errors import ConfigError, InvalidHost

    env = os.environ if environ is None else environ
    picked = {option.name: _pick(option, config, env) for option in _ALL_OPTIONS}
    host, host_origin = picked["host"]
    timeout, timeout_origin = picked["timeout"]
    required, required_origin = picked["required"]
    try:
        settings = Settings.from_env(
            env,
            host=host,
            host_source=_host_source(host_origin),
            timeout=timeout,
        )
    except ConfigError as exc:
        origin = host_origin if isinstance(exc, InvalidHost) else timeout_origin
        raise pytest.UsageError(f"ollama_ready: {origin}: {exc}") from exc
    return OllamaOptions(
        settings=settings,
        required=_flag(required, required_origin),
        origins=MappingProxyType(
            {"host": host_origin, "timeout": timeout_origin, "required": required_origin}
        ),
    )


def _options(config: pytest.Config) -> OllamaOptions:
    """Return the options of this pytest run, resolved once and kept on ``config``."""
    resolved = config.stash.get(_OPTIONS_KEY, None)
    if resolved is None:
        resolved = resolve_options(config)
        config.stash[_OPTIONS_KEY] = resolved
    return resolved


def _pick(option: _Option, config: pytest.Config, environ: Mapping[str, str]) -> tuple[Any, str]:
    given = config.getoption(option.ini)
    if given is not None:
        return given, option.flag
    from_env = _text(environ.get(option.env))
    if from_env is not None:
        return from_env, option.env
    from_ini = _text(config.getini(option.ini))
    if from_ini is not None:
        where = config.inipath.name if config.inipath is not None else "the ini file"
        return from_ini, f"{option.ini} in {where}"
    return None, "default"


def _text(value: object) -> str | None:
    # Ollama trims whitespace and quotes from its variables; an empty value counts as unset.
    if value is None:
        return None
    text = str(value).strip().strip("\"'").strip()
    return text or None


def _host_source(origin: str) -> str:
    if origin == _HOST.env:
        return "OLLAMA_HOST"
    return "default" if origin == "default" else "argument"


def _flag(value: object, origin: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise pytest.UsageError(
        f"ollama_ready: {origin}: {value!r} is not a boolean (use true/false, 1/0, yes/no, on/off)"
    )


# --------------------------------------------------------------------------- header


def _server_summary(settings: Settings) -> str:
    from ollama_ready.client import OllamaClient
    from ollama_ready.errors import OllamaConnectionError, OllamaReadyError

    try:
        with OllamaClient.from_settings(settings) as client:
            return f"Ollama {client.version(timeout=_HEADER_TIMEOUT)}"
    except OllamaConnectionError as exc:
        return f"not reachable ({_connection_problem(exc.kind)})"
    except OllamaReadyError as exc:
        return f"not usable: {_first_line(exc)}"


def _gpu_summary() -> str:
    from ollama_ready.gpu import detect_gpus

    try:
        return detect_gpus().summary()
    except Exception as exc:  # the header is informative; a detection bug must not stop a run
        logger.debug("GPU detection failed", exc_info=True)
        return f"detection failed: {exc}"


def _connection_problem(kind: str) -> str:
    return {
        "refused": "connection refused: nothing listens there",
        "timeout": "no answer in time",
        "dns": "the host name does not resolve",
        "tls": "TLS handshake failed",
        "reset": "connection reset",
    }.get(kind, kind)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def ollama_settings(pytestconfig: pytest.Config) -> Settings:
    """Return the :class:`~ollama_ready.config.Settings` the other ``ollama_*`` fixtures use.

    Override it in a ``conftest.py`` to point every fixture at another server.
    """
    return _options(pytestconfig).settings


@pytest.fixture(scope="session")
def ollama_server(ollama_settings: Settings, pytestconfig: pytest.Config) -> ReadyReport:
    """Wait once per session for the server to answer; return what the wait observed.

    Where nothing listens (connection refused, unknown host) the tests that use it are skipped
    at once, with the reason. With ``--ollama-required`` the plugin waits up to the timeout for
    the server to come up, and fails those tests if it does not.
    """
    return wait_for_server(ollama_settings, required=_options(pytestconfig).required)


@pytest.fixture
def ollama_client(ollama_settings: Settings, ollama_server: ReadyReport) -> Iterator[OllamaClient]:
    """Return an :class:`~ollama_ready.client.OllamaClient` for the server; closed afterwards."""
    from ollama_ready.client import OllamaClient

    with OllamaClient.from_settings(ollama_settings) as client:
        yield client


@pytest.fixture
def ollama_model(
    request: pytest.FixtureRequest,
    ollama_settings: Settings,
    ollama_server: ReadyReport,
    _ollama_lock_dir: Path,
) -> EnsureResult | tuple[EnsureResult, ...]:
    """Ensure the models of the test's ``ollama_model`` marker; return their results.

    One model gives its :class:`~ollama_ready.ensure.EnsureResult`, several give a tuple in
    marker order. Without a marker, the models of ``OLLAMA_READY_MODELS`` are ensured.
    """
    names, ensure_options = _marker_models(request.node, ollama_settings)
    results = ensure_locked(names, ollama_settings, _ollama_lock_dir, ensure_options)
    return results[0] if len(results) == 1 else results


@pytest.fixture
def fake_ollama(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeOllama]:
    """Start a :class:`~ollama_ready.testing.FakeOllama` for one test; stop it afterwards.

    The ``fake_ollama`` marker's keyword arguments go to its constructor (``models``,
    ``version``, ``vram_fraction``, ...; ``tick`` defaults to 0.01 s). ``OLLAMA_HOST`` points at
    it during the test, so code that reads the variable talks to it. Inject faults with its
    methods (``fail_next``, ``stall``, ``refuse_connections``, ...).
    """
    marker = request.node.get_closest_marker("fake_ollama")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        raise pytest.UsageError(
            "the fake_ollama marker takes keyword arguments only, e.g. "
            "@pytest.mark.fake_ollama(models=['llama3.2:1b'])"
        )
    with _start_fake(kwargs) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        yield server


@pytest.fixture
def fake_ollama_factory() -> Iterator[Callable[..., FakeOllama]]:
    """Return a function that starts FakeOllama servers (keyword arguments as the constructor's).

    Every server it started is stopped after the test. Use it for several hosts in one test.
    """
    with contextlib.ExitStack() as stack:

        def start(**kwargs: Any) -> FakeOllama:
            return stack.enter_context(_start_fake(kwargs))

        yield start


@pytest.fixture(scope="session")
def _ollama_lock_dir(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    base = tmp_path_factory.getbasetemp()
    # xdist workers get <shared basetemp>/popen-gwN: the parent is common to all of them.
    shared = base.parent if hasattr(pytestconfig, "workerinput") else base
    folder = shared / "ollama-ready-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --------------------------------------------------------------------------- the work


def wait_for_server(settings: Settings, *, required: bool) -> ReadyReport:
    """Wait for the server of ``settings``; skip (or, if ``required``, fail) when it is absent.

    The wait uses ``OLLAMA_READY_WAIT`` when set (a strategy spec), else polls
    ``GET /api/version`` within ``settings.timeout``.
    """
    from ollama_ready.client import OllamaClient
    from ollama_ready.clock import Deadline
    from ollama_ready.errors import OllamaConnectionError, OllamaReadyError
    from ollama_ready.readiness import Poll, ReadyLevel, ReadyReport, Strategy, strategy_from_spec

    deadline = Deadline(settings.timeout)
    strategy: Strategy = (
        strategy_from_spec(settings.wait)
        if settings.wait
        else Poll(path="/api/version", method="GET")
    )
    with OllamaClient.from_settings(settings) as client:
        if not required:
            try:
                version = client.version(timeout=_probe_timeout(settings, deadline))
            except OllamaConnectionError as exc:
                if exc.kind in ("refused", "dns"):
                    pytest.skip(_absent(settings, _first_line(exc), required=False))
            except OllamaReadyError:
                pass  # something answers: give it the deadline to become ready
            else:
                return ReadyReport(
                    host=client.base_url,
                    level=ReadyLevel.VERSION,
                    version=version,
                    attempts=1,
                    waited=deadline.elapsed(),
                    strategy="GET /api/version",
                )
        try:
            return strategy(client, deadline)
        except OllamaReadyError as exc:
            message = _absent(settings, _first_line(exc), required=required, hint=exc.hint)
            if required:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)


def ensure_locked(
    names: Sequence[str],
    settings: Settings,
    lock_dir: Path,
    ensure_options: Mapping[str, Any],
) -> tuple[EnsureResult, ...]:
    """Ensure ``names`` while holding one inter-process lock per model, under one deadline.

    pytest-xdist workers (and concurrent pytest runs sharing ``lock_dir``) thus pull a model
    once: the first takes the lock and pulls, the others wait, then find the model present.
    A failure fails the test with the error's message and hint.
    """
    from ollama_ready.clock import Deadline
    from ollama_ready.ensure import ensure_model, ensure_models
    from ollama_ready.errors import OllamaReadyError

    deadline = Deadline(settings.timeout)
    paths = sorted({_lock_path(lock_dir, settings.host, name) for name in names})
    kwargs = _ensure_kwargs(settings, ensure_options)
    try:
        with contextlib.ExitStack() as stack:
            for path in paths:
                stack.enter_context(_file_lock(path, deadline))
            environ = _ensure_environ(settings)
            if len(names) == 1:
                return (ensure_model(names[0], deadline=deadline, environ=environ, **kwargs),)
            return ensure_models(list(names), deadline=deadline, environ=environ, **kwargs)
    except OllamaReadyError as exc:
        failure = exc
    hint = f"\nhint: {failure.hint}" if failure.hint else ""
    pytest.fail(f"ollama_model: {failure}{hint}", pytrace=False)


def _absent(settings: Settings, reason: str, *, required: bool, hint: str | None = None) -> str:
    advice = (
        "start it, or point --ollama-host / OLLAMA_HOST at it"
        if required
        else "start one (ollama serve), point --ollama-host / OLLAMA_HOST at it, or pass "
        "--ollama-required to fail instead of skipping"
    )
    extra = f"; {hint}" if hint else ""
    return f"no Ollama server at {settings.host}: {reason}{extra}; {advice}"


def _probe_timeout(settings: Settings, deadline: Deadline) -> tuple[float, float]:
    remaining = max(deadline.remaining() or 0.0, 0.001)
    return (min(settings.connect_timeout, remaining), min(settings.read_timeout, remaining))


def _marker_models(node: pytest.Item, settings: Settings) -> tuple[list[str], dict[str, Any]]:
    names: list[str] = []
    kwargs: dict[str, Any] = {}
    # iter_markers yields the closest marker first; apply the outer ones first so it wins.
    for marker in reversed(list(node.iter_markers("ollama_model"))):
        names.extend(str(name) for name in marker.args if str(name) not in names)
        kwargs.update(marker.kwargs)
    unknown = sorted(set(kwargs) - ENSURE_OPTIONS)
    if unknown:
        raise pytest.UsageError(
            f"ollama_model marker on {node.nodeid}: unknown option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(ENSURE_OPTIONS))}"
        )
    if not names:
        names = list(settings.models)
    if not names:
        raise pytest.UsageError(
            f"{node.nodeid} uses the ollama_model fixture but names no model: add "
            "@pytest.mark.ollama_model('llama3.2:1b'), or set OLLAMA_READY_MODELS"
        )
    return names, kwargs


def _ensure_kwargs(settings: Settings, marker: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "timeout": settings.timeout,
        "wait": settings.wait,
        "pull_policy": settings.pull_policy,
        "stall_timeout": settings.stall_timeout,
        "insecure": settings.insecure,
        "load": settings.load,
        "keep_alive": settings.keep_alive,
        "require_gpu": settings.require_gpu,
        "min_server_version": settings.min_server_version,
        "progress": settings.progress,
    }
    kwargs.update(marker)
    return kwargs


def _ensure_environ(settings: Settings) -> dict[str, str]:
    """Express what ``ensure_models`` takes no argument for as the variables it reads."""
    environ = {
        "OLLAMA_HOST": settings.host,
        "OLLAMA_READY_CONNECT_TIMEOUT": repr(settings.connect_timeout),
        "OLLAMA_READY_READ_TIMEOUT": repr(settings.read_timeout),
    }
    if settings.api_key:
        environ["OLLAMA_API_KEY"] = settings.api_key
    if settings.headers:
        environ["OLLAMA_READY_HEADERS"] = "; ".join(
            f"{name}: {value}" for name, value in settings.headers.items()
        )
    if isinstance(settings.verify, str):
        environ["OLLAMA_READY_CA_BUNDLE"] = settings.verify
    else:
        environ["OLLAMA_READY_VERIFY"] = "true" if settings.verify else "false"
    return environ


def _lock_path(folder: Path, host: str, model: str) -> Path:
    from ollama_ready.names import ModelName

    key = f"{host}\n{ModelName.parse(model).full}".lower()
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"


@contextlib.contextmanager
def _file_lock(path: Path, deadline: Deadline) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` across processes; wait for it within ``deadline``."""
    from ollama_ready.errors import DeadlineExceeded

    with path.open("a+") as handle:
        waited = False
        while not _try_lock(handle):
            if deadline.expired:
                raise DeadlineExceeded(
                    f"another pytest process held the model lock {path} until the deadline",
                    phase="wait",
                    hint="raise --ollama-timeout, or check for a stuck pull in another worker",
                )
            if not waited:
                logger.info("waiting for another pytest process to ensure the model (%s)", path)
                waited = True
            deadline.sleep(_LOCK_POLL)
        try:
            yield
        finally:
            _unlock(handle)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle: TextIO) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle: TextIO) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: TextIO) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(handle: TextIO) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _start_fake(kwargs: Mapping[str, Any]) -> Iterator[FakeOllama]:
    from ollama_ready.testing import FakeOllama

    with FakeOllama(**{"tick": FAKE_TICK, **kwargs}) as server:
        yield server
