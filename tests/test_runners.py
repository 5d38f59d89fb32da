"""Runner discovery and ordering: §6.7 ``locateRunners``, §6.8 and every case of §6.9 (era B)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from ollama_ready.errors import ConfigError, PayloadError
from ollama_ready.runners import (
    GpuLike,
    available_runners,
    locate_runners,
    runner_for_cpu,
    runners_for_gpu,
)

LINUX = ("linux", "amd64")
LINUX_ARM = ("linux", "arm64")
APPLE = ("darwin", "arm64")
INTEL_MAC = ("darwin", "amd64")

ERA_B = ("cpu", "cpu_avx", "cpu_avx2", "cuda_v11", "cuda_v12", "rocm")


@dataclass(frozen=True)
class Gpu:
    library: str
    variant: str


def _gpu(spec: str) -> GpuLike:
    library, _, variant = spec.partition(":")
    return Gpu(library, variant)


# (gpu "library:variant", cpu capability, platform, available, expected order)
GPU_ORDER_TABLE = [
    # 1. exact match first, then same-library alternates (sorted), then the best CPU runner
    ("cuda:v12", "avx2", LINUX, ERA_B, ["cuda_v12", "cuda_v11", "cpu_avx2"]),
    ("cuda:v11", "avx2", LINUX, ERA_B, ["cuda_v11", "cuda_v12", "cpu_avx2"]),
    ("cuda:v12", "avx", LINUX, ERA_B, ["cuda_v12", "cuda_v11", "cpu_avx"]),
    # capability none appends plain cpu, whether or not it is listed
    ("cuda:v12", "none", LINUX, ERA_B, ["cuda_v12", "cuda_v11", "cpu"]),
    ("cuda:v12", "none", LINUX, ("cuda_v12",), ["cuda_v12", "cpu"]),
    # the CPU variant is appended only if present: no other variant is tried
    ("cuda:v12", "avx2", LINUX, ("cpu", "cpu_avx", "cuda_v12"), ["cuda_v12"]),
    # no exact match: the alternates alone, sorted ascending
    ("cuda:v13", "avx2", LINUX, ERA_B, ["cuda_v11", "cuda_v12", "cpu_avx2"]),
    # a runner without a variant is an alternate too ("cuda" sorts before "cuda_v11")
    (
        "cuda:v12",
        "avx2",
        LINUX,
        ("cuda", "cuda_v11", "cuda_v12", "cpu_avx2"),
        ["cuda_v12", "cuda", "cuda_v11", "cpu_avx2"],
    ),
    # the library is the part before the first "_": "cudax" is not a cuda runner
    ("cuda:v12", "avx2", LINUX, ("cudax_v1", "cuda_v12", "cpu_avx2"), ["cuda_v12", "cpu_avx2"]),
    # jetpack variants on ARM (capability none there)
    (
        "cuda:jetpack6",
        "none",
        LINUX_ARM,
        ("cpu", "cuda_jetpack5", "cuda_jetpack6", "cuda_v12"),
        ["cuda_jetpack6", "cuda_jetpack5", "cuda_v12", "cpu"],
    ),
    # ROCm's variant is "": "rocm_" is requested, never matches, and rocm comes via alternates
    ("rocm:", "avx2", LINUX, ERA_B, ["rocm", "cpu_avx2"]),
    (
        "rocm:",
        "avx",
        LINUX,
        ("rocm", "rocm_v6", "rocm_v5", "cpu_avx"),
        ["rocm", "rocm_v5", "rocm_v6", "cpu_avx"],
    ),
    ("oneapi:", "avx2", LINUX, ("oneapi", "cpu_avx2"), ["oneapi", "cpu_avx2"]),
    # metal as an exact match short-circuits: nothing else, not even a CPU runner
    ("metal:none", "avx2", LINUX, ("metal", "metal_x", "cpu_avx2"), ["metal"]),
    ("metal:none", "none", APPLE, ("metal",), ["metal"]),
    # metal with an empty variant asks for "metal_" and finds metal as an alternate
    ("metal:", "none", APPLE, ("metal",), ["metal"]),
    # darwin/arm64 never appends a CPU runner
    ("cuda:v12", "avx2", APPLE, ERA_B, ["cuda_v12", "cuda_v11"]),
    ("cuda:v12", "none", APPLE, ERA_B, ["cuda_v12", "cuda_v11"]),
    # darwin/amd64 is not Apple silicon: the CPU runner is appended
    ("cuda:v12", "avx2", INTEL_MAC, ("cuda_v12", "cpu_avx2"), ["cuda_v12", "cpu_avx2"]),
    # library cpu: the exact runner only, no alternates, no fallback
    ("cpu:avx2", "avx2", LINUX, ERA_B, ["cpu_avx2"]),
    ("cpu:avx", "avx2", LINUX, ERA_B, ["cpu_avx"]),
    ("cpu:no vector extensions", "none", LINUX, ERA_B, ["cpu"]),
    ("cpu:none", "none", LINUX, ERA_B, ["cpu"]),
    # ... and when that is missing, the list is empty, so ["cpu"]
    ("cpu:avx2", "avx2", LINUX, ("cpu", "cuda_v12"), ["cpu"]),
    ("cpu:", "avx2", LINUX, ERA_B, ["cpu"]),
    # nothing available at all
    ("cuda:v12", "avx2", LINUX, (), ["cpu"]),
    ("cuda:v12", "none", LINUX, (), ["cpu"]),
    ("metal:", "none", APPLE, (), ["cpu"]),
    ("rocm:", "avx2", LINUX, ("cpu", "cuda_v12"), ["cpu"]),
]


@pytest.mark.parametrize(("gpu", "cpu", "platform", "available", "expected"), GPU_ORDER_TABLE)
def test_runners_for_gpu_order(
    gpu: str,
    cpu: str,
    platform: tuple[str, str],
    available: tuple[str, ...],
    expected: list[str],
) -> None:
    choice = runners_for_gpu(
        _gpu(gpu),
        available,
        cpu=cpu,  # type: ignore[arg-type]
        platform=platform,
        environ={},
    )
    assert list(choice.runners) == expected
    assert choice.first == expected[0]
    assert choice.reasons
    assert choice.override is None
    assert not choice.cpu_only


def test_order_does_not_depend_on_the_order_of_available() -> None:
    forward = runners_for_gpu(_gpu("cuda:v13"), ERA_B, cpu="avx2", platform=LINUX, environ={})
    backward = runners_for_gpu(
        _gpu("cuda:v13"), tuple(reversed(ERA_B)), cpu="avx2", platform=LINUX, environ={}
    )
    assert forward == backward


def test_available_may_be_the_mapping_from_available_runners() -> None:
    available = {name: Path("/r") / name for name in ERA_B}
    choice = runners_for_gpu(_gpu("cuda:v12"), available, cpu="avx2", platform=LINUX, environ={})
    assert choice.runners == ("cuda_v12", "cuda_v11", "cpu_avx2")


def test_requested_names_the_exact_runner_asked_for() -> None:
    assert (
        runners_for_gpu(_gpu("rocm:"), ERA_B, cpu="avx2", platform=LINUX, environ={}).requested
        == "rocm_"
    )
    assert (
        runners_for_gpu(_gpu("cuda:v12"), (), cpu="avx2", platform=LINUX, environ={}).requested
        == "cuda_v12"
    )
    assert (
        runners_for_gpu(_gpu("cpu:none"), (), cpu="none", platform=LINUX, environ={}).requested
        == "cpu"
    )


def test_reasons_explain_each_step() -> None:
    choice = runners_for_gpu(_gpu("cuda:v12"), ERA_B, cpu="avx2", platform=LINUX, environ={})
    text = "\n".join(choice.reasons)
    assert "requested runner 'cuda_v12'" in text
    assert "exact match: cuda_v12" in text
    assert "alternates, sorted: cuda_v11" in text
    assert "cpu_avx2 appended" in text

    missing = runners_for_gpu(
        _gpu("cuda:v12"), ("cuda_v12", "cpu"), cpu="avx2", platform=LINUX, environ={}
    )
    assert any("no cpu_avx2 runner is available" in r for r in missing.reasons)

    apple = runners_for_gpu(_gpu("metal:none"), ("metal",), cpu="none", platform=APPLE, environ={})
    assert any("only runner tried" in r for r in apple.reasons)

    empty = runners_for_gpu(_gpu("cpu:avx2"), (), cpu="avx2", platform=LINUX, environ={})
    assert any("falling back to cpu" in r for r in empty.reasons)


# (cpu capability, platform, available, expected)
CPU_TABLE = [
    ("avx2", LINUX, ERA_B, "cpu_avx2"),
    ("avx", LINUX, ERA_B, "cpu_avx"),
    ("none", LINUX, ERA_B, "cpu"),
    ("avx2", LINUX, ("cpu", "cpu_avx"), "cpu"),  # no cpu_avx2: plain cpu, never cpu_avx
    ("avx", LINUX, ("cpu", "cpu_avx2"), "cpu"),
    ("avx2", LINUX, (), "cpu"),
    ("none", LINUX_ARM, ("cpu",), "cpu"),
    ("avx2", INTEL_MAC, ("cpu", "cpu_avx2"), "cpu_avx2"),
    ("none", APPLE, ("metal",), "metal"),
    ("avx2", APPLE, (), "metal"),  # metal on Apple silicon, available or not
]


@pytest.mark.parametrize(("cpu", "platform", "available", "expected"), CPU_TABLE)
def test_runner_for_cpu(
    cpu: str, platform: tuple[str, str], available: tuple[str, ...], expected: str
) -> None:
    choice = runner_for_cpu(available, cpu=cpu, platform=platform, environ={})  # type: ignore[arg-type]
    assert choice.runners == (expected,)
    assert choice.reasons


@pytest.mark.parametrize("bad", ["AVX2", "avx512", "", "no vector extensions"])
def test_unknown_cpu_capability_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigError, match="CPU capability"):
        runner_for_cpu(ERA_B, cpu=bad, platform=LINUX, environ={})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="CPU capability"):
        runners_for_gpu(_gpu("cuda:v12"), ERA_B, cpu=bad, platform=LINUX, environ={})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- OLLAMA_LLM_LIBRARY


def test_override_with_an_available_gpu_runner_replaces_the_list() -> None:
    env = {"OLLAMA_LLM_LIBRARY": "cuda_v11"}
    choice = runners_for_gpu(_gpu("cuda:v12"), ERA_B, cpu="avx2", platform=LINUX, environ=env)
    assert choice.runners == ("cuda_v11",)
    assert choice.override == "cuda_v11"
    assert not choice.cpu_only
    assert choice.requested == "cuda_v12"
    assert any("OLLAMA_LLM_LIBRARY=cuda_v11 overrides" in r for r in choice.reasons)


@pytest.mark.parametrize("runner", ["cpu_avx2", "cpu"])
def test_override_with_a_cpu_runner_also_means_cpu_only(runner: str) -> None:
    env = {"OLLAMA_LLM_LIBRARY": runner}
    choice = runners_for_gpu(_gpu("cuda:v12"), ERA_B, cpu="avx2", platform=LINUX, environ=env)
    assert choice.runners == (runner,)
    assert choice.cpu_only
    assert any("no layers are offloaded" in r for r in choice.reasons)


def test_unknown_override_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    env = {"OLLAMA_LLM_LIBRARY": "cuda_v99"}
    with caplog.at_level(logging.WARNING, logger="ollama_ready.runners"):
        choice = runners_for_gpu(_gpu("cuda:v12"), ERA_B, cpu="avx2", platform=LINUX, environ=env)
    assert choice.runners == ("cuda_v12", "cuda_v11", "cpu_avx2")
    assert choice.override is None
    assert "Invalid OLLAMA_LLM_LIBRARY cuda_v99 - not found; ignored" in choice.reasons
    assert "Invalid OLLAMA_LLM_LIBRARY cuda_v99" in caplog.text


def test_empty_override_is_no_override() -> None:
    choice = runners_for_gpu(
        _gpu("cuda:v12"), ERA_B, cpu="avx2", platform=LINUX, environ={"OLLAMA_LLM_LIBRARY": ""}
    )
    assert choice.runners == ("cuda_v12", "cuda_v11", "cpu_avx2")


def test_override_applies_to_the_cpu_path_too() -> None:
    choice = runner_for_cpu(
        ERA_B, cpu="avx2", platform=LINUX, environ={"OLLAMA_LLM_LIBRARY": "cpu_avx"}
    )
    assert choice.runners == ("cpu_avx",)
    assert choice.cpu_only
    ignored = runner_for_cpu(ERA_B, cpu="avx2", platform=LINUX, environ={"OLLAMA_LLM_LIBRARY": "x"})
    assert ignored.runners == ("cpu_avx2",)


def test_override_is_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_LLM_LIBRARY", "cuda_v11")
    assert runners_for_gpu(_gpu("cuda:v12"), ERA_B, cpu="avx2", platform=LINUX).runners == (
        "cuda_v11",
    )


# --------------------------------------------------------------------------- available_runners


def _touch(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_available_runners_maps_dir_names_to_dirs(tmp_path: Path) -> None:
    _touch(tmp_path / "cuda_v12" / "ollama_llama_server")
    _touch(tmp_path / "cuda_v12" / "libggml_cuda.so")
    _touch(tmp_path / "cpu" / "ollama_llama_server")
    _touch(tmp_path / "cpu_avx2" / "ollama_llama_server.exe")
    _touch(tmp_path / "rocm" / "libhipblas.so")  # no ollama_* file: not a runner
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "ollama_stray")  # a file at the top level is not a runner

    found = available_runners(tmp_path)
    assert found == {
        "cpu": tmp_path / "cpu",
        "cpu_avx2": tmp_path / "cpu_avx2",
        "cuda_v12": tmp_path / "cuda_v12",
    }
    assert list(found) == sorted(found)


@pytest.mark.parametrize("empty", [None, ""])
def test_available_runners_without_a_dir_is_empty(empty: str | None) -> None:
    assert available_runners(empty) == {}


def test_available_runners_of_a_missing_dir_is_empty(tmp_path: Path) -> None:
    assert available_runners(tmp_path / "nope") == {}


# --------------------------------------------------------------------------- locate_runners


def _runners_at(base: Path) -> Path:
    runners = base / "lib" / "ollama" / "runners"
    runners.mkdir(parents=True)
    return runners


def test_locate_finds_lib_beside_bin(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "usr" / "bin" / "ollama")
    expected = _runners_at(tmp_path / "usr")
    assert locate_runners(exe, tmp_path / "elsewhere", platform=LINUX) == expected


def test_locate_prefers_the_exe_dir(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "usr" / "bin" / "ollama")
    _runners_at(tmp_path / "usr")
    expected = _runners_at(tmp_path / "usr" / "bin")
    assert locate_runners(exe, tmp_path, platform=LINUX) == expected


def test_locate_tries_the_platform_and_dist_dirs(tmp_path: Path) -> None:
    expected = _runners_at(tmp_path / "dist" / "linux-arm64")
    assert locate_runners(tmp_path / "no-such-exe", tmp_path, platform=LINUX_ARM) == expected
    plain = _runners_at(tmp_path / "linux-arm64")
    assert locate_runners(tmp_path / "no-such-exe", tmp_path, platform=LINUX_ARM) == plain


def test_locate_resolves_a_symlinked_exe(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "opt" / "ollama" / "bin" / "ollama")
    expected = _runners_at(tmp_path / "opt" / "ollama")
    link = tmp_path / "usr" / "local" / "bin" / "ollama"
    link.parent.mkdir(parents=True)
    link.symlink_to(exe)
    assert locate_runners(link, tmp_path / "cwd", platform=LINUX) == expected


def test_locate_uses_the_exe_dir_itself_on_windows(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "Ollama" / "ollama.exe")
    _runners_at(tmp_path)  # beside the exe's parent: only Linux and macOS look there
    with pytest.raises(PayloadError):
        locate_runners(exe, tmp_path / "cwd", platform=("windows", "amd64"))
    expected = _runners_at(tmp_path / "Ollama")
    assert locate_runners(exe, tmp_path / "cwd", platform=("windows", "amd64")) == expected


def test_locate_error_lists_every_path_tried(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "bin" / "ollama")
    cwd = tmp_path / "work"
    with pytest.raises(PayloadError) as info:
        locate_runners(exe, cwd, platform=LINUX)
    message = str(info.value)
    assert message.startswith("unable to locate runners in any search path [")
    roots = [tmp_path / "bin", tmp_path, cwd]  # Go's filepath.Join cleans "bin/.."
    for root in roots:
        for base in (root, root / "linux-amd64", root / "dist" / "linux-amd64"):
            assert str(base) in message
    assert message.count(", ") == 8
    assert info.value.hint


def test_locate_finds_ollama_on_path(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "bin" / "ollama")
    expected = _runners_at(tmp_path)
    environ: Mapping[str, str] = {"PATH": str(exe.parent)}
    assert locate_runners(cwd=tmp_path / "cwd", platform=LINUX, environ=environ) == expected


def test_locate_without_ollama_on_path_searches_cwd_only(tmp_path: Path) -> None:
    with pytest.raises(PayloadError) as info:
        locate_runners(cwd=tmp_path, platform=LINUX, environ={"PATH": str(tmp_path / "none")})
    assert str(info.value).count(", ") == 2
    expected = _runners_at(tmp_path)
    assert locate_runners(cwd=tmp_path, platform=LINUX, environ={"PATH": ""}) == expected


def test_locate_defaults_to_the_current_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _runners_at(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert locate_runners(tmp_path / "no-exe", platform=LINUX) == expected


def test_gpu_info_from_detection_is_accepted() -> None:
    from ollama_ready.gpu import GpuInfo

    def info(library: str, variant: str) -> GpuInfo:
        gib = 1 << 30
        return GpuInfo(
            library=library,
            index=0,
            uuid="GPU-0",
            name="test",
            total_memory=80 * gib,
            free_memory=79 * gib,
            used_memory=gib,
            variant=variant,
        )

    cuda = runners_for_gpu(info("cuda", "v12"), ERA_B, cpu="avx2", platform=LINUX, environ={})
    assert cuda.runners == ("cuda_v12", "cuda_v11", "cpu_avx2")
    rocm = runners_for_gpu(info("rocm", ""), ERA_B, cpu="avx2", platform=LINUX, environ={})
    assert rocm.runners == ("rocm", "cpu_avx2")
    metal = runners_for_gpu(info("metal", ""), ("metal",), cpu="none", platform=APPLE, environ={})
    assert metal.runners == ("metal",)
