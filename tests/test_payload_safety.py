"""Filesystem safety: hostile payload trees are refused; stale-dir cleanup is conservative."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Union

import pytest

from ollama_ready import payloads as payloads_module
from ollama_ready.errors import PayloadError
from ollama_ready.payloads import CleanupReport, RunnerPayloads, cleanup_stale_dirs

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:
    from importlib.abc import Traversable

REPO_ROOT = Path(__file__).resolve().parents[1]
POSIX = os.name == "posix"
Tree = dict[str, Union["Tree", bytes, None]]


class Node(Traversable):
    """An in-memory Traversable whose names are whatever a hostile archive says they are.

    A dict is a directory, bytes a regular file, None something that is neither (a device).
    """

    def __init__(self, name: str, content: Tree | bytes | None) -> None:
        self._name = name
        self._content = content

    @property
    def name(self) -> str:
        return self._name

    def iterdir(self) -> Iterator[Node]:
        assert isinstance(self._content, dict)
        for name, content in self._content.items():
            yield Node(name, content)

    def is_dir(self) -> bool:
        return isinstance(self._content, dict)

    def is_file(self) -> bool:
        return isinstance(self._content, bytes)

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        assert isinstance(self._content, bytes)
        return io.BytesIO(self._content)

    def read_bytes(self) -> bytes:
        assert isinstance(self._content, bytes)
        return self._content

    def read_text(self, encoding: str | None = None) -> str:
        return self.read_bytes().decode(encoding or "utf-8")

    def joinpath(self, *descendants: str) -> Node:
        raise NotImplementedError

    def __truediv__(self, child: str) -> Node:
        return self.joinpath(child)


def runner_tree(runner: str, files: Tree) -> Node:
    return Node("payloads", {"linux": {"amd64": {runner: files}}})


@pytest.fixture
def tmp_root(tmp_path: Path) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    return root


def assert_nothing_written(tmp_path: Path, tmp_root: Path, before: set[Path]) -> None:
    assert list(tmp_root.iterdir()) == []
    assert set(tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------- hostile names


HOSTILE: list[tuple[str, Node]] = [
    ("dotdot-runner", runner_tree("..", {"ollama_llama_server": b"x"})),
    ("dotdot-os", Node("payloads", {"..": {"amd64": {"cpu": {"ollama_llama_server": b"x"}}}})),
    ("dotdot-arch", Node("payloads", {"linux": {"..": {"cpu": {"ollama_llama_server": b"x"}}}})),
    ("traversal-file", runner_tree("cpu", {"../../../escape": b"x"})),
    ("absolute-file", runner_tree("cpu", {"/tmp/escape": b"x"})),
    ("absolute-runner", Node("payloads", {"linux": {"amd64": {"/tmp/x": {"f": b"x"}}}})),
    ("backslash", runner_tree("cpu", {"..\\escape": b"x"})),
    ("windows-drive", runner_tree("cpu", {"C:escape": b"x"})),
    ("nul-byte", runner_tree("cpu", {"ollama\0server": b"x"})),
    ("dot", runner_tree("cpu", {".": b"x"})),
    ("empty", runner_tree("cpu", {"": b"x"})),
    ("dotdot-after-gz", runner_tree("cpu", {"...gz": b"x"})),
    ("empty-after-gz", runner_tree("cpu", {".gz": b"x"})),
    ("device-like", runner_tree("cpu", {"ollama_llama_server": None})),
    ("dir-at-file-depth", runner_tree("cpu", {"sub": {"ollama_llama_server": b"x"}})),
]


@pytest.mark.parametrize("source", [source for _, source in HOSTILE], ids=[i for i, _ in HOSTILE])
def test_hostile_payload_trees_are_refused(source: Node, tmp_path: Path, tmp_root: Path) -> None:
    before = set(tmp_path.rglob("*"))
    payloads = RunnerPayloads(source, tmp_root)
    with pytest.raises(PayloadError, match="refusing runner payload"):
        payloads.refresh()
    assert payloads.runners_dir is None
    assert_nothing_written(tmp_path, tmp_root, before)
    assert not Path("/tmp/escape").exists()


def test_a_clean_in_memory_tree_is_accepted(tmp_root: Path) -> None:
    runners_dir = RunnerPayloads(
        runner_tree("cpu", {"ollama_llama_server": b"ok"}), tmp_root
    ).refresh()
    assert (runners_dir / "cpu" / "ollama_llama_server").read_bytes() == b"ok"


# --------------------------------------------------------------------------- links, special files


def build(root: Path, files: dict[str, bytes]) -> Path:
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(b"SECRET")
    return path


def test_a_symlinked_payload_file_is_refused(tmp_path: Path, tmp_root: Path, secret: Path) -> None:
    tree = build(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server": b"ok"})
    (tree / "linux/amd64/cpu/libevil.so").symlink_to(secret)
    with pytest.raises(PayloadError, match=r"linux/amd64/cpu/libevil\.so: it is a symbolic link"):
        RunnerPayloads(tree, tmp_root).refresh()
    assert list(tmp_root.iterdir()) == []


def test_a_symlink_to_a_file_inside_the_tree_is_refused_too(tmp_path: Path, tmp_root: Path) -> None:
    tree = build(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server": b"ok"})
    (tree / "linux/amd64/cpu/alias").symlink_to(tree / "linux/amd64/cpu/ollama_llama_server")
    with pytest.raises(PayloadError, match="symbolic link"):
        RunnerPayloads(tree, tmp_root).refresh()


@pytest.mark.parametrize("level", ["linux", "linux/amd64", "linux/amd64/cpu"])
def test_a_symlinked_directory_is_refused(tmp_path: Path, tmp_root: Path, level: str) -> None:
    elsewhere = build(tmp_path / "elsewhere", {"linux/amd64/cpu/ollama_llama_server": b"x"})
    tree = tmp_path / "p"
    link = tree / level
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere / level)
    with pytest.raises(PayloadError, match=f"{level}: it is a symbolic link"):
        RunnerPayloads(tree, tmp_root).refresh()
    assert list(tmp_root.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_payload_is_refused_without_blocking(tmp_path: Path, tmp_root: Path) -> None:
    tree = build(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server": b"ok"})
    os.mkfifo(tree / "linux/amd64/cpu/libfifo.so")
    with pytest.raises(PayloadError, match=r"libfifo\.so: not a regular file"):
        RunnerPayloads(tree, tmp_root).refresh()
    assert list(tmp_root.iterdir()) == []


@pytest.mark.skipif(not POSIX or os.geteuid() != 0, reason="needs root to make a device node")
def test_a_device_payload_is_refused(tmp_path: Path, tmp_root: Path) -> None:
    tree = build(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server": b"ok"})
    os.mknod(tree / "linux/amd64/cpu/null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    with pytest.raises(PayloadError, match="not a regular file"):
        RunnerPayloads(tree, tmp_root).refresh()
    assert list(tmp_root.iterdir()) == []


def test_special_entries_above_the_payload_depth_are_ignored(
    tmp_path: Path, tmp_root: Path
) -> None:
    tree = build(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server": b"ok"})
    os.mkfifo(tree / "linux/fifo")
    runners_dir = RunnerPayloads(tree, tmp_root).refresh()
    assert [p.name for p in runners_dir.rglob("*")] == ["cpu", "ollama_llama_server"]


@pytest.mark.skipif(not POSIX, reason="O_NOFOLLOW is POSIX")
@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_a_payload_swapped_after_planning_is_refused(
    tmp_path: Path, tmp_root: Path, secret: Path, swap: str
) -> None:
    tree = build(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server": b"ok"})
    payloads = RunnerPayloads(tree, tmp_root)
    runners_dir = payloads.refresh()
    (runners_dir / "cpu" / "ollama_llama_server").unlink()
    source = tree / "linux/amd64/cpu/ollama_llama_server"
    source.unlink()
    if swap == "symlink":
        source.symlink_to(secret)
    else:
        os.mkfifo(source)
    with pytest.raises(PayloadError, match="linux/amd64/cpu/ollama_llama_server"):
        payloads.refresh()
    assert [p.name for p in runners_dir.rglob("*")] == ["cpu"]
    assert b"SECRET" not in b"".join(p.read_bytes() for p in tmp_root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- stale dirs


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()  # reaped: the pid now names no process
    return child.pid


def runtime_dir(tmp_root: Path, name: str, pid: bytes | None, *, runner: bool = True) -> Path:
    path = tmp_root / name
    path.mkdir(mode=0o700)
    if pid is not None:
        (path / "ollama.pid").write_bytes(pid)
    if runner:
        (path / "runners" / "cpu").mkdir(parents=True)
        (path / "runners" / "cpu" / "ollama_llama_server").write_bytes(b"x")
    return path


def reasons(report: CleanupReport) -> dict[str, str]:
    return {d.path.name: d.reason for d in (*report.removed, *report.kept)}


def test_a_dir_of_a_dead_process_is_removed(tmp_root: Path) -> None:
    pid = dead_pid()
    stale = runtime_dir(tmp_root, "ollama123", str(pid).encode())
    report = cleanup_stale_dirs(tmp_root)
    assert not stale.exists()
    assert [d.path for d in report.removed] == [stale]
    assert report.removed[0].reason == f"process {pid} is gone"
    assert report.kept == ()


def test_a_trailing_newline_in_the_pid_file_is_accepted(tmp_root: Path) -> None:
    stale = runtime_dir(tmp_root, "ollama1", f"{dead_pid()}\n".encode())
    assert [d.path for d in cleanup_stale_dirs(tmp_root).removed] == [stale]


def test_the_dirs_of_live_processes_are_kept(tmp_root: Path) -> None:
    mine = runtime_dir(tmp_root, "ollama_mine", str(os.getpid()).encode())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = runtime_dir(tmp_root, "ollama_child", str(child.pid).encode())
        report = cleanup_stale_dirs(tmp_root)
        assert report.removed == ()
        assert mine.exists()
        assert theirs.exists()
        why = reasons(report)
        assert why["ollama_mine"] == "the dir of this process"
        assert (
            why["ollama_child"]
            == f"process {child.pid} is running (or another process reused its pid)"
        )
    finally:
        child.kill()
        child.wait()
    assert [d.path for d in cleanup_stale_dirs(tmp_root).removed] == [theirs]


def test_pid_1_is_never_stale(tmp_root: Path) -> None:
    init = runtime_dir(tmp_root, "ollama_init", b"1")
    report = cleanup_stale_dirs(tmp_root)
    assert init.exists()
    assert "process 1 " in reasons(report)["ollama_init"]


@pytest.mark.parametrize(
    "content", [b"", b"abc", b"-5", b"0", b"+12", b"99999999999", b"12 34", b"\xff\xfe", b"0x10"]
)
def test_invalid_pid_files_keep_the_dir(tmp_root: Path, content: bytes) -> None:
    kept = runtime_dir(tmp_root, "ollama_bad", content)
    report = cleanup_stale_dirs(tmp_root)
    assert kept.exists()
    assert reasons(report)["ollama_bad"].startswith("invalid pid")


def test_a_dir_without_a_pid_file_is_kept(tmp_root: Path) -> None:
    kept = runtime_dir(tmp_root, "ollama_models", None)
    report = cleanup_stale_dirs(tmp_root)
    assert kept.exists()
    assert reasons(report)["ollama_models"] == "no ollama.pid: not an Ollama runtime dir"


def test_unexpected_entries_keep_a_dead_dir(tmp_root: Path) -> None:
    kept = runtime_dir(tmp_root, "ollama_user", str(dead_pid()).encode())
    (kept / "notes.txt").write_text("mine")
    report = cleanup_stale_dirs(tmp_root)
    assert (kept / "notes.txt").read_text() == "mine"
    assert (kept / "runners" / "cpu" / "ollama_llama_server").exists()
    assert "unexpected entries: notes.txt" in reasons(report)["ollama_user"]


def test_only_ollama_prefixed_dirs_directly_under_the_root_are_considered(tmp_root: Path) -> None:
    pid = str(dead_pid()).encode()
    other = runtime_dir(tmp_root, "notollama", pid)
    upper = runtime_dir(tmp_root, "Ollama1", pid)
    nested = runtime_dir(tmp_root / "notollama", "ollama_nested", pid)
    (tmp_root / "ollama.log").write_text("log")
    report = cleanup_stale_dirs(tmp_root)
    assert report == CleanupReport()
    assert other.exists()
    assert upper.exists()
    assert nested.exists()
    assert (tmp_root / "ollama.log").exists()


def test_a_symlinked_ollama_dir_is_never_followed(tmp_path: Path, tmp_root: Path) -> None:
    target = runtime_dir(tmp_path, "victim", str(dead_pid()).encode())
    (tmp_root / "ollama_link").symlink_to(target)
    report = cleanup_stale_dirs(tmp_root)
    assert (target / "runners" / "cpu" / "ollama_llama_server").exists()
    assert (tmp_root / "ollama_link").is_symlink()
    assert reasons(report)["ollama_link"] == "a symbolic link; never followed"


def test_a_symlinked_pid_file_is_never_followed(tmp_path: Path, tmp_root: Path) -> None:
    pid_file = tmp_path / "pid"
    pid_file.write_text(str(dead_pid()))
    kept = runtime_dir(tmp_root, "ollama_linkpid", None)
    (kept / "ollama.pid").symlink_to(pid_file)
    report = cleanup_stale_dirs(tmp_root)
    assert kept.exists()
    assert reasons(report)["ollama_linkpid"] == "ollama.pid is a symbolic link; never followed"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_pid_file_keeps_the_dir_without_blocking(tmp_root: Path) -> None:
    kept = runtime_dir(tmp_root, "ollama_fifo", None)
    os.mkfifo(kept / "ollama.pid")
    report = cleanup_stale_dirs(tmp_root)
    assert kept.exists()
    assert reasons(report)["ollama_fifo"] == "ollama.pid is not a regular file"


def test_a_pid_file_that_is_a_dir_keeps_the_dir(tmp_root: Path) -> None:
    kept = runtime_dir(tmp_root, "ollama_dirpid", None)
    (kept / "ollama.pid").mkdir()
    report = cleanup_stale_dirs(tmp_root)
    assert kept.exists()
    assert "ollama.pid" in reasons(report)["ollama_dirpid"]


def test_removal_does_not_traverse_links_inside_a_stale_dir(tmp_path: Path, tmp_root: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "precious").write_text("keep me")
    stale = runtime_dir(tmp_root, "ollama_links", str(dead_pid()).encode())
    (stale / "runners" / "cpu" / "lib").symlink_to(outside)
    (stale / "runners" / "rocm").symlink_to(outside / "deep")
    report = cleanup_stale_dirs(tmp_root)
    assert [d.path for d in report.removed] == [stale]
    assert not stale.exists()
    assert (outside / "deep" / "precious").read_text() == "keep me"


@pytest.mark.skipif(not POSIX or os.geteuid() != 0, reason="needs root to chown")
def test_a_dir_of_another_user_is_kept(tmp_root: Path) -> None:
    kept = runtime_dir(tmp_root, "ollama_other", str(dead_pid()).encode())
    os.chown(kept, 12345, -1)
    report = cleanup_stale_dirs(tmp_root)
    assert kept.exists()
    assert reasons(report)["ollama_other"] == "owned by uid 12345, not by this user"


def test_a_missing_tmp_root_gives_an_empty_report(tmp_path: Path) -> None:
    assert cleanup_stale_dirs(tmp_path / "missing") == CleanupReport()


def test_tmp_root_defaults_to_ollama_tmpdir(tmp_root: Path) -> None:
    stale = runtime_dir(tmp_root, "ollama9", str(dead_pid()).encode())
    report = cleanup_stale_dirs(environ={"OLLAMA_TMPDIR": str(tmp_root)})
    assert [d.path for d in report.removed] == [stale]


class FakeRmtree:
    """Stands in for shutil.rmtree: fails with EBUSY, and says whether it is symlink-safe."""

    def __init__(self, *, safe: bool) -> None:
        self.avoids_symlink_attacks = safe
        self.calls = 0

    def __call__(self, path: object) -> None:
        self.calls += 1
        raise OSError(errno.EBUSY, "Device or resource busy")


def test_a_removal_failure_is_reported_as_kept(
    tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = runtime_dir(tmp_root, "ollama_busy", str(dead_pid()).encode())
    monkeypatch.setattr(shutil, "rmtree", FakeRmtree(safe=True))
    report = cleanup_stale_dirs(tmp_root)
    assert stale.exists()
    assert reasons(report)["ollama_busy"].startswith("removal failed")


def test_no_removal_where_rmtree_is_not_symlink_safe(
    tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = runtime_dir(tmp_root, "ollama_unsafe", str(dead_pid()).encode())
    fake = FakeRmtree(safe=False)
    monkeypatch.setattr(shutil, "rmtree", fake)
    report = cleanup_stale_dirs(tmp_root)
    assert stale.exists()
    assert fake.calls == 0
    assert "not safe against symbolic link attacks" in reasons(report)["ollama_unsafe"]


@pytest.mark.parametrize(
    ("error", "state", "fragment"),
    [
        (None, "alive", "is running"),
        (ProcessLookupError(errno.ESRCH, "No such process"), "dead", "is gone"),
        (PermissionError(errno.EPERM, "Operation not permitted"), "alive", "another user (EPERM)"),
        (OSError(errno.EINVAL, "Invalid argument"), "unknown", "cannot probe"),
    ],
)
def test_probe_pid_is_conservative(error: OSError | None, state: str, fragment: str) -> None:
    sent: list[tuple[int, int]] = []

    def kill(pid: int, signal: int) -> None:
        sent.append((pid, signal))
        if error is not None:
            raise error

    result, why = payloads_module._probe_pid(4242, kill)
    assert sent == [(4242, 0)]  # signal 0: a probe, never a real signal
    assert result == state
    assert fragment in why


_CHILD = textwrap.dedent(
    """
    import os, sys
    from ollama_ready.payloads import RunnerPayloads
    runners = RunnerPayloads(sys.argv[1], sys.argv[2]).refresh()
    print(runners, flush=True)
    sys.stdin.read()
    os._exit(0)  # a crash: no cleanup
    """
)


def test_a_crashed_process_dir_is_removed_by_the_next_one(tmp_path: Path, tmp_root: Path) -> None:
    tree = build(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server": b"ok"})
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tree), str(tmp_root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    child_dir = Path(child.stdout.readline().strip()).parent
    try:
        payloads = RunnerPayloads(tree, tmp_root)
        payloads.refresh()
        assert payloads.last_cleanup is not None
        assert [d.path for d in payloads.last_cleanup.kept] == [child_dir]
        assert child_dir.exists()
    finally:
        child.stdin.close()
        child.wait(timeout=30)

    again = RunnerPayloads(tree, tmp_root)
    again.refresh()
    assert again.last_cleanup is not None
    assert [d.path for d in again.last_cleanup.removed] == [child_dir]
    assert not child_dir.exists()
    # the first instance's own dir belongs to this live process and survives
    assert payloads.runners_dir is not None
    assert payloads.runners_dir.exists()
    assert (
        reasons(again.last_cleanup)[payloads.runners_dir.parent.name] == "the dir of this process"
    )
