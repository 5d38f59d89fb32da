"""The ``doctor``, ``gpus`` and ``runners`` commands, run in process through ``cli.main``.

The CLI detects hardware itself, so these tests run on whatever this machine has: without an
NVIDIA driver, NVML's absence must be a reason, not a crash. For the rich cases the
``pynvml`` import is pointed at a :class:`FakeNvml` (the module the GPU code imports lazily).
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ollama_ready.cli import main
from ollama_ready.cpu import cpu_capability, host_platform
from ollama_ready.testing import FakeModel, FakeNvml, FakeOllama

CANARY = "canary-5b1e77c0-api-key"
ERA_B = ("cpu", "cpu_avx", "cpu_avx2", "cuda_v11", "cuda_v12", "rocm")


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    model = FakeModel.synthetic("llama3.2:1b", size=1_300_000_000)
    with FakeOllama(models=[model], tick=0.01) as fake:
        yield fake


@pytest.fixture
def fake_h100(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """Make ``import pynvml`` inside GPU detection return a FakeNvml with one H100."""
    nvml = FakeNvml.h100()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def run_json(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code, out = run([*argv, "--json"], capsys)
    return code, json.loads(out)


def make_runners(root: Path, names: Sequence[str]) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "ollama_llama_server").write_bytes(b"\x7fELF")
    return root


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def gpu_is_skipped_for_lack_of_avx() -> bool:
    """Ollama v0.4 ignores GPUs on an x86-64 CPU without AVX (this machine's CPU decides)."""
    return host_platform()[1] == "amd64" and cpu_capability() == "none"


# --------------------------------------------------------------------------- doctor


def test_doctor_json_against_a_live_server_exits_0(
    server: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = run_json(["doctor", "--host", server.url], capsys)

    assert code == 0
    assert data["ok"] is True
    assert data["server"]["state"] == "ok"
    assert data["server"]["version"] == "0.12.11"
    assert [m["name"] for m in data["server"]["models"]] == ["llama3.2:1b"]
    # This machine's real hardware: a list of GPUs, or a reason there are none.
    assert data["gpus"]["devices"] or data["gpus"]["reason"]
    assert data["cpu"]["capability"] in ("avx2", "avx", "none")
    assert data["runners"]["requested"]


def test_doctor_text_output(server: FakeOllama, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["doctor", "--host", server.url, "--model", "llama3.2:1b"], capsys)

    assert code == 0
    assert out.startswith("ollama-ready doctor: ok")
    for title in ("Server", "GPUs", "CPU", "Runner", "Model llama3.2:1b", "Findings"):
        assert f"\n{title}\n" in out
    assert "reachable, Ollama 0.12.11" in out
    assert "\x1b" not in out


def test_doctor_exits_1_when_the_server_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(["doctor", "--host", closed_port_url(), "--timeout", "2"], capsys)

    assert code == 1
    assert data["ok"] is False
    assert data["server"]["state"] == "unreachable"
    assert data["server"]["error_kind"] == "refused"
    assert "ollama serve" in data["server"]["hint"]


def test_doctor_exits_1_when_the_model_is_missing(
    server: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = run_json(["doctor", "--host", server.url, "--model", "qwen2.5:0.5b"], capsys)

    assert code == 1
    assert data["model"]["present"] is False
    assert any(f["topic"] == "model" and f["severity"] == "error" for f in data["findings"])


def test_doctor_with_a_fake_h100_estimates_the_fit(
    server: FakeOllama, fake_h100: FakeNvml, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = run_json(["doctor", "--host", server.url, "--model", "llama3.2:1b"], capsys)

    assert code == 0
    assert fake_h100.init_calls == 1
    assert data["gpus"]["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert data["model"]["fit"]["verdict"] == "full"
    if not gpu_is_skipped_for_lack_of_avx():
        assert data["runners"]["requested"] == "cuda_v12"


def test_doctor_never_prints_the_api_key(
    server: FakeOllama, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", CANARY)
    server.respond_with(
        "GET",
        "/api/tags",
        status=401,
        body=json.dumps({"error": f"key {CANARY} is not valid here"}),
        headers={"Content-Type": "application/json"},
        times=2,
    )

    json_code, json_out = run(["doctor", "--host", server.url, "--json"], capsys)
    text_code, text_out = run(["doctor", "--host", server.url], capsys)

    assert server.requests[0].headers["Authorization"] == f"Bearer {CANARY}"
    assert json_code == text_code == 1
    assert "is not valid here" in text_out
    assert CANARY not in json_out
    assert CANARY not in text_out


def test_doctor_rejects_a_bad_host_as_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--host", "http://user:pw@localhost:11434"])

    assert code == 2
    assert "credentials" in capsys.readouterr().err


# --------------------------------------------------------------------------- gpus


def test_gpus_json_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(["gpus"], capsys)

    assert code == 0
    assert data["library"] == "cuda"
    if not data["devices"]:
        assert isinstance(data["reason"], str)
        assert data["reason"]


def test_gpus_with_a_fake_h100(fake_h100: FakeNvml, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(["gpus"], capsys)
    text_code, text = run(["gpus"], capsys)

    assert code == text_code == 0
    (gpu,) = data["devices"]
    assert gpu["gpu_id"] == "GPU-5f4c4e2a-9b1d-4c8e-a3f7-1e2d3c4b5a69"
    assert data["driver_version"] == "580.159.04"
    assert text.splitlines()[0] == "1 GPU: NVIDIA H100 80GB HBM3 (79.1 GiB free)"
    assert "  driver 580.159.04, CUDA 13.0" in text.splitlines()


def test_gpus_without_a_driver(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml.driver_not_loaded())

    code, text = run(["gpus"], capsys)

    assert code == 0
    assert text.startswith("no usable GPU: the NVIDIA kernel driver is not loaded")


# --------------------------------------------------------------------------- runners


def test_runners_text_with_a_dir(
    tmp_path: Path, fake_h100: FakeNvml, capsys: pytest.CaptureFixture[str]
) -> None:
    runners = make_runners(tmp_path / "runners", ERA_B)

    code, out = run(["runners", "--dir", str(runners)], capsys)

    assert code == 0
    assert out.startswith("Runner\n")
    assert f"runners dir   {runners}" in out
    assert "cpu, cpu_avx, cpu_avx2, cuda_v11, cuda_v12, rocm" in out
    if gpu_is_skipped_for_lack_of_avx():
        assert "chosen        cpu" in out
    else:
        assert "order         cuda_v12 > cuda_v11" in out
        assert "chosen        cuda_v12" in out


def test_runners_json_with_a_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runners = make_runners(tmp_path / "runners", ["cpu", "cpu_avx2"])

    code, data = run_json(["runners", "--dir", str(runners)], capsys)

    assert code == 0
    assert data["runners_dir"] == str(runners)
    assert set(data["available"]) == {"cpu", "cpu_avx2"}
    assert data["chosen"] in ("cpu", "cpu_avx2")
    assert data["reasons"]


def test_runners_with_a_missing_dir_still_names_the_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = run_json(["runners", "--dir", str(tmp_path / "nowhere")], capsys)

    assert code == 0
    assert data["runners_dir"] is None
    assert data["runners"] == []
    assert "is not a directory" in data["missing"]
    assert data["requested"]
