"""Every file in ``examples/`` runs here, against FakeOllama, the way a user would run it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import requests

from ollama_ready.client import OllamaClient
from ollama_ready.clock import Deadline
from ollama_ready.errors import NotReadyError
from ollama_ready.readiness import ReadyLevel
from ollama_ready.testing import FakeClock, FakeOllama

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent
NO_CACHE = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

# In-process pytester runs drop modules first imported during a run (see test_pytest_plugin).
for _module in ("ollama", "ollama_ready.ensure", "ollama_ready.gpu", "ollama_ready.pull"):
    importlib.import_module(_module)


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(tick=0.005) as fake:
        yield fake


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def add_after_first_look(server: FakeOllama, model: str) -> threading.Thread:
    """Add ``model`` once someone has listed the models and not found it."""

    def wait_then_add() -> None:
        deadline = Deadline(30)
        while server.count("GET", "/api/tags") == 0 and not deadline.expired:
            deadline.sleep(0.01)
        server.add_model(model)

    thread = threading.Thread(target=wait_then_add, daemon=True)
    thread.start()
    return thread


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- generator_service


def start_service(url: str, model: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / "generator_service.py"), "--port", "0", "--timeout", "30"],
        env=environment(OLLAMA_HOST=url, GENERATOR_MODEL=model),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_generator_service_ensures_its_model_then_serves(server: FakeOllama) -> None:
    server.refuse_connections(0.5)  # the service starts before the Ollama server does
    service = start_service(server.url, "llama3.2:1b")
    try:
        assert service.stdout is not None
        line = service.stdout.readline()
        match = re.fullmatch(r"serving llama3\.2:1b on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, (line, service.poll())
        base = match[1]
        health = requests.get(f"{base}/healthz", timeout=10).json()
        assert health["model"] == "registry.ollama.ai/library/llama3.2:1b"
        assert health["pulled"] is True
        answer = requests.post(f"{base}/generate", json={"prompt": "Hello"}, timeout=10)
        assert answer.json() == {
            "model": "llama3.2:1b",
            "response": "This is a reply from FakeOllama.",
        }
        bad = requests.post(f"{base}/generate", json={"text": "Hello"}, timeout=10)
        assert bad.status_code == 400
        paths = [r.path for r in server.requests]
        assert paths.index("/api/pull") < paths.index("/api/generate")
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=10) == 0
    finally:
        service.kill()
        service.communicate()


def test_generator_service_refuses_to_start_without_its_model(server: FakeOllama) -> None:
    service = start_service(server.url, "no-such-model:1b")
    out, err = service.communicate(timeout=60)
    assert service.returncode == 1
    assert "serving" not in out
    assert "cannot start:" in err
    assert "no-such-model" in err
    assert "hint:" in err
    assert server.count("POST", "/api/generate") == 0


# --------------------------------------------------------------------------- custom_strategy


def test_custom_strategy_waits_until_the_model_is_listed(server: FakeOllama) -> None:
    strategy = load_example("custom_strategy").ModelListed("tinyllama", interval=0.05)
    add_after_first_look(server, "tinyllama")
    with OllamaClient(server.url) as client:
        report = strategy(client, Deadline(10))
    assert report.level is ReadyLevel.MODEL_PRESENT
    assert report.attempts > 1
    assert report.strategy == "ModelListed(model='tinyllama', interval=0.05, request_timeout=10.0)"


def test_custom_strategy_gives_up_at_the_deadline(server: FakeOllama) -> None:
    clock = FakeClock()
    strategy = load_example("custom_strategy").ModelListed("tinyllama", interval=2.0)
    with OllamaClient(server.url) as client, pytest.raises(NotReadyError) as caught:
        strategy(client, Deadline(60, clock=clock))
    assert clock.sleeps == [2.0] * 29
    assert "tinyllama:latest not listed" in str(caught.value)
    assert "not listed among 0 models" in str(caught.value)
    assert caught.value.hint == "is the init container still pulling it? check its logs"


def test_custom_strategy_checks_its_arguments_at_once() -> None:
    listed = load_example("custom_strategy").ModelListed
    with pytest.raises(ValueError, match="interval"):
        listed("tinyllama", interval=0)
    with pytest.raises(ValueError, match="invalid model name"):
        listed("bad name!")


@pytest.fixture(scope="module")
def installed_strategy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install examples/custom_strategy_pkg as a user would, into a private target dir."""
    if importlib.util.find_spec("hatchling") is None:
        pytest.fail("hatchling is needed to build the example distribution: pip install '.[docs]'")
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(EXAMPLES, source / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation"),
            *("--no-deps", "--no-index", "--target", str(target)),
            str(source / "examples/custom_strategy_pkg"),
        ],
        check=True,
        timeout=120,
    )
    return target


def test_installed_strategy_is_found_by_name(installed_strategy: Path, server: FakeOllama) -> None:
    add_after_first_look(server, "tinyllama")
    result = subprocess.run(
        [str(BIN / "ollama-ready"), "wait", "--host", server.url, "--timeout", "20"],
        env=environment(
            PYTHONPATH=str(installed_strategy), OLLAMA_READY_WAIT="listed:tinyllama,interval=50ms"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert server.has_model("tinyllama")
    assert server.count("GET", "/api/tags") >= 2


def test_installed_strategy_reports_why_it_gave_up(
    installed_strategy: Path, server: FakeOllama
) -> None:
    code = (
        "from ollama_ready.readiness import wait_until_ready\n"
        "wait_until_ready(strategy='listed:model=qwen2.5:0.5b,interval=0.1', timeout=0.5)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=environment(PYTHONPATH=str(installed_strategy), OLLAMA_HOST=server.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "NotReadyError: qwen2.5:0.5b not listed" in result.stderr


# --------------------------------------------------------------------------- conftest_example

APP_TESTS = """
import pytest


def test_chat_with_the_default_model(llm, chat_model):
    assert chat_model == "llama3.2:1b"
    reply = llm.generate(model=chat_model, prompt="Hi").response
    assert reply == "This is a reply from FakeOllama."


@pytest.mark.ollama_model("qwen2.5:0.5b")
def test_another_model(llm, chat_model):
    assert chat_model == "qwen2.5:0.5b"
    assert "qwen2.5:0.5b" in [m.model for m in llm.list().models]


def test_unit_against_the_fake(offline_llm, fake_ollama):
    fake_ollama.fail_next(1, status=503)
    with pytest.raises(Exception, match="server busy"):
        offline_llm.generate(model="llama3.2:1b", prompt="Hi")
    assert offline_llm.generate(model="llama3.2:1b", prompt="Hi").done
"""


def test_conftest_example(pytester: pytest.Pytester, server: FakeOllama) -> None:
    pytester.makeconftest((EXAMPLES / "conftest_example.py").read_text())
    pytester.makepyfile(test_app=APP_TESTS)
    result = pytester.runpytest(*NO_CACHE, "--ollama-host", server.url)
    result.assert_outcomes(passed=3)
    assert server.count("POST", "/api/pull") == 2
    assert server.has_model("llama3.2:1b")
    assert server.has_model("qwen2.5:0.5b")


def test_conftest_example_skips_integration_tests_without_a_server(
    pytester: pytest.Pytester,
) -> None:
    closed = FakeOllama().start()
    url = closed.url
    closed.stop()
    pytester.makeconftest((EXAMPLES / "conftest_example.py").read_text())
    pytester.makepyfile(test_app=APP_TESTS)
    result = pytester.runpytest(*NO_CACHE, "-rs", "--ollama-host", url)
    result.assert_outcomes(passed=1, skipped=2)
