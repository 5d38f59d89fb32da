"""RunnerPayloads: extraction, refresh after a tmp cleaner, failure clean-up (§6.2-6.5)."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest

from ollama_ready import payloads as payloads_module
from ollama_ready.errors import PayloadError
from ollama_ready.payloads import RunnerPayloads
from ollama_ready.runners import available_runners

# relative path in the payload tree -> content; ".gz" names are stored compressed
FILES: dict[str, bytes] = {
    "linux/amd64/cpu/ollama_llama_server.gz": b"cpu\n" + b"c" * 50_000,
    "linux/amd64/cpu_avx2/ollama_llama_server.gz": b"cpu_avx2\n" + b"a" * 40_000,
    "linux/amd64/cuda_v12/ollama_llama_server.gz": b"cuda_v12\n" + os.urandom(30_000),
    "linux/amd64/cuda_v12/libggml_cuda.so.gz": b"libggml_cuda\n" + b"g" * 200_000,
    "linux/amd64/cuda_v12/libcublas.so.12": b"libcublas\n" + b"b" * 10_000,
}
REPO_ROOT = Path(__file__).resolve().parents[1]
EXTRACTED = {
    f"{path.split('/')[2]}/{path.split('/')[3].removesuffix('.gz')}": data
    for path, data in FILES.items()
}


def build_tree(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, compresslevel=1) if relpath.endswith(".gz") else data)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "payloads")


@pytest.fixture
def tmp_root(tmp_path: Path) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    return root


class CountingCopy:
    """A copy_stream seam that counts the payloads it copies."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, source: BinaryIO, destination: BinaryIO) -> None:
        with self._lock:
            self.calls += 1
        while chunk := source.read(1 << 16):
            destination.write(chunk)


class FailingCopy:
    """Copy normally, except the payload whose content starts with ``marker``: write part, raise.

    ``heal()`` makes every later copy succeed.
    """

    def __init__(self, marker: bytes, error: BaseException) -> None:
        self.marker: bytes | None = marker
        self.error = error

    def heal(self) -> None:
        self.marker = None

    def before_failing(self) -> None:
        """Run just before the injected error is raised."""

    def __call__(self, source: BinaryIO, destination: BinaryIO) -> None:
        if self.marker is not None:
            head = source.read(len(self.marker))
            destination.write(head)
            if head == self.marker:
                destination.write(source.read(1000))
                destination.flush()
                self.before_failing()
                raise self.error
        while chunk := source.read(1 << 16):
            destination.write(chunk)


def assert_extracted(runners_dir: Path, expected: dict[str, bytes] = EXTRACTED) -> None:
    found = {
        str(path.relative_to(runners_dir)): path.read_bytes()
        for path in runners_dir.rglob("*")
        if path.is_file()
    }
    assert found == expected


def ollama_dirs(tmp_root: Path) -> list[Path]:
    return sorted(tmp_root.glob("ollama*"))


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".partial")]


# --------------------------------------------------------------------------- first refresh


def test_first_refresh_extracts_every_payload(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, tmp_root)
    before = payloads.runners_dir
    runners_dir = payloads.refresh()
    assert before is None

    assert runners_dir == payloads.runners_dir
    assert runners_dir.name == "runners"
    private = runners_dir.parent
    assert private.parent == tmp_root
    assert private.name.startswith("ollama")
    assert (private / "ollama.pid").read_text() == str(os.getpid())
    assert_extracted(runners_dir)
    assert sorted(available_runners(runners_dir)) == ["cpu", "cpu_avx2", "cuda_v12"]
    assert leftovers(tmp_root) == []


def test_created_dirs_are_private_and_files_executable(tree: Path, tmp_root: Path) -> None:
    runners_dir = RunnerPayloads(tree, tmp_root).refresh()
    for directory in (runners_dir.parent, runners_dir, *runners_dir.iterdir()):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for file in runners_dir.rglob("*"):
        if file.is_file():
            assert stat.S_IMODE(file.stat().st_mode) == 0o755, file
    assert stat.S_IMODE((runners_dir.parent / "ollama.pid").stat().st_mode) & 0o022 == 0


def test_tmp_root_comes_from_ollama_tmpdir(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, environ={"OLLAMA_TMPDIR": str(tmp_root)})
    assert payloads.tmp_root == tmp_root
    assert payloads.refresh().parent.parent == tmp_root


def test_tmp_root_reads_os_environ_by_default(
    tree: Path, tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_TMPDIR", str(tmp_root))
    assert RunnerPayloads(tree).tmp_root == tmp_root


def test_explicit_tmp_root_wins_over_the_environment(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, tmp_root, environ={"OLLAMA_TMPDIR": "/nonexistent"})
    assert payloads.refresh().parent.parent == tmp_root


def test_a_traversable_source_is_extracted(tmp_path: Path, tmp_root: Path) -> None:
    archive = tmp_path / "payloads.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for relpath, data in FILES.items():
            zf.writestr(
                f"build/{relpath}", gzip.compress(data) if relpath.endswith(".gz") else data
            )
    source = zipfile.Path(archive) / "build/"
    assert_extracted(RunnerPayloads(source, tmp_root).refresh())


def test_large_gz_payloads_stream_in_constant_memory(tmp_path: Path, tmp_root: Path) -> None:
    big = 48 << 20
    tree = build_tree(tmp_path / "p", {"linux/amd64/cpu/ollama_llama_server.gz": bytes(big)})
    tracemalloc.start()
    try:
        runners_dir = RunnerPayloads(tree, tmp_root).refresh()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (runners_dir / "cpu" / "ollama_llama_server").stat().st_size == big
    assert peak < 8 << 20


def test_platform_filter_picks_one_subtree(tmp_path: Path, tmp_root: Path) -> None:
    files = {
        "linux/amd64/cpu/ollama_llama_server": b"amd64",
        "linux/arm64/cpu/ollama_llama_server": b"arm64",
    }
    tree = build_tree(tmp_path / "p", files)
    with pytest.raises(PayloadError, match="both extract to runners/cpu/ollama_llama_server"):
        RunnerPayloads(tree, tmp_root).refresh()
    assert ollama_dirs(tmp_root) == []
    runners_dir = RunnerPayloads(tree, tmp_root, platform=("linux", "arm64")).refresh()
    assert_extracted(runners_dir, {"cpu/ollama_llama_server": b"arm64"})


def test_a_gz_and_a_plain_file_with_the_same_name_conflict(tmp_path: Path, tmp_root: Path) -> None:
    tree = build_tree(
        tmp_path / "p",
        {
            "linux/amd64/cpu/ollama_llama_server": b"1",
            "linux/amd64/cpu/ollama_llama_server.gz": b"2",
        },
    )
    with pytest.raises(PayloadError, match="both extract to"):
        RunnerPayloads(tree, tmp_root).refresh()


def test_files_above_the_payload_depth_are_ignored(tmp_path: Path, tmp_root: Path) -> None:
    tree = build_tree(
        tmp_path / "p",
        {
            "README.md": b"x",
            "linux/NOTES": b"x",
            "linux/amd64/VERSION": b"x",
            "linux/amd64/cpu/ollama_llama_server": b"cpu",
        },
    )
    assert_extracted(RunnerPayloads(tree, tmp_root).refresh(), {"cpu/ollama_llama_server": b"cpu"})


# --------------------------------------------------------------------------- later refreshes


def test_refresh_re_extracts_only_what_is_missing(tree: Path, tmp_root: Path) -> None:
    copy = CountingCopy()
    payloads = RunnerPayloads(tree, tmp_root, copy_stream=copy)
    runners_dir = payloads.refresh()
    assert copy.calls == len(FILES)
    kept = runners_dir / "cpu" / "ollama_llama_server"
    kept_inode = kept.stat().st_ino

    (runners_dir / "cuda_v12" / "libggml_cuda.so").unlink()
    assert payloads.refresh() == runners_dir
    assert copy.calls == len(FILES) + 1
    assert kept.stat().st_ino == kept_inode
    assert_extracted(runners_dir)


def test_refresh_replaces_a_truncated_file(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, tmp_root)
    runners_dir = payloads.refresh()
    victim = runners_dir / "cuda_v12" / "libggml_cuda.so"
    with victim.open("r+b") as f:
        f.truncate(100)
    payloads.refresh()
    assert_extracted(runners_dir)


def test_refresh_recreates_a_deleted_runner_dir_and_runners_dir(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, tmp_root)
    runners_dir = payloads.refresh()
    for path in sorted((runners_dir / "cuda_v12").iterdir()):
        path.unlink()
    (runners_dir / "cuda_v12").rmdir()
    payloads.refresh()
    assert_extracted(runners_dir)

    for path in sorted(runners_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    runners_dir.rmdir()
    assert payloads.refresh() == runners_dir
    assert_extracted(runners_dir)
    assert stat.S_IMODE(runners_dir.stat().st_mode) == 0o700


def test_refresh_starts_over_when_the_private_dir_is_gone(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, tmp_root)
    first = payloads.refresh()
    shutil.rmtree(first.parent)
    second = payloads.refresh()
    assert second != first
    assert not first.parent.exists()
    assert_extracted(second)
    assert (second.parent / "ollama.pid").read_text() == str(os.getpid())


def test_refresh_rewrites_a_removed_pid_file(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, tmp_root)
    runners_dir = payloads.refresh()
    (runners_dir.parent / "ollama.pid").unlink()
    payloads.refresh()
    assert (runners_dir.parent / "ollama.pid").read_text() == str(os.getpid())


def test_noop_refresh_only_stats(tree: Path, tmp_root: Path) -> None:
    copy = CountingCopy()
    payloads = RunnerPayloads(tree, tmp_root, copy_stream=copy)
    payloads.refresh()
    # The payload tree is never read again: removing it changes nothing for a no-op refresh.
    shutil.rmtree(tree)
    timings = []
    for _ in range(50):
        start = time.perf_counter()
        payloads.refresh()
        timings.append(time.perf_counter() - start)
    assert copy.calls == len(FILES)
    assert min(timings) < 0.002  # the target; the minimum is robust to a busy machine


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("victim", sorted(FILES))
def test_failed_first_extraction_leaves_nothing(tree: Path, tmp_root: Path, victim: str) -> None:
    marker = FILES[victim].split(b"\n")[0] + b"\n"
    error = OSError(errno.ENOSPC, "No space left on device")
    copy = FailingCopy(marker, error)
    payloads = RunnerPayloads(tree, tmp_root, copy_stream=copy)
    with pytest.raises(PayloadError) as info:
        payloads.refresh()

    message = str(info.value)
    assert victim in message
    assert "No space left on device" in message
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)
    assert info.value.hint is not None
    assert "OLLAMA_TMPDIR" in info.value.hint
    assert info.value.__cause__ is error
    assert ollama_dirs(tmp_root) == []
    assert payloads.runners_dir is None

    copy.heal()  # the disk has room again
    assert_extracted(payloads.refresh())


def test_failed_refresh_removes_only_what_it_wrote(tree: Path, tmp_root: Path) -> None:
    copy = FailingCopy(b"libggml_cuda\n", PermissionError(errno.EACCES, "Permission denied"))
    copy.heal()
    payloads = RunnerPayloads(tree, tmp_root, copy_stream=copy)
    runners_dir = payloads.refresh()
    untouched = runners_dir / "cpu" / "ollama_llama_server"
    inode = untouched.stat().st_ino
    (runners_dir / "cuda_v12" / "libcublas.so.12").unlink()
    (runners_dir / "cuda_v12" / "libggml_cuda.so").unlink()

    copy.marker = b"libggml_cuda\n"
    with pytest.raises(PayloadError) as info:
        payloads.refresh()
    assert "libggml_cuda.so.gz" in str(info.value)
    assert info.value.hint is not None
    assert "mounted with exec" in info.value.hint

    assert untouched.stat().st_ino == inode
    assert not (runners_dir / "cuda_v12" / "libggml_cuda.so").exists()
    assert not (runners_dir / "cuda_v12" / "libcublas.so.12").exists()  # written by this call
    assert leftovers(tmp_root) == []
    assert payloads.runners_dir == runners_dir

    copy.heal()
    payloads.refresh()
    assert_extracted(runners_dir)


def test_corrupt_gzip_fails_cleanly(tmp_path: Path, tmp_root: Path) -> None:
    tree = build_tree(tmp_path / "p")
    victim = tree / "linux/amd64/cuda_v12/libggml_cuda.so.gz"
    victim.write_bytes(victim.read_bytes()[:-200])  # truncated stream
    with pytest.raises(PayloadError) as info:
        RunnerPayloads(tree, tmp_root).refresh()
    assert "linux/amd64/cuda_v12/libggml_cuda.so.gz" in str(info.value)
    assert "EOFError" in str(info.value)
    assert ollama_dirs(tmp_root) == []


def test_not_gzip_at_all_fails_cleanly(tmp_path: Path, tmp_root: Path) -> None:
    tree = build_tree(tmp_path / "p")
    (tree / "linux/amd64/cpu/ollama_llama_server.gz").write_bytes(b"not gzip")
    with pytest.raises(PayloadError, match=r"linux/amd64/cpu/ollama_llama_server\.gz"):
        RunnerPayloads(tree, tmp_root).refresh()
    assert ollama_dirs(tmp_root) == []


def test_an_unusable_tmp_root_is_reported(tree: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(PayloadError, match="cannot create a private dir under"):
        RunnerPayloads(tree, not_a_dir).refresh()


def test_noexec_tmp_root_is_refused_with_a_hint(
    tree: Path, tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payloads_module, "_mounted_noexec", lambda path: True)
    with pytest.raises(PayloadError, match="noexec") as info:
        RunnerPayloads(tree, tmp_root).refresh()
    assert info.value.hint is not None
    assert "OLLAMA_TMPDIR" in info.value.hint
    assert ollama_dirs(tmp_root) == []


def test_noexec_detection_reads_the_mount_flags(tmp_path: Path) -> None:
    flag = getattr(os, "ST_NOEXEC", 0)
    if not flag:
        pytest.skip("no ST_NOEXEC on this platform")
    expected = bool(os.statvfs(tmp_path).f_flag & flag)
    assert payloads_module._mounted_noexec(tmp_path) is expected
    assert payloads_module._mounted_noexec(tmp_path / "missing") is False


# --------------------------------------------------------------------------- no payloads


@pytest.mark.parametrize(
    "files",
    [{}, {"linux/amd64/placeholder/placeholder": b""}, {"README": b"x"}],
    ids=["empty", "placeholder", "no-payload-depth"],
)
def test_without_payloads_the_runners_are_located(
    tmp_path: Path, tmp_root: Path, files: dict[str, bytes]
) -> None:
    tree = build_tree(tmp_path / "p", files)
    tree.mkdir(exist_ok=True)
    located = tmp_path / "lib" / "ollama" / "runners"
    calls: list[int] = []

    def locate() -> Path:
        calls.append(1)
        return located

    payloads = RunnerPayloads(tree, tmp_root, locate=locate)
    assert payloads.refresh() == located
    assert payloads.refresh() == located
    assert calls == [1]
    assert ollama_dirs(tmp_root) == []


def test_a_missing_payload_dir_has_no_payloads(tmp_path: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tmp_path / "nope", tmp_root, locate=lambda: tmp_path)
    assert payloads.refresh() == tmp_path


def test_default_locate_finds_ollama_on_the_given_path(tmp_path: Path, tmp_root: Path) -> None:
    exe = tmp_path / "inst" / "bin" / "ollama"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    runners = tmp_path / "inst" / "lib" / "ollama" / "runners"
    runners.mkdir(parents=True)
    environ = {"PATH": str(exe.parent), "OLLAMA_TMPDIR": str(tmp_root)}
    assert RunnerPayloads(tmp_path / "no-payloads", environ=environ).refresh() == runners


# --------------------------------------------------------------------------- cleanup


def test_cleanup_removes_the_private_dir_and_allows_a_fresh_start(
    tree: Path, tmp_root: Path
) -> None:
    payloads = RunnerPayloads(tree, tmp_root)
    first = payloads.refresh()
    payloads.cleanup()
    assert ollama_dirs(tmp_root) == []
    assert payloads.runners_dir is None
    payloads.cleanup()  # idempotent
    second = payloads.refresh()
    assert second != first
    assert_extracted(second)


def test_context_manager_cleans_up(tree: Path, tmp_root: Path) -> None:
    with RunnerPayloads(tree, tmp_root) as payloads:
        payloads.refresh()
        assert len(ollama_dirs(tmp_root)) == 1
    assert ollama_dirs(tmp_root) == []


def test_cleanup_of_a_dir_already_gone_is_quiet(tree: Path, tmp_root: Path) -> None:
    payloads = RunnerPayloads(tree, tmp_root)
    shutil.rmtree(payloads.refresh().parent)
    payloads.cleanup()
    assert payloads.runners_dir is None


# --------------------------------------------------------------------------- concurrency


def test_threads_share_one_extraction(tree: Path, tmp_root: Path) -> None:
    copy = CountingCopy()
    payloads = RunnerPayloads(tree, tmp_root, copy_stream=copy)
    barrier = threading.Barrier(8)
    results: list[Path] = []

    def worker() -> None:
        barrier.wait()
        results.append(payloads.refresh())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert len(results) == 8
    assert copy.calls == len(FILES)
    assert len(ollama_dirs(tmp_root)) == 1


_CHILD = textwrap.dedent(
    """
    import sys, time
    from ollama_ready.payloads import RunnerPayloads
    tree, shared, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    time.sleep(max(0.0, start - time.time()))
    RunnerPayloads(tree, runners_dir=shared).refresh()
    """
)


def test_processes_sharing_a_runners_dir_all_end_complete(tmp_path: Path) -> None:
    files = {
        f"linux/amd64/r{i}/ollama_lib{j}.gz": bytes([i, j]) * 300_000
        for i in range(4)
        for j in range(4)
    }
    tree = build_tree(tmp_path / "p", files)
    shared = tmp_path / "cache" / "runners"
    start = time.time() + 1.0  # every child starts extracting at the same moment
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tree), str(shared), str(start)], cwd=REPO_ROOT
        )
        for _ in range(4)
    ]
    assert [child.wait(timeout=60) for child in children] == [0, 0, 0, 0]
    expected = {
        f"{relpath.split('/')[2]}/{relpath.split('/')[3].removesuffix('.gz')}": data
        for relpath, data in files.items()
    }
    assert_extracted(shared, expected)
    assert leftovers(shared) == []
    assert not (shared / "ollama.pid").exists()


# --------------------------------------------------------------------------- a shared runners dir


def test_shared_runners_dir_is_kept_by_cleanup(tree: Path, tmp_path: Path) -> None:
    shared = tmp_path / "cache"
    payloads = RunnerPayloads(tree, runners_dir=shared)
    assert payloads.refresh() == shared
    assert_extracted(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700
    payloads.cleanup()
    assert_extracted(shared)


def test_shared_runners_dir_reuses_complete_files(tree: Path, tmp_path: Path) -> None:
    shared = tmp_path / "cache"
    RunnerPayloads(tree, runners_dir=shared).refresh()
    copy = CountingCopy()
    RunnerPayloads(tree, runners_dir=shared, copy_stream=copy).refresh()
    assert copy.calls == 0


def test_failure_in_a_shared_dir_keeps_files_it_did_not_write(tree: Path, tmp_path: Path) -> None:
    shared = tmp_path / "cache"
    (shared / "cpu").mkdir(parents=True, mode=0o700)
    shared.chmod(0o700)
    theirs = shared / "cpu" / "ollama_llama_server"
    theirs.write_bytes(EXTRACTED["cpu/ollama_llama_server"])
    error = OSError(errno.EIO, "Input/output error")
    payloads = RunnerPayloads(
        tree, runners_dir=shared, copy_stream=FailingCopy(b"cuda_v12\n", error)
    )
    with pytest.raises(PayloadError, match="Input/output error") as info:
        payloads.refresh()
    assert info.value.hint is None
    assert [p.relative_to(shared) for p in shared.rglob("*")] == [
        Path("cpu"),
        Path("cpu/ollama_llama_server"),
    ]
    assert payloads.runners_dir is None


def test_failure_keeps_a_file_another_process_replaced_meanwhile(
    tree: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "cache"
    replaced = shared / "cpu" / "ollama_llama_server"

    class ReplaceThenFail(FailingCopy):
        def before_failing(self) -> None:
            # Another process finishes its own copy of a file this one already wrote.
            other = replaced.with_name("other-process.tmp")
            other.write_bytes(b"theirs")
            os.replace(other, replaced)

    copy = ReplaceThenFail(b"cuda_v12\n", OSError(errno.EIO, "Input/output error"))
    # One worker extracts in sorted order, so cuda_v12/ollama_llama_server comes last.
    payloads = RunnerPayloads(tree, runners_dir=shared, copy_stream=copy, max_workers=1)
    with pytest.raises(PayloadError):
        payloads.refresh()
    assert replaced.read_bytes() == b"theirs"
    assert [p.relative_to(shared) for p in shared.rglob("*") if p.is_file()] == [
        Path("cpu/ollama_llama_server")
    ]


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_shared_dir_writable_by_others_is_refused(tree: Path, tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "cache"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(PayloadError, match="writable by group or others"):
        RunnerPayloads(tree, runners_dir=shared).refresh()
    assert list(shared.iterdir()) == []


def test_a_symlinked_shared_dir_is_refused(tree: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(PayloadError, match="not a real directory"):
        RunnerPayloads(tree, runners_dir=link).refresh()
    assert list(real.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to chown")
def test_a_shared_dir_of_another_user_is_refused(tree: Path, tmp_path: Path) -> None:
    shared = tmp_path / "cache"
    shared.mkdir(mode=0o700)
    os.chown(shared, 12345, -1)
    with pytest.raises(PayloadError, match="owned by uid 12345"):
        RunnerPayloads(tree, runners_dir=shared).refresh()


def test_repr_names_the_source(tree: Path, tmp_root: Path) -> None:
    assert "RunnerPayloads(" in repr(RunnerPayloads(tree, tmp_root))
