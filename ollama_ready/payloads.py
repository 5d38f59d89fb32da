"""Runner payloads: extract them into a private temp dir, keep them there, clean up after.

Ollama (era B, v0.3.11 to v0.5.1) carried its runners as payloads laid out as
``<os>/<arch>/<runner>/<file>[.gz]`` and extracted them at start-up into
``$OLLAMA_TMPDIR/ollama<random>/runners/<runner>/<file>``, next to an ``ollama.pid`` file that lets
a later process recognise and remove the dirs of dead processes. :class:`RunnerPayloads` does the
same, and is stricter than Ollama where Ollama could leave a broken dir behind:

- every file is written under a temporary name and renamed into place, so a reader never sees a
  half-written runner, and a failed extraction removes exactly what it wrote;
- a later :meth:`RunnerPayloads.refresh` only ``stat``\\ s the files and re-extracts the missing
  ones (the defence against tmp cleaners), without reading any payload;
- hostile payload trees (``..``, absolute names, symbolic links, devices, FIFOs) are refused;
- :func:`cleanup_stale_dirs` removes a dir only when it is sure its process is gone, and never
  follows a symbolic link.
"""

from __future__ import annotations

import errno
import functools
import gzip
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final, Literal, TypeAlias, cast

from ollama_ready.errors import PayloadError
from ollama_ready.runners import available_runners, locate_runners

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = [
    "CleanupReport",
    "CopyStream",
    "PayloadSource",
    "RunnerPayloads",
    "StaleDir",
    "cleanup_stale_dirs",
    "resolve_tmp_root",
]

logger = logging.getLogger(__name__)

PayloadSource: TypeAlias = "str | os.PathLike[str] | Traversable"
"""A payload tree: a directory path, or an :mod:`importlib.resources` ``Traversable``."""

CopyStream = Callable[[BinaryIO, BinaryIO], object]
"""Copy a decompressed payload stream into its destination file."""

PID_FILE: Final = "ollama.pid"
RUNNERS: Final = "runners"
DIR_PREFIX: Final = "ollama"
_TMPDIR_VAR: Final = "OLLAMA_TMPDIR"
_CHUNK: Final = 1 << 20
_DEPTH: Final = 4  # <os>/<arch>/<runner>/<file>
_DIR_MODE: Final = 0o700
_EXEC_MODE: Final = 0o755
_PID_RE: Final = re.compile(r"[0-9]{1,10}")
_MAX_PID: Final = 2**31 - 1
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
_NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOT_ALLOWED: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_EXEC_HINT: Final = f"set {_TMPDIR_VAR} to a writable directory on a filesystem mounted with exec"


def _copy_stream(source: BinaryIO, destination: BinaryIO) -> None:
    shutil.copyfileobj(source, destination, _CHUNK)


def resolve_tmp_root(
    tmp_root: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Path:
    """Return ``tmp_root``, else ``$OLLAMA_TMPDIR``, else the system temp dir."""
    if tmp_root is not None:
        return Path(tmp_root)
    env = os.environ if environ is None else environ
    return Path(env.get(_TMPDIR_VAR) or tempfile.gettempdir())


# --------------------------------------------------------------------------- stale dirs


@dataclass(frozen=True, slots=True)
class StaleDir:
    """One ``ollama*`` dir looked at by :func:`cleanup_stale_dirs`, and why it went or stayed."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What :func:`cleanup_stale_dirs` removed and what it kept, each with its reason."""

    removed: tuple[StaleDir, ...] = ()
    kept: tuple[StaleDir, ...] = ()


class _Keep(Exception):
    """A dir must be kept; the message says why."""


def cleanup_stale_dirs(
    tmp_root: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> CleanupReport:
    """Remove the ``ollama*`` dirs directly under ``tmp_root`` whose process is gone.

    A dir is removed only if it is a real directory (not a symbolic link) owned by this user,
    holds a regular ``ollama.pid`` naming a process that no longer exists, and holds nothing but
    that file and ``runners/``. Anything doubtful keeps the dir: an unreadable or invalid pid file,
    a live process (which may be an unrelated one that reused the pid), a process of another user
    (EPERM), a platform where liveness cannot be probed safely. Links are never followed.

    Args:
        tmp_root: The dir to scan; None means ``$OLLAMA_TMPDIR`` or the system temp dir.
        environ: Supplies ``OLLAMA_TMPDIR``; None means ``os.environ``.
    """
    root = resolve_tmp_root(tmp_root, environ=environ)
    try:
        with os.scandir(root) as scan:
            entries = sorted(
                (e for e in scan if e.name.startswith(DIR_PREFIX)), key=lambda e: e.name
            )
    except OSError as exc:
        logger.warning("cannot scan %s for stale runner dirs: %s", root, exc)
        return CleanupReport()
    removed: list[StaleDir] = []
    kept: list[StaleDir] = []
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            kept.append(StaleDir(path, "a symbolic link; never followed"))
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        try:
            reason = _judge_stale(path)
            _remove_tree(path)
        except _Keep as keep:
            logger.debug("keeping %s: %s", path, keep)
            kept.append(StaleDir(path, str(keep)))
            continue
        logger.info("removed stale runner dir %s: %s", path, reason)
        removed.append(StaleDir(path, reason))
    return CleanupReport(removed=tuple(removed), kept=tuple(kept))


def _judge_stale(path: Path) -> str:
    """Return why ``path`` is stale, or raise :class:`_Keep`."""
    if os.name != "posix":
        raise _Keep("process liveness is only probed on POSIX systems")
    try:
        dir_fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        raise _Keep(f"cannot open: {exc.strerror}") from None
    try:
        owner = os.fstat(dir_fd).st_uid
        if owner != os.geteuid():
            raise _Keep(f"owned by uid {owner}, not by this user")
        pid = _parse_pid(_read_pid_file(dir_fd))
        if pid == os.getpid():
            raise _Keep("the dir of this process")
        state, why = _probe_pid(pid)
        if state != "dead":
            raise _Keep(why)
        extra = sorted(set(os.listdir(dir_fd)) - {PID_FILE, RUNNERS})
        if extra:
            raise _Keep(f"{why}, but the dir holds unexpected entries: {', '.join(extra)}")
        return why
    finally:
        os.close(dir_fd)


def _read_pid_file(dir_fd: int) -> bytes:
    try:
        fd = os.open(PID_FILE, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise _Keep(f"no {PID_FILE}: not an Ollama runtime dir") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Keep(f"{PID_FILE} is a symbolic link; never followed") from None
        raise _Keep(f"cannot read {PID_FILE}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Keep(f"{PID_FILE} is not a regular file")
        return os.read(fd, 64)
    except OSError as exc:
        raise _Keep(f"cannot read {PID_FILE}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _parse_pid(raw: bytes) -> int:
    text = raw.decode("ascii", "replace").strip()
    if not _PID_RE.fullmatch(text) or not 0 < int(text) <= _MAX_PID:
        raise _Keep(f"invalid pid {text[:20]!r} in {PID_FILE}")
    return int(text)


def _probe_pid(
    pid: int, kill: Callable[[int, int], None] = os.kill
) -> tuple[Literal["dead", "alive", "unknown"], str]:
    """Say whether ``pid`` is gone, using signal 0 (which delivers nothing)."""
    try:
        kill(pid, 0)
    except ProcessLookupError:
        return "dead", f"process {pid} is gone"
    except PermissionError:
        return "alive", f"process {pid} exists and belongs to another user (EPERM)"
    except OSError as exc:
        return "unknown", f"cannot probe process {pid}: {exc.strerror}"
    return "alive", f"process {pid} is running (or another process reused its pid)"


def _remove_tree(path: Path) -> None:
    if not shutil.rmtree.avoids_symlink_attacks:
        raise _Keep("this platform's rmtree is not safe against symbolic link attacks")
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise _Keep(f"removal failed, dir may be partly removed: {exc}") from None


# --------------------------------------------------------------------------- payload tree


@dataclass(frozen=True, slots=True)
class _Payload:
    source: Traversable
    relpath: str  # as in the payload tree, for messages: linux/amd64/cpu/ollama_llama_server.gz
    runner: str
    name: str  # the destination base name, ``.gz`` dropped

    @property
    def compressed(self) -> bool:
        return self.relpath.endswith(".gz")


@dataclass(frozen=True, slots=True)
class _Written:
    path: Path
    device: int
    inode: int
    size: int


def _as_traversable(payloads: PayloadSource) -> Traversable:
    if isinstance(payloads, (str, os.PathLike)):
        return Path(payloads)
    return payloads


def _kind(entry: Traversable, relpath: str) -> Literal["dir", "file", "other"]:
    """Classify ``entry`` without following links; refuse a link outright."""
    if isinstance(entry, Path):
        try:
            mode = entry.lstat().st_mode
        except OSError as exc:
            raise PayloadError(f"cannot inspect runner payload {relpath}: {exc.strerror}") from exc
        if stat.S_ISLNK(mode):
            raise PayloadError(f"refusing runner payload {relpath}: it is a symbolic link")
        if stat.S_ISDIR(mode):
            return "dir"
        return "file" if stat.S_ISREG(mode) else "other"
    if entry.is_dir():
        return "dir"
    return "file" if entry.is_file() else "other"


def _check_name(name: str, relpath: str) -> None:
    if (
        name in ("", ".", "..")
        or any(ch in name for ch in "/\\\0")
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).anchor
    ):
        raise PayloadError(
            f"refusing runner payload {relpath!r}: {name!r} is not a plain file name"
        )


def _children(parent: Traversable, relpath: str) -> Iterator[tuple[Traversable, str]]:
    try:
        children = sorted(parent.iterdir(), key=lambda child: child.name)
    except OSError as exc:
        raise PayloadError(f"cannot list runner payloads in {relpath or '.'}: {exc}") from exc
    for child in children:
        child_relpath = f"{relpath}/{child.name}" if relpath else child.name
        _check_name(child.name, child_relpath)
        yield child, child_relpath


def _find_payloads(root: Traversable, platform: tuple[str, str] | None) -> tuple[_Payload, ...]:
    """Return every ``<os>/<arch>/<runner>/<file>`` payload (Ollama's ``*/*/*/*``), validated."""
    if not root.is_dir():
        return ()
    found: list[_Payload] = []
    _walk(root, "", 1, platform, found)
    if len(found) == 1 and "placeholder" in found[0].relpath:
        return ()
    destinations: dict[tuple[str, str], str] = {}
    for payload in found:
        other = destinations.setdefault((payload.runner, payload.name), payload.relpath)
        if other != payload.relpath:
            raise PayloadError(
                f"runner payloads {other} and {payload.relpath} both extract to "
                f"{RUNNERS}/{payload.runner}/{payload.name}"
            )
    return tuple(found)


def _walk(
    parent: Traversable,
    relpath: str,
    depth: int,
    platform: tuple[str, str] | None,
    found: list[_Payload],
) -> None:
    for child, child_relpath in _children(parent, relpath):
        if platform is not None and depth <= 2 and child.name != platform[depth - 1]:
            continue
        kind = _kind(child, child_relpath)
        if depth < _DEPTH:
            if kind == "dir":
                _walk(child, child_relpath, depth + 1, platform, found)
            continue
        if kind != "file":
            raise PayloadError(f"refusing runner payload {child_relpath}: not a regular file")
        name = child.name.removesuffix(".gz")
        _check_name(name, child_relpath)
        found.append(_Payload(child, child_relpath, parent.name, name))


@contextmanager
def _open_payload(payload: _Payload) -> Iterator[BinaryIO]:
    with ExitStack() as stack:
        source = payload.source
        if isinstance(source, Path):
            # Re-checked on the open descriptor: the tree could change after it was walked.
            fd = os.open(source, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
            raw = stack.enter_context(os.fdopen(fd, "rb"))
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PayloadError(f"refusing runner payload {payload.relpath}: not a regular file")
            stream: BinaryIO = raw
        else:
            stream = cast(BinaryIO, stack.enter_context(source.open("rb")))
        if payload.compressed:
            stream = cast(BinaryIO, stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb")))
        yield stream


class _Cancelled(Exception):
    """Another payload failed; this one stops early."""


class _CancellableReader:
    """A reader that stops between chunks once extraction is cancelled."""

    def __init__(self, stream: BinaryIO, cancel: threading.Event) -> None:
        self._stream = stream
        self._cancel = cancel

    def read(self, size: int = -1, /) -> bytes:
        if self._cancel.is_set():
            raise _Cancelled
        return self._stream.read(size)


# --------------------------------------------------------------------------- extraction


@dataclass(slots=True)
class _State:
    runners_dir: Path | None = None
    private_dir: Path | None = None  # created by us, removed by cleanup()
    located: bool = False  # no payloads: runners_dir was located, not extracted
    sizes: dict[Path, int] = field(default_factory=dict)  # what an intact file's size is


class RunnerPayloads:
    """Runner payloads extracted into a private temp dir, kept complete, removed on cleanup.

    The first :meth:`refresh` removes stale dirs of dead processes
    (:func:`cleanup_stale_dirs`), creates ``<tmp_root>/ollama<random>/`` (mode 0700) holding
    ``ollama.pid``, and extracts every payload in parallel into ``runners/<runner>/<file>``
    (``.gz`` decompressed as a stream, mode 0755). Later calls re-extract only files that have
    disappeared or changed size, touching nothing else; if the whole dir has gone, a new one is
    made. Without payloads the runners dir is located instead
    (:func:`~ollama_ready.runners.locate_runners`).

    Safe to share between threads. Processes that pass the same ``runners_dir`` can refresh it
    concurrently: each file appears atomically.

    Args:
        payloads: ``<os>/<arch>/<runner>/<file>[.gz]`` as a directory or a ``Traversable``
            (``importlib.resources.files(package) / "payloads"``).
        tmp_root: Where the private dir is made; None means ``$OLLAMA_TMPDIR``, else the system
            temp dir.
        runners_dir: Extract into this dir instead (a persistent or shared cache). It must be a
            real directory owned by this user and not writable by others. No pid file is
            written there and :meth:`cleanup` leaves it in place.
        platform: Only extract the ``<os>/<arch>`` subtree of this ``(goos, goarch)``; None
            extracts every one (Ollama's embedded trees hold one platform).
        environ: Supplies ``OLLAMA_TMPDIR``; None means ``os.environ``.
        max_workers: Extraction threads; None means one per CPU (at least 4).
        locate: Finds the runners dir when there are no payloads; None means
            :func:`~ollama_ready.runners.locate_runners` (``ollama`` on ``environ``'s ``PATH``).
        copy_stream: Copies a decompressed payload into its destination file; a seam for
            instrumentation and tests.
    """

    def __init__(
        self,
        payloads: PayloadSource,
        tmp_root: str | os.PathLike[str] | None = None,
        *,
        runners_dir: str | os.PathLike[str] | None = None,
        platform: tuple[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        max_workers: int | None = None,
        locate: Callable[[], Path] | None = None,
        copy_stream: CopyStream | None = None,
    ) -> None:
        self._source = _as_traversable(payloads)
        self._tmp_root = resolve_tmp_root(tmp_root, environ=environ)
        self._shared_dir = None if runners_dir is None else Path(runners_dir)
        self._platform = platform
        self._max_workers = max_workers or max(4, os.cpu_count() or 1)
        self._locate = locate or functools.partial(locate_runners, environ=environ)
        self._copy = copy_stream or _copy_stream
        self._lock = threading.Lock()
        self._plan: tuple[_Payload, ...] | None = None
        self._state = _State()
        self.last_cleanup: CleanupReport | None = None
        """What the stale-dir cleanup of the latest first refresh did."""

    def __repr__(self) -> str:
        return f"RunnerPayloads({self._source!r}, runners_dir={self._state.runners_dir!r})"

    def __enter__(self) -> RunnerPayloads:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()

    @property
    def tmp_root(self) -> Path:
        """The dir under which the private ``ollama*`` dir is made."""
        return self._tmp_root

    @property
    def runners_dir(self) -> Path | None:
        """The runners dir after a successful :meth:`refresh`, else None."""
        return self._state.runners_dir

    def refresh(self) -> Path:
        """Make sure every runner is extracted and return the runners dir.

        Raises:
            PayloadError: A payload is hostile, or could not be extracted; the message names the
                file and the cause, and nothing half-written is left behind.
        """
        with self._lock:
            state = self._state
            if state.located and state.runners_dir is not None:
                return state.runners_dir
            if state.private_dir is not None and not _is_dir(state.private_dir):
                logger.warning("runner dir %s disappeared, extracting again", state.private_dir)
                self._state = _State()
            if self._state.runners_dir is None:
                return self._first_refresh()
            return self._refresh_missing(self._state.runners_dir)

    def cleanup(self) -> None:
        """Remove the private dir (not a ``runners_dir`` given by the caller) and start over."""
        with self._lock:
            private = self._state.private_dir
            self._state = _State()
            if private is None:
                return
            logger.debug("cleaning up %s", private)
            try:
                shutil.rmtree(private)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("failed to clean up %s: %s", private, exc)

    def _payloads(self) -> tuple[_Payload, ...]:
        if self._plan is None:
            self._plan = _find_payloads(self._source, self._platform)
        return self._plan

    def _first_refresh(self) -> Path:
        payloads = self._payloads()
        if not payloads:
            runners_dir = self._locate()
            self._state = _State(runners_dir=runners_dir, located=True)
            _log_runners(runners_dir)
            return runners_dir
        if self._shared_dir is not None:
            _prepare_shared_dir(self._shared_dir)
            self._refresh_missing(self._shared_dir)
            self._state.runners_dir = self._shared_dir
        else:
            self._state = self._extract_private(payloads)
        _log_runners(self._state.runners_dir)
        return cast(Path, self._state.runners_dir)

    def _extract_private(self, payloads: tuple[_Payload, ...]) -> _State:
        self.last_cleanup = cleanup_stale_dirs(self._tmp_root)
        try:
            private = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=self._tmp_root))
        except OSError as exc:
            raise _error(f"cannot create a private dir under {self._tmp_root}: {exc}", exc) from exc
        try:
            _write_pid_file(private)
            if _mounted_noexec(private):
                raise PayloadError(
                    f"{private} is on a filesystem mounted noexec: runners extracted there "
                    "could not be executed",
                    hint=_EXEC_HINT,
                )
            state = _State(runners_dir=private / RUNNERS, private_dir=private)
            logger.info("extracting embedded files to %s", state.runners_dir)
            self._state = state
            self._extract(payloads, private / RUNNERS)
        except BaseException:
            self._state = _State()
            shutil.rmtree(private, ignore_errors=True)
            raise
        return state

    def _refresh_missing(self, runners_dir: Path) -> Path:
        state = self._state
        if state.private_dir is not None and not os.path.lexists(state.private_dir / PID_FILE):
            _write_pid_file(state.private_dir)
        sizes = state.sizes
        missing = []
        for payload in self._payloads():
            path = runners_dir / payload.runner / payload.name
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                missing.append(payload)
                continue
            except OSError as exc:
                raise _error(f"cannot stat runner file {path}: {exc}", exc) from exc
            if (
                not stat.S_ISREG(info.st_mode)
                or sizes.setdefault(path, info.st_size) != info.st_size
            ):
                missing.append(payload)
        if missing:
            logger.info(
                "re-extracting %d missing runner file(s) into %s", len(missing), runners_dir
            )
            self._extract(tuple(missing), runners_dir)
        return runners_dir

    def _extract(self, payloads: tuple[_Payload, ...], runners_dir: Path) -> None:
        """Extract ``payloads``; on failure remove what this call wrote, then raise."""
        created = _make_dirs(runners_dir, sorted({p.runner for p in payloads}))
        written: list[_Written] = []
        failure: tuple[_Payload, BaseException] | None = None
        cancel = threading.Event()
        try:
            workers = min(len(payloads), self._max_workers)
            with ThreadPoolExecutor(workers, thread_name_prefix="ollama-ready-payload") as pool:
                futures = {
                    pool.submit(self._extract_one, p, runners_dir, cancel, written): p
                    for p in payloads
                }
                try:
                    for future in as_completed(futures):
                        exc = None if future.cancelled() else future.exception()
                        if exc is not None and not isinstance(exc, _Cancelled) and failure is None:
                            failure = (futures[future], exc)
                            cancel.set()
                            for other in futures:
                                other.cancel()
                except BaseException:
                    cancel.set()
                    for other in futures:
                        other.cancel()
                    raise
            if failure is not None:
                raise _extraction_error(*failure, runners_dir)
        except BaseException:
            _discard(written, created)
            for item in written:
                self._state.sizes.pop(item.path, None)
            raise
        for item in written:
            self._state.sizes[item.path] = item.size

    def _extract_one(
        self,
        payload: _Payload,
        runners_dir: Path,
        cancel: threading.Event,
        written: list[_Written],
    ) -> None:
        if cancel.is_set():
            raise _Cancelled
        destination = runners_dir / payload.runner / payload.name
        fd, temporary = tempfile.mkstemp(
            prefix=f".{payload.name}.", suffix=".partial", dir=destination.parent
        )
        try:
            with os.fdopen(fd, "wb") as out, _open_payload(payload) as source:
                if hasattr(os, "fchmod"):
                    os.fchmod(out.fileno(), _EXEC_MODE)
                self._copy(cast(BinaryIO, _CancellableReader(source, cancel)), cast(BinaryIO, out))
                out.flush()
                info = os.fstat(out.fileno())
            if not hasattr(os, "fchmod"):
                os.chmod(temporary, _EXEC_MODE)
            os.replace(temporary, destination)
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary)
            raise
        # list.append is atomic; the main thread reads the list only after the pool has stopped.
        written.append(_Written(destination, info.st_dev, info.st_ino, info.st_size))


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _make_dirs(runners_dir: Path, runners: list[str]) -> list[Path]:
    """Create ``runners_dir`` and its runner dirs as needed; return those created, deepest last."""
    created: list[Path] = []
    for path in (runners_dir, *(runners_dir / r for r in runners)):
        try:
            os.mkdir(path, _DIR_MODE)
            created.append(path)
        except FileExistsError:
            if not _is_dir(path):
                raise PayloadError(
                    f"cannot extract runners: {path} exists and is not a directory"
                ) from None
        except OSError as exc:
            _discard([], created)
            raise _error(f"cannot create {path}: {exc}", exc) from exc
    return created


def _discard(written: list[_Written], created: list[Path]) -> None:
    """Remove the files and dirs this extraction made, and nothing that someone else replaced."""
    for item in written:
        with suppress(OSError):
            info = os.lstat(item.path)
            if (info.st_dev, info.st_ino) == (item.device, item.inode):
                os.unlink(item.path)
    for path in reversed(created):
        with suppress(OSError):
            os.rmdir(path)


def _prepare_shared_dir(path: Path) -> None:
    try:
        os.makedirs(path, _DIR_MODE, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise _error(f"cannot create runners dir {path}: {exc}", exc) from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PayloadError(f"refusing runners dir {path}: not a real directory")
    if os.name == "posix":
        if info.st_uid != os.geteuid():
            raise PayloadError(f"refusing runners dir {path}: owned by uid {info.st_uid}")
        if info.st_mode & 0o022:
            raise PayloadError(
                f"refusing runners dir {path}: writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):o})"
            )
    if _mounted_noexec(path):
        raise PayloadError(
            f"{path} is on a filesystem mounted noexec: runners there could not be executed",
            hint="use a runners dir on a filesystem mounted with exec",
        )


def _write_pid_file(private: Path) -> None:
    # Lets a later process see this dir is stale once we are gone; Ollama only warns on failure.
    try:
        fd = os.open(
            private / PID_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644
        )
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(str(os.getpid()))
    except OSError as exc:
        logger.warning("failed to write pid file %s: %s", private / PID_FILE, exc)


def _mounted_noexec(path: Path) -> bool:
    flag = getattr(os, "ST_NOEXEC", 0)
    if not flag or not hasattr(os, "statvfs"):
        return False
    try:
        return bool(os.statvfs(path).f_flag & flag)
    except OSError:
        return False


def _log_runners(runners_dir: Path | None) -> None:
    logger.info("Dynamic LLM libraries: %s", ", ".join(available_runners(runners_dir)) or "none")


def _hint_for(exc: BaseException) -> str | None:
    code = exc.errno if isinstance(exc, OSError) else None
    if code in _NO_SPACE:
        return f"free some space, or set {_TMPDIR_VAR} to a directory on a filesystem with room"
    if code in _NOT_ALLOWED:
        return _EXEC_HINT
    return None


def _error(message: str, cause: BaseException) -> PayloadError:
    error = PayloadError(message, hint=_hint_for(cause))
    if isinstance(cause, OSError):
        error.errno = cause.errno
    return error


def _extraction_error(payload: _Payload, cause: BaseException, runners_dir: Path) -> PayloadError:
    if isinstance(cause, PayloadError):
        return cause
    what = str(cause) if isinstance(cause, OSError) else f"{type(cause).__name__}: {cause}"
    destination = runners_dir / payload.runner / payload.name
    error = _error(
        f"cannot extract runner payload {payload.relpath} to {destination}: {what}", cause
    )
    error.__cause__ = cause
    return error
