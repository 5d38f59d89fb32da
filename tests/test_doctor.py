"""doctor(): one diagnosis against FakeOllama, FakeNvml, sysfs trees and runners dirs in tmp."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from ollama_ready.client import OllamaClient
from ollama_ready.doctor import DoctorReport, Finding, RunnerReport, doctor, runner_report
from ollama_ready.errors import ConfigError, InvalidHost, InvalidModelName
from ollama_ready.gpu import GpuReport, detect_gpus
from ollama_ready.testing import FakeClock, FakeGpu, FakeModel, FakeNvml, FakeOllama

MiB = 1024**2
CPUINFO = "processor\t: 0\nflags\t\t: fpu sse4_2 avx f16c fma avx2\n"
NO_AVX = "processor\t: 0\nflags\t\t: fpu sse4_2\n"
LINUX = ("linux", "amd64")
ERA_B = ("cpu", "cpu_avx", "cpu_avx2", "cuda_v11", "cuda_v12", "rocm")
CANARY = "canary-7f3a9d1e-secret"
SMALL = FakeModel.synthetic("llama3.2:1b", size=1_300_000_000)


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=[SMALL], tick=0.01) as fake:
        yield fake


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, Any]:
    """Seams that keep doctor() off this machine's NVML, sysfs, CPU, PATH and working dir."""
    return {
        "nvml": FakeNvml.h100(),
        "cpuinfo": CPUINFO,
        "platform": LINUX,
        "sysfs_root": tmp_path / "sys",
        "kfd_device": tmp_path / "no-kfd",
        "environ": {"PATH": str(tmp_path / "bin")},
        "cwd": tmp_path,
    }


def make_runners(root: Path, names: Sequence[str]) -> Path:
    """Lay out ``<root>/<name>/ollama_llama_server`` for each runner name."""
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "ollama_llama_server").write_bytes(b"\x7fELF")
    return root


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def by_topic(report: DoctorReport, topic: str) -> list[Finding]:
    return [finding for finding in report.findings if finding.topic == topic]


def everything(report: DoctorReport | RunnerReport) -> str:
    """Every way a report can be shown, joined: text, JSON, repr and HTML."""
    return "\n".join(
        [
            report.describe(),
            json.dumps(report.to_dict()),
            repr(report),
            report._repr_html_(),
        ]
    )


# --------------------------------------------------------------------------- server


def test_server_up_lists_version_models_and_is_ok(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    server.add_model("tinyllama")

    report = doctor(server.url, **machine)

    assert report.ok
    assert report.server.state == "ok"
    assert report.server.reachable
    assert report.server.version == "0.12.11"
    assert report.server.host == server.url
    assert report.server.host_source == "argument"
    assert {m.name for m in report.server.models} == {"llama3.2:1b", "tinyllama:latest"}
    assert report.server.loaded == ()
    assert not report.remote
    assert report.problems == ()
    text = report.describe()
    assert text.startswith("ollama-ready doctor: ok")
    assert "reachable, Ollama 0.12.11" in text
    assert "llama3.2:1b" in text
    assert "tinyllama:latest" in text


def test_reports_the_servers_own_version(machine: dict[str, Any]) -> None:
    with FakeOllama(version="0.5.1") as old:
        report = doctor(old.url, **machine)

    assert report.server.version == "0.5.1"
    assert "Ollama 0.5.1" in report.describe()
    # v0.5.1 keeps runners dirs, so no "selection differs in this version" note
    assert not any("chooses its GPU libraries" in f.message for f in report.findings)


def test_server_down_is_a_finding_with_the_clients_hint(machine: dict[str, Any]) -> None:
    url = closed_port_url()

    report = doctor(url, model="llama3.2:1b", **machine)

    assert not report.ok
    assert report.server.state == "unreachable"
    assert not report.server.reachable
    assert report.server.error_kind == "refused"
    assert report.server.error is not None
    assert "connection refused" in report.server.error
    assert report.server.hint is not None
    assert "ollama serve" in report.server.hint
    (problem,) = report.problems  # the unknown model adds no second error
    assert problem.topic == "server"
    assert problem.hint == report.server.hint
    assert report.model is not None
    assert report.model.present is None
    assert report.model.fit is None
    # the hardware is still diagnosed
    assert report.gpus.devices[0].name == "NVIDIA H100 80GB HBM3"
    assert report.runners.requested == "cuda_v12"
    assert "hint: Start the server" in report.describe()


def test_server_that_refuses_for_a_while_is_reported_unreachable(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    server.refuse_connections(5.0)

    report = doctor(server.url, **machine)

    assert report.server.state == "unreachable"
    assert report.server.error_kind == "refused"


def test_http_error_with_a_known_message_gets_the_error_tables_hint(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    server.respond_with(
        "GET",
        "/api/tags",
        status=500,
        body='{"error":"open /root/.ollama/models/manifests: no space left on device"}',
        headers={"Content-Type": "application/json"},
    )

    report = doctor(server.url, **machine)

    assert report.server.state == "ok"
    assert not report.ok
    (problem,) = report.problems
    assert problem.topic == "models"
    assert "no space left on device" in problem.message
    assert problem.hint is not None
    assert "free space" in problem.hint


def test_a_web_page_instead_of_ollama_is_an_error_state(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    server.respond_with(
        "GET",
        "/api/version",
        status=200,
        body="<html><head><title>Sign in</title></head><body>proxy</body></html>",
        headers={"Content-Type": "text/html"},
    )

    report = doctor(server.url, **machine)

    assert report.server.state == "error"
    assert report.server.reachable
    assert report.server.error_kind == "protocol"
    assert report.server.hint is not None
    assert "NO_PROXY" in report.server.hint
    assert "<title>" not in report._repr_html_()  # escaped, never markup


def test_host_header_guard_is_explained(machine: dict[str, Any]) -> None:
    with FakeOllama(check_host=True) as guarded:
        environ = {**machine.pop("environ"), "OLLAMA_READY_HEADERS": "Host: ollama.example.com"}
        report = doctor(guarded.url, environ=environ, **machine)

    assert report.server.state == "error"
    assert report.server.error_kind == "host not allowed"
    assert report.server.hint


def test_ps_failure_is_only_a_warning(server: FakeOllama, machine: dict[str, Any]) -> None:
    server.fail_next(1, status=500, message="boom", path="/api/ps")

    report = doctor(server.url, **machine)

    assert report.ok
    (warning,) = [f for f in report.findings if f.severity == "warning"]
    assert "listing the loaded models failed" in warning.message


def test_the_timeout_bounds_the_whole_diagnosis(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    clock = FakeClock()
    session = requests.Session()
    # Each answer costs 11 fake seconds: after the version, the 10 s budget is gone.
    session.hooks["response"].append(lambda response, *args, **kwargs: clock.advance(11))

    report = doctor(server.url, timeout=10, session=session, clock=clock, **machine)

    assert report.server.version == "0.12.11"
    assert server.count("GET", "/api/tags") == 0
    assert any("ran out" in f.message and f.severity == "error" for f in report.findings)
    assert not report.ok


class Refusing(requests.adapters.BaseAdapter):
    """A transport for a remote host that refuses every connection."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        raise requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))

    def close(self) -> None:
        pass


def refusing_session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", Refusing())
    return session


def test_a_remote_server_is_flagged_as_not_this_machine(machine: dict[str, Any]) -> None:
    report = doctor("ollama.internal:11434", session=refusing_session(), **machine)

    assert report.remote
    assert report.server.host == "http://ollama.internal:11434"
    assert report.server.state == "unreachable"
    assert any("not this machine" in f.message for f in by_topic(report, "gpu"))


# --------------------------------------------------------------------------- configuration


def test_invalid_environment_is_a_finding_and_the_server_is_still_checked(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    environ = {**machine.pop("environ"), "OLLAMA_READY_TIMEOUT": "soon"}

    report = doctor(server.url, environ=environ, **machine)

    assert report.server.state == "ok"
    assert not report.ok
    (problem,) = report.problems
    assert problem.topic == "config"
    assert "OLLAMA_READY_TIMEOUT" in problem.message


def test_invalid_ollama_host_means_the_server_is_not_checked(machine: dict[str, Any]) -> None:
    environ = {**machine.pop("environ"), "OLLAMA_HOST": "http://bad host"}

    report = doctor(environ=environ, **machine)

    assert report.server.state == "not checked"
    assert report.server.host is None
    assert {f.topic for f in report.problems} == {"config", "server"}
    assert "not checked" in report.describe()


def test_ollama_host_from_the_environment_is_used(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    environ = {**machine.pop("environ"), "OLLAMA_HOST": server.url}

    report = doctor(environ=environ, **machine)

    assert report.server.state == "ok"
    assert report.server.host_source == "OLLAMA_HOST"
    assert "(from OLLAMA_HOST)" in report.describe()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"host": "http://user:pw@localhost:11434"}, InvalidHost),
        ({"model": "not a name!"}, InvalidModelName),
        ({"timeout": 0}, ConfigError),
        ({"timeout": float("nan")}, ConfigError),
    ],
)
def test_bad_explicit_arguments_raise(
    kwargs: dict[str, Any], error: type[Exception], machine: dict[str, Any]
) -> None:
    with pytest.raises(error):
        doctor(**kwargs, **machine)


# --------------------------------------------------------------------------- secrets


def test_secrets_never_appear_even_when_the_server_echoes_them(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    environ = {
        **machine.pop("environ"),
        "OLLAMA_API_KEY": CANARY,
        "OLLAMA_READY_HEADERS": f"X-Team-Token: {CANARY}-header",
    }
    server.respond_with(
        "GET",
        "/api/tags",
        status=401,
        body=json.dumps({"error": f"token Bearer {CANARY} and {CANARY}-header rejected"}),
        headers={"Content-Type": "application/json"},
    )

    report = doctor(server.url, model="llama3.2:1b", environ=environ, **machine)

    sent = server.requests[0].headers
    assert sent["Authorization"] == f"Bearer {CANARY}"  # the canary really travelled
    assert sent["X-Team-Token"] == f"{CANARY}-header"
    assert any("rejected" in f.message for f in report.problems)
    shown = everything(report)
    assert CANARY not in shown
    assert "***" in shown


@pytest.mark.parametrize("headers", [f"Token {CANARY}; X: y", f"X: {CANARY}; Y"])
def test_secret_in_an_invalid_headers_variable_is_masked(
    headers: str, server: FakeOllama, machine: dict[str, Any]
) -> None:
    environ = {**machine.pop("environ"), "OLLAMA_READY_HEADERS": headers}
    server.respond_with(
        "GET",
        "/api/tags",
        status=400,
        body=json.dumps({"error": f"bad header {CANARY}"}),
        headers={"Content-Type": "application/json"},
    )

    report = doctor(server.url, environ=environ, **machine)

    assert {f.topic for f in report.problems} == {"config", "models"}
    assert CANARY not in everything(report)


# --------------------------------------------------------------------------- models and fit


def test_missing_model_is_an_error_with_a_pull_hint(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    report = doctor(server.url, model="qwen2.5:0.5b", **machine)

    assert not report.ok
    assert report.model is not None
    assert report.model.present is False
    assert report.model.fit is None
    (problem,) = report.problems
    assert problem.topic == "model"
    assert "qwen2.5:0.5b is not on the server" in problem.message
    assert problem.hint is not None
    assert "ollama pull qwen2.5:0.5b" in problem.hint


def test_present_model_fits_fully_on_an_h100(server: FakeOllama, machine: dict[str, Any]) -> None:
    report = doctor(server.url, model="llama3.2:1b", **machine)

    assert report.ok
    check = report.model
    assert check is not None
    assert check.present is True
    assert check.size == SMALL.size
    assert check.details["family"] == "llama"
    assert check.num_ctx == 4096  # the model's own num_ctx parameter
    assert check.fit is not None
    assert check.fit.verdict == "full"
    assert check.fit.free_bytes == (report.gpus.devices[0].free_memory,)
    assert check.placement is None
    assert "fits fully on 1 GPU (estimate)" in report.describe()
    assert "not loaded" in report.describe()


def test_names_are_matched_the_way_ollama_matches_them(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    report = doctor(server.url, model="registry.ollama.ai/library/LLAMA3.2:1b", **machine)

    assert report.model is not None
    assert report.model.present is True
    assert report.model.size == SMALL.size


def test_big_model_on_a_small_gpu_fits_partially_with_a_hint(machine: dict[str, Any]) -> None:
    big = FakeModel.synthetic(
        "big:20b", size=20_000_000_000, block_count=40, embedding_length=5120, head_count=40
    )
    machine["nvml"] = FakeNvml.gtx_1080()
    with FakeOllama(models=[big]) as fake:
        report = doctor(fake.url, model="big:20b", **machine)

    assert report.ok  # slow is not broken
    assert report.model is not None
    fit = report.model.fit
    assert fit is not None
    assert fit.verdict == "partial"
    assert 0 < fit.layers < fit.total_layers
    (warning,) = by_topic(report, "fit")
    assert warning.severity == "warning"
    assert "fits partially" in warning.message
    assert warning.hint is not None
    assert report.runners.target.startswith("cuda GPU 0")


def test_model_that_fits_no_layer_runs_the_cpu_runner(
    tmp_path: Path, machine: dict[str, Any]
) -> None:
    full_gpu = FakeGpu.gtx_1080(memory_used=8100 * MiB)
    machine["nvml"] = FakeNvml([full_gpu], driver_version="550.54.14", cuda_driver_version=12040)
    with FakeOllama(models=[SMALL]) as fake:
        report = doctor(
            fake.url,
            model="llama3.2:1b",
            runners_dir=make_runners(tmp_path / "runners", ERA_B),
            **machine,
        )

    assert report.model is not None
    assert report.model.fit is not None
    assert report.model.fit.verdict == "cpu"
    assert report.runners.target == "CPU"
    assert report.runners.chosen == "cpu_avx2"
    assert any("fit no layer" in reason for reason in report.runners.reasons)


def test_no_gpu_gives_a_cpu_estimate(server: FakeOllama, machine: dict[str, Any]) -> None:
    machine["nvml"] = FakeNvml.driver_not_loaded()

    report = doctor(server.url, model="llama3.2:1b", **machine)

    assert report.model is not None
    assert report.model.fit is not None
    assert report.model.fit.verdict == "cpu"
    assert report.model.fit.free_bytes == ()
    (fit_warning,) = by_topic(report, "fit")
    assert fit_warning.hint is None  # no GPU: freeing VRAM is not the advice


def test_explicit_num_ctx_wins_over_the_models_parameter(machine: dict[str, Any]) -> None:
    model = FakeModel.synthetic(
        "long:1b", size=1_000_000_000, context_length=32768, parameters={"num_ctx": 8192}
    )
    with FakeOllama(models=[model]) as fake:
        own = doctor(fake.url, model="long:1b", **machine)
        given = doctor(fake.url, model="long:1b", num_ctx=2048, **machine)

    assert own.model is not None
    assert own.model.num_ctx == 8192
    assert given.model is not None
    assert given.model.num_ctx == 2048
    assert own.model.fit is not None
    assert given.model.fit is not None
    assert own.model.fit.kv_cache_bytes == 4 * given.model.fit.kv_cache_bytes


def test_model_without_fit_metadata_gets_a_note_not_an_error(machine: dict[str, Any]) -> None:
    odd = FakeModel.synthetic("odd:1b", model_info={"general.architecture": ""})
    with FakeOllama(models=[odd]) as fake:
        report = doctor(fake.url, model="odd:1b", **machine)

    assert report.ok
    assert report.model is not None
    assert report.model.fit is None
    assert report.model.fit_note is not None
    assert "general.architecture" in report.model.fit_note


@pytest.mark.parametrize(
    ("fraction", "label", "warned"),
    [
        (1.0, "100% GPU", False),
        (0.6, "40%/60% CPU/GPU", True),
        (0.0, "100% CPU", True),
    ],
)
def test_loaded_model_placement_comes_from_ps(
    fraction: float, label: str, warned: bool, machine: dict[str, Any]
) -> None:
    with FakeOllama(models=[SMALL], vram_fraction=fraction) as fake:
        OllamaClient(fake.url).load("llama3.2:1b")
        report = doctor(fake.url, model="llama3.2:1b", **machine)

    (loaded,) = report.server.loaded
    assert loaded.name == "llama3.2:1b"
    assert loaded.placement.label == label
    assert loaded.size_vram == int(loaded.size * fraction)
    assert report.model is not None
    assert report.model.placement is not None
    assert report.model.placement.label == label
    assert report.model.fit_note is not None
    assert "already excludes it" in report.model.fit_note
    assert bool(by_topic(report, "fit")) is warned
    assert f"{label} (loaded)" in report.describe()
    assert report.to_dict()["server"]["loaded"][0]["placement"] == label


# --------------------------------------------------------------------------- GPUs


def test_h100_is_described_with_its_driver(server: FakeOllama, machine: dict[str, Any]) -> None:
    report = doctor(server.url, **machine)

    (gpu,) = report.gpus.devices
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.total_memory == 81559 * MiB
    assert report.gpus.driver_version == "580.159.04"
    text = report.describe()
    assert "NVIDIA H100 80GB HBM3" in text
    assert "580.159.04, CUDA 13.0" in text
    assert not any(f.topic == "gpu" and f.severity == "warning" for f in report.findings)


def test_k80_is_unsupported_with_its_reason(server: FakeOllama, machine: dict[str, Any]) -> None:
    machine["nvml"] = FakeNvml.tesla_k80()

    report = doctor(server.url, **machine)

    assert report.ok
    assert report.gpus.devices == ()
    (k80,) = report.gpus.unsupported
    assert k80.name == "Tesla K80"
    (warning,) = [f for f in by_topic(report, "gpu") if f.severity == "warning"]
    assert "compute capability 3.7" in warning.message
    assert report.runners.target == "CPU"
    assert report.runners.requested == "cpu_avx2"


def test_mixed_box_lists_the_unusable_gpu_as_a_warning(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    machine["nvml"] = FakeNvml.mixed()

    report = doctor(server.url, **machine)

    assert len(report.gpus.devices) == 2
    warnings = [f.message for f in by_topic(report, "gpu") if f.severity == "warning"]
    assert any("Tesla K80" in message and "3.7" in message for message in warnings)
    assert report.runners.requested == "cuda_v11"  # CUDA 11.4 driver


@pytest.mark.parametrize(
    ("nvml", "words"),
    [
        (FakeNvml.driver_not_loaded(), "kernel driver is not loaded"),
        (FakeNvml.library_missing(), "libnvidia-ml.so.1"),
        (FakeNvml.no_permission(), "no permission"),
    ],
)
def test_nvml_failures_are_findings_not_exceptions(
    nvml: FakeNvml, words: str, server: FakeOllama, machine: dict[str, Any]
) -> None:
    machine["nvml"] = nvml

    report = doctor(server.url, **machine)

    assert report.ok
    assert report.gpus.devices == ()
    (warning,) = [f for f in by_topic(report, "gpu") if f.severity == "warning"]
    assert words in warning.message
    assert words in report.describe()
    assert report.to_dict()["gpus"]["backends"][0]["reason"] is not None


def test_lost_gpu_does_not_stop_the_diagnosis(server: FakeOllama, machine: dict[str, Any]) -> None:
    nvml = FakeNvml.h100()
    nvml.lose_gpu(0)
    machine["nvml"] = nvml

    report = doctor(server.url, **machine)

    assert report.gpus.devices == ()
    assert "lost" in report.describe()


def test_cuda_variant_rule_follows_the_servers_version(machine: dict[str, Any]) -> None:
    with FakeOllama(version="0.12.1") as new:
        report = doctor(new.url, **machine)
    with FakeOllama(version="0.12.11") as newest:
        default = doctor(newest.url, **machine)

    assert report.gpus.devices[0].variant == "v13"  # CC 9.0 and CUDA 13 under v0.12.0-v0.12.3
    assert report.runners.requested == "cuda_v13"
    assert any("from the server's version 0.12.1" in f.message for f in report.findings)
    assert default.gpus.devices[0].variant == "v12"
    assert any("has no CUDA variant rule" in f.message for f in default.findings)


def test_explicit_era_wins_and_is_not_announced(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    report = doctor(server.url, era="0.12", **machine)

    assert report.gpus.devices[0].variant == "v13"
    assert not any("CUDA variants follow" in f.message for f in report.findings)


def write_rocm_sysfs(root: Path, *, total: int) -> Path:
    """One RX 7900 XTX (gfx1100) as the kfd topology and drm card of a real /sys."""
    (root / "module" / "amdgpu").mkdir(parents=True)
    (root / "module" / "amdgpu" / "version").write_text("6.7.0\n")
    node = root / "class" / "kfd" / "kfd" / "topology" / "nodes" / "1"
    node.mkdir(parents=True)
    unique = 0x3E0C7E1C3E0A9B11
    node.joinpath("properties").write_text(
        f"gfx_target_version 110000\nvendor_id 4098\ndevice_id 29772\nunique_id {unique}\n"
    )
    card = root / "devices" / "pci0000:00" / "0000:03:00.0"
    card.mkdir(parents=True)
    for name, value in {
        "vendor": "0x1002",
        "device": "0x744c",
        "unique_id": f"{unique:x}",
        "mem_info_vram_total": str(total),
        "mem_info_vram_used": str(512 * MiB),
    }.items():
        (card / name).write_text(f"{value}\n")
    (root / "class" / "drm" / "card0").mkdir(parents=True)
    (root / "class" / "drm" / "card0" / "device").symlink_to(card)
    return root


def test_rocm_gpu_from_sysfs_gets_the_rocm_runner(
    tmp_path: Path, server: FakeOllama, machine: dict[str, Any]
) -> None:
    machine["nvml"] = FakeNvml.library_missing()
    machine["sysfs_root"] = write_rocm_sysfs(tmp_path / "sys", total=24 * 1024 * MiB)
    (tmp_path / "kfd").write_bytes(b"")
    machine["kfd_device"] = tmp_path / "kfd"

    report = doctor(server.url, runners_dir=make_runners(tmp_path / "runners", ERA_B), **machine)

    (gpu,) = report.gpus.devices
    assert gpu.library == "rocm"
    assert gpu.compute == "gfx1100"
    # ROCm's empty variant asks for "rocm_"; "rocm" is then found as an alternate.
    assert report.runners.requested == "rocm_"
    assert report.runners.runners == ("rocm", "cpu_avx2")


def test_metal_on_apple_silicon(tmp_path: Path, machine: dict[str, Any]) -> None:
    machine["platform"] = ("darwin", "arm64")
    machine["cpuinfo"] = ""
    with FakeOllama() as fake:
        report = doctor(
            fake.url, runners_dir=make_runners(tmp_path / "runners", ["metal"]), **machine
        )

    (gpu,) = report.gpus.devices
    assert gpu.library == "metal"
    assert report.runners.runners == ("metal",)
    assert report.cpu.platform == "darwin/arm64"


# --------------------------------------------------------------------------- runners


def test_runners_dir_ordering_for_an_h100(tmp_path: Path, machine: dict[str, Any]) -> None:
    runners = make_runners(tmp_path / "runners", ERA_B)

    report = runner_report(runners, **machine)

    assert report.runners_dir == str(runners)
    assert set(report.available) == set(ERA_B)
    assert report.available["cuda_v12"] == str(runners / "cuda_v12")
    assert report.requested == "cuda_v12"
    assert report.runners == ("cuda_v12", "cuda_v11", "cpu_avx2")
    assert report.chosen == "cuda_v12"
    assert report.missing is None
    assert any("exact match" in reason for reason in report.reasons)
    text = report.describe()
    assert "cuda_v12 > cuda_v11 > cpu_avx2" in text
    assert "- exact match: cuda_v12 is available" in text


def test_cpu_only_machine_picks_the_best_cpu_runner(
    tmp_path: Path, machine: dict[str, Any]
) -> None:
    machine["nvml"] = FakeNvml.driver_not_loaded()

    report = runner_report(make_runners(tmp_path / "runners", ERA_B), **machine)

    assert report.target == "CPU"
    assert report.runners == ("cpu_avx2",)


def test_cpu_without_avx_on_x86_skips_the_gpu(tmp_path: Path, machine: dict[str, Any]) -> None:
    machine["cpuinfo"] = NO_AVX

    report = runner_report(make_runners(tmp_path / "runners", ERA_B), **machine)

    assert report.target == "CPU"
    assert report.runners == ("cpu",)
    assert any("no AVX" in reason for reason in report.reasons)


def test_llm_library_override(tmp_path: Path, machine: dict[str, Any]) -> None:
    machine["environ"] = {**machine["environ"], "OLLAMA_LLM_LIBRARY": "cpu_avx2"}

    report = runner_report(make_runners(tmp_path / "runners", ERA_B), **machine)

    assert report.runners == ("cpu_avx2",)
    assert report.override == "cpu_avx2"
    assert report.cpu_only


def test_unknown_llm_library_is_a_warning(
    tmp_path: Path, server: FakeOllama, machine: dict[str, Any]
) -> None:
    machine["environ"] = {**machine["environ"], "OLLAMA_LLM_LIBRARY": "vulkan"}

    report = doctor(server.url, runners_dir=make_runners(tmp_path / "runners", ERA_B), **machine)

    assert report.runners.chosen == "cuda_v12"
    (warning,) = [f for f in by_topic(report, "runners") if f.severity == "warning"]
    assert "OLLAMA_LLM_LIBRARY vulkan" in warning.message


def test_no_runners_dir_still_says_what_ollama_would_request(
    server: FakeOllama, machine: dict[str, Any]
) -> None:
    report = doctor(server.url, **machine)

    assert report.runners.runners_dir is None
    assert report.runners.runners == ()
    assert report.runners.chosen is None
    assert report.runners.requested == "cuda_v12"
    assert report.runners.missing is not None
    assert "unable to locate runners" in report.runners.missing
    info = [f for f in by_topic(report, "runners") if "would request cuda_v12" in f.message]
    assert info
    assert info[0].severity == "info"
    assert report.ok


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_given_runners_dir_that_holds_nothing(
    layout: str, tmp_path: Path, machine: dict[str, Any]
) -> None:
    runners = tmp_path / "runners"
    if layout == "empty":
        (runners / "cuda_v12").mkdir(parents=True)  # a dir without its ollama_* executable

    report = runner_report(runners, **machine)

    assert report.runners_dir is None
    assert report.missing is not None
    expected = "is not a directory" if layout == "missing" else "holds no runners"
    assert expected in report.missing
    assert report.requested == "cuda_v12"


def test_runners_are_located_next_to_the_ollama_executable(
    tmp_path: Path, machine: dict[str, Any]
) -> None:
    prefix = tmp_path / "usr"
    (prefix / "bin").mkdir(parents=True)
    exe = prefix / "bin" / "ollama"
    exe.write_bytes(b"#!/bin/sh\n")
    exe.chmod(0o755)
    runners = make_runners(prefix / "lib" / "ollama" / "runners", ["cpu_avx2", "cuda_v12"])
    machine["environ"] = {"PATH": str(prefix / "bin")}

    report = runner_report(**machine)

    assert report.runners_dir == str(runners)
    assert report.runners == ("cuda_v12", "cpu_avx2")


def test_runner_report_detects_gpus_itself(tmp_path: Path, machine: dict[str, Any]) -> None:
    nvml = FakeNvml.gtx_1080()
    machine["nvml"] = nvml

    report = runner_report(make_runners(tmp_path / "runners", ERA_B), **machine)

    assert nvml.init_calls == 1
    assert report.target == "cuda GPU 0: NVIDIA GeForce GTX 1080"
    assert report.runners[0] == "cuda_v12"


# --------------------------------------------------------------------------- output


def test_json_round_trips_exactly(server: FakeOllama, machine: dict[str, Any]) -> None:
    OllamaClient(server.url).load("llama3.2:1b")

    report = doctor(server.url, model="llama3.2:1b", **machine)

    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data  # no tuples, no objects: plain JSON
    assert data["ok"] is True
    assert data["server"]["version"] == "0.12.11"
    assert data["server"]["models"][0]["name"] == "llama3.2:1b"
    assert data["model"]["fit"]["verdict"] == "full"
    assert data["model"]["fit_summary"].startswith("fits fully")
    assert data["gpus"]["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert data["cpu"] == {
        "capability": "avx2",
        "flags": ["avx", "avx2", "f16c", "fma"],
        "platform": "linux/amd64",
    }
    assert data["runners"]["requested"] == "cuda_v12"
    assert {f["severity"] for f in data["findings"]} <= {"error", "warning", "info"}


def row_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("  ")]


def test_text_is_aligned_and_plain(server: FakeOllama, machine: dict[str, Any]) -> None:
    report = doctor(closed_port_url(), model="llama3.2:1b", **machine)
    text = report.describe()

    assert "\x1b" not in text
    rows = row_lines(text)
    assert rows
    value_column = {
        len(m.group(0)) for line in rows if (m := re.match(r"  \S[^ ]*(?: \S+)*\s+", line))
    }
    assert len(value_column) == 1, value_column
    (column,) = value_column
    for line in rows:
        assert line[column - 1] == " "
        assert line[column] != " ", line
    assert not any(line != line.rstrip() for line in text.splitlines())


def test_findings_are_ordered_errors_first(machine: dict[str, Any]) -> None:
    machine["nvml"] = FakeNvml.driver_not_loaded()

    # Found in this order: server error, "remote" info, no-GPU warning, runner info.
    report = doctor("ollama.internal", session=refusing_session(), **machine)

    severities = [f.severity for f in report.findings]
    assert severities == ["error", "warning", "info", "info"]
    assert report.findings[2].message.startswith("the server at http://ollama.internal")
    assert report.headline() == "ollama-ready doctor: not ok (1 error, 1 warning)"


def test_repr_and_html(server: FakeOllama, machine: dict[str, Any]) -> None:
    report = doctor(server.url, model="llama3.2:1b", **machine)

    text = repr(report)
    assert text.startswith("DoctorReport(ok=True")
    assert "version='0.12.11'" in text
    assert "runner='cuda_v12'" in text
    page = report._repr_html_()
    assert "<table" in page
    assert "NVIDIA H100 80GB HBM3" in page
    assert repr(report.runners).startswith("RunnerReport(chosen=None, requested='cuda_v12'")


def test_reports_are_frozen(server: FakeOllama, machine: dict[str, Any]) -> None:
    report = doctor(server.url, **machine)

    with pytest.raises(AttributeError):
        report.remote = True  # type: ignore[misc]


# --------------------------------------------------------------------------- GpuReport.describe


def test_gpu_report_describe_lists_devices_driver_and_notes() -> None:
    text = detect_gpus(FakeNvml.mixed()).describe()
    lines = text.splitlines()

    assert lines[0].startswith("2 GPUs: NVIDIA GeForce RTX 3090")
    assert any("Tesla K80" in line and "unsupported" in line for line in lines)
    assert "  driver 470.256.02, CUDA 11.4" in lines
    assert any(line.startswith("  note: ") for line in lines)


def test_gpu_report_describe_without_devices_gives_the_reason() -> None:
    report = GpuReport(library="cuda", reason="nothing here", warnings=("careful",))

    assert report.describe() == "no usable GPU: nothing here\n  warning: careful"
