"""The ``ollama-ready`` command, called in process: ``main([...])`` against FakeOllama."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ollama_ready import errors
from ollama_ready._version import __version__
from ollama_ready.cli import EXIT_CODES, build_parser, exit_code_for, main
from ollama_ready.names import ModelName
from ollama_ready.testing import FakeOllama
from ollama_ready.testing._ollama_catalogue import default_registry

TICK = 0.005
PRESENT = "llama3.2:1b"
PULLABLE = "qwen2.5:0.5b"  # in FakeOllama's default registry, 398 MB simulated
ANSI_ESCAPE = "\x1b"


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(models=[PRESENT], tick=TICK) as fake:
        yield fake


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def assert_one_error(err: str, *, hint: bool = True) -> None:
    assert len(error_lines(err)) == 1, err
    assert ("hint: " in err) is hint, err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- exit codes


def test_exit_codes_are_the_documented_stable_set() -> None:
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 130, 143]
    epilog = build_parser().epilog or ""
    for code, meaning in EXIT_CODES.items():
        assert f"{code:<4} {meaning}" in epilog


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ConfigError("bad"), 2),
        (errors.InvalidModelName("bad"), 2),
        (errors.InvalidHost("bad"), 2),
        (errors.InvalidStrategySpec("bad"), 2),
        (errors.NotReadyError("late"), 3),
        (errors.OllamaConnectionError("refused", kind="refused"), 3),
        (errors.DeadlineExceeded("late", phase="wait"), 3),
        (errors.DeadlineExceeded("late", phase="load"), 3),
        (errors.DeadlineExceeded("late"), 3),
        (errors.ModelNotFound("no such model"), 4),
        (errors.ModelNotPresent("absent"), 4),
        (errors.DeadlineExceeded("late", phase="pull"), 5),
        (errors.PullStalled("stalled"), 5),
        (errors.PullRetriesExhausted("gave up"), 5),
        (errors.Unauthorized("no"), 5),
        (errors.DigestMismatch("bad blob"), 5),
        (errors.DiskFull("full"), 6),
        (errors.PlacementError("cpu"), 7),
        (errors.ServerTooOld("old"), 8),
        (errors.ResponseError("500", status=500), 1),
        (errors.ProtocolError("html"), 1),
        (RuntimeError("bug"), 1),
    ],
)
def test_every_error_has_its_exit_code(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_several_failures_exit_with_the_first_ones_code() -> None:
    aggregate = errors.AggregateError(
        "2 of 2 failed", {"a": errors.DiskFull("full"), "b": errors.ModelNotFound("none")}
    )
    assert exit_code_for(aggregate) == 6


# --------------------------------------------------------------------------- parser


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"ollama-ready {__version__}\n")


def test_help_names_every_command_and_the_precedence(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("wait", "pull", "ensure", "check", "list", "gpus", "runners", "doctor", "demo"):
        assert command in out
    assert "command-line option > environment variable > default" in out


def test_every_option_names_its_environment_variable_or_default() -> None:
    parser = build_parser()
    subparsers = next(
        action for action in parser._actions if action.dest == "command"
    ).choices  # argparse has no public accessor for the subcommands
    assert isinstance(subparsers, dict)
    for name, sub in subparsers.items():
        for action in sub._actions:
            if not action.option_strings or action.dest in ("help", "json", "verbose", "quiet"):
                continue
            text = action.help or ""
            assert "env:" in text or "default" in text, f"{name} {action.option_strings}"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["ensure", "--timeout", "soon", PRESENT],
        ["ensure", "--timeout", "0", PRESENT],
        ["ensure", "--concurrency", "0", PRESENT],
        ["ensure", "--policy", "sometimes", PRESENT],
        ["check", "--level", "everything"],
        ["-v", "-q", "list"],
        ["pull"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "usage: ollama-ready" in err


def test_output_options_before_the_command_are_kept(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, out, _ = run(capsys, "--json", "ensure", PRESENT, "--host", server.url)
    assert code == 0
    assert json.loads(out)[0]["model"] == f"registry.ollama.ai/library/{PRESENT}"

    code, out, err = run(capsys, "-q", "ensure", PRESENT, "--host", server.url)
    assert (code, out, err) == (0, "", "")


# --------------------------------------------------------------------------- ensure and pull


def test_ensure_of_a_present_model(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    code, out, err = run(capsys, "ensure", PRESENT, "--host", server.url)
    assert code == 0
    assert out.startswith(f"ready: {PRESENT} on {server.url} (Ollama 0.12.11): already present")
    assert "error" not in err
    assert server.count("POST", "/api/pull") == 0


def test_ensure_json_result(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    code, out, _ = run(capsys, "ensure", PRESENT, "--host", server.url, "--json")
    assert code == 0
    (result,) = json.loads(out)
    assert result["pulled"] is False
    assert result["server_version"] == "0.12.11"
    assert result["digest"] == server.model(PRESENT).manifest_digest  # type: ignore[union-attr]
    assert set(result["phases"]) >= {"wait", "version", "pull"}


def test_ensure_pulls_a_missing_model_with_plain_progress_lines(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.set_bandwidth(2_000_000_000)
    code, out, err = run(capsys, "ensure", PULLABLE, "--host", server.url, "--progress", "lines")
    assert code == 0
    assert f"ready: {PULLABLE}" in out
    assert "pulled" in out
    assert f"{PULLABLE}: pulling manifest" in err
    assert f"{PULLABLE}: success" in err
    assert ANSI_ESCAPE not in err
    assert "\r" not in err
    assert server.has_model(PULLABLE)


def test_json_progress_goes_to_stderr_and_the_result_to_stdout(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.set_bandwidth(2_000_000_000)
    argv = ["ensure", PULLABLE, "--host", server.url, "--progress", "json", "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0
    assert json.loads(out)[0]["pulled"] is True
    events = [json.loads(line) for line in err.splitlines()]
    assert events
    assert {event["model"] for event in events} == {PULLABLE}
    assert events[-1]["phase"] == "done"


def test_auto_progress_on_a_captured_stream_is_plain_lines(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.set_bandwidth(2_000_000_000)
    code, _, err = run(capsys, "ensure", PULLABLE, "--host", server.url)
    assert code == 0
    assert f"{PULLABLE}: success" in err
    assert ANSI_ESCAPE not in err


def test_quiet_prints_nothing_on_success(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.set_bandwidth(2_000_000_000)
    assert run(capsys, "ensure", PULLABLE, "--host", server.url, "-q") == (0, "", "")


def test_pull_pulls_even_a_present_model(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, out, _ = run(capsys, "pull", PRESENT, "--host", server.url, "--progress", "none")
    assert code == 0
    assert server.count("POST", "/api/pull") == 1
    assert f"ready: {PRESENT}" in out


def test_models_and_host_from_the_environment(
    capsys: pytest.CaptureFixture[str], server: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    monkeypatch.setenv("OLLAMA_READY_MODELS", PRESENT)
    code, out, _ = run(capsys, "ensure")
    assert code == 0
    assert f"ready: {PRESENT} on {server.url}" in out


def test_no_model_anywhere_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, out, err = run(capsys, "ensure", "--host", server.url)
    assert (code, out) == (2, "")
    assert "no model given and OLLAMA_READY_MODELS is empty" in err
    assert_one_error(err)
    assert server.requests == []


def test_an_option_beats_its_environment_variable(
    capsys: pytest.CaptureFixture[str],
    server: FakeOllama,
    dead_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", dead_url)
    monkeypatch.setenv("OLLAMA_READY_PULL_POLICY", "never")
    code, _, err = run(capsys, "ensure", PULLABLE, "--host", server.url)
    assert code == 4  # the host option won; the policy came from the environment
    assert "never" in err
    assert server.count("POST", "/api/pull") == 0

    server.set_bandwidth(2_000_000_000)
    argv = ["ensure", PULLABLE, "--host", server.url, "--policy", "missing", "-q"]
    assert run(capsys, *argv) == (0, "", "")


def test_an_invalid_environment_variable_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str], server: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_READY_TIMEOUT", "soon")
    code, _, err = run(capsys, "ensure", PRESENT, "--host", server.url)
    assert code == 2
    assert "OLLAMA_READY_TIMEOUT" in err
    assert server.requests == []


def test_an_invalid_model_name_is_refused_before_any_request(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, _, err = run(capsys, "ensure", "bad name!", "--host", server.url)
    assert code == 2
    assert len(error_lines(err)) == 1
    assert server.requests == []


def test_server_not_ready_exits_3_with_a_hint(
    capsys: pytest.CaptureFixture[str], dead_url: str
) -> None:
    argv = [
        "ensure",
        PRESENT,
        "--host",
        dead_url,
        "--timeout",
        "0.3",
        "--wait",
        "poll:interval=0.05",
    ]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (3, "")
    assert_one_error(err)
    assert dead_url in err


def test_model_not_in_the_registry_exits_4(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, _, err = run(capsys, "ensure", "nosuch:model", "--host", server.url, "--progress", "none")
    assert code == 4
    assert_one_error(err)
    assert "nosuch:model" in error_lines(err)[0]


def test_verbose_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, _, err = run(capsys, "ensure", "nosuch:model", "--host", server.url, "-v")
    assert code == 4
    assert "Traceback (most recent call last)" in err
    assert "DEBUG ollama_ready.client" in err


def test_pull_refused_by_the_registry_exits_5(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.error_mid_stream("pull model manifest: 401: unauthorized", at_fraction=0.0)
    code, _, err = run(capsys, "ensure", PULLABLE, "--host", server.url, "--progress", "none")
    assert code == 5
    assert_one_error(err)


def test_deadline_during_the_pull_exits_5(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.set_bandwidth(10_000_000)
    argv = ["ensure", PULLABLE, "--host", server.url, "--timeout", "0.5", "--progress", "none"]
    code, _, err = run(capsys, *argv)
    assert code == 5
    assert len(error_lines(err)) == 1
    assert "Traceback" not in err


def test_disk_full_exits_6(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    server.error_mid_stream(
        "write /root/.ollama/models/blobs/sha256-x-partial: no space left on device"
    )
    code, _, err = run(capsys, "ensure", PULLABLE, "--host", server.url, "--progress", "none")
    assert code == 6
    assert_one_error(err)


def test_model_not_on_the_gpu_exits_7(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, _, err = run(capsys, "ensure", PRESENT, "--host", server.url, "--require-gpu")
    assert code == 7
    assert_one_error(err)
    assert "100% CPU" in err


def test_a_server_too_old_exits_8(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOllama(models=[PRESENT], version="0.3.0", tick=TICK) as old:
        argv = ["ensure", PRESENT, "--host", old.url, "--min-server-version", "0.5"]
        code, _, err = run(capsys, *argv)
    assert code == 8
    assert_one_error(err)
    assert "0.3.0" in err


def test_ensure_loads_and_reports_the_placement(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.vram_fraction = 1.0
    code, out, _ = run(capsys, "ensure", PRESENT, "--host", server.url, "--require-gpu")
    assert code == 0
    assert "100% GPU" in out
    assert server.is_loaded(PRESENT)


def test_one_of_several_models_failing_names_it(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    argv = ["ensure", PRESENT, "nosuch:model", "--host", server.url, "--progress", "none"]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (4, "")
    assert error_lines(err) == ["error: 1 of 2 models on " + server.url + " failed"]
    assert "nosuch:model" in err
    assert "hint: nosuch:model: " in err


def test_json_error_object_on_stdout(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    code, out, err = run(capsys, "ensure", "nosuch:model", "--host", server.url, "--json")
    assert code == 4
    error: dict[str, Any] = json.loads(out)["error"]
    assert error["type"] == "ModelNotFound"
    assert error["exit_code"] == 4
    assert error["hint"]
    assert error["host"] == server.url
    assert_one_error(err)


# --------------------------------------------------------------------------- check and wait


def test_check_server_level(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    code, out, _ = run(capsys, "check", "--host", server.url)
    assert code == 0
    assert out.startswith(f"ok: {server.url}: server")


def test_check_of_a_dead_server_exits_3_at_once(
    capsys: pytest.CaptureFixture[str], dead_url: str
) -> None:
    started = time.monotonic()
    code, _, err = run(capsys, "check", "--host", dead_url)
    assert code == 3
    assert time.monotonic() - started < 2
    assert_one_error(err)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--model", PRESENT], 0),
        (["--level", "model", "--model", PRESENT], 0),
        (["--level", "model", "--model", "nosuch:model"], 4),
        (["--model", PRESENT, "--model", "nosuch:model"], 4),
        (["--level", "loaded", "--model", PRESENT], 3),
        (["--level", "version", "--min-server-version", "0.12"], 0),
        (["--min-server-version", ">=99"], 8),
        (["--level", "model"], 2),
        (["--model", "bad name!"], 2),
        (["--min-server-version", "soon"], 2),
    ],
)
def test_check_levels_and_their_exit_codes(
    capsys: pytest.CaptureFixture[str], server: FakeOllama, extra: list[str], code: int
) -> None:
    assert run(capsys, "check", "--host", server.url, *extra)[0] == code


def test_check_gpu_level(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    assert run(capsys, "ensure", PRESENT, "--host", server.url, "--load", "-q")[0] == 0
    code, _, err = run(capsys, "check", "--host", server.url, "--level", "gpu", "--model", PRESENT)
    assert code == 7
    assert_one_error(err)
    assert (
        run(capsys, "check", "--host", server.url, "--level", "loaded", "--model", PRESENT)[0] == 0
    )


def test_check_models_from_the_environment(
    capsys: pytest.CaptureFixture[str], server: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_READY_MODELS", "nosuch:model")
    assert run(capsys, "check", "--host", server.url)[0] == 0  # server level: models unused
    assert run(capsys, "check", "--host", server.url, "--level", "model")[0] == 4


def test_check_json(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    code, out, _ = run(capsys, "check", "--host", server.url, "--model", PRESENT, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["level"] == "model_present"
    assert report["version"] == "0.12.11"
    assert report["host"] == server.url


def test_wait_with_a_spec(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    code, out, _ = run(capsys, "wait", "poll:interval=0.05", "--host", server.url)
    assert code == 0
    assert out.startswith(f"ready: {server.url}")


def test_wait_json(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    code, out, _ = run(capsys, "wait", "--host", server.url, "--json")
    assert code == 0
    assert json.loads(out)["host"] == server.url


def test_wait_for_a_dead_server_exits_3(capsys: pytest.CaptureFixture[str], dead_url: str) -> None:
    code, _, err = run(capsys, "wait", "poll:interval=0.05", "--host", dead_url, "--timeout", "0.3")
    assert code == 3
    assert_one_error(err)


def test_wait_spec_from_the_environment(
    capsys: pytest.CaptureFixture[str], server: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_READY_WAIT", "nonsense:1")
    assert run(capsys, "wait", "--host", server.url)[0] == 2
    assert run(capsys, "wait", "poll", "--host", server.url)[0] == 0


# --------------------------------------------------------------------------- list and demo


def test_list(capsys: pytest.CaptureFixture[str], server: FakeOllama) -> None:
    code, out, _ = run(capsys, "list", "--host", server.url)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert row.startswith(PRESENT)

    code, out, _ = run(capsys, "list", "--host", server.url, "--json")
    assert code == 0
    assert [m["name"] for m in json.loads(out)] == [PRESENT]


def test_list_of_a_dead_server_exits_3(capsys: pytest.CaptureFixture[str], dead_url: str) -> None:
    code, _, err = run(capsys, "list", "--host", dead_url)
    assert code == 3
    assert_one_error(err)


def test_demo_shows_progress_and_ends_well(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo", "--seconds", "0.2", "--progress", "lines")
    assert code == 0
    assert "ready: llama3.2:1b" in out
    assert "pulled" in out
    assert "already present" in out
    assert "llama3.2:1b: pulling" in err
    assert "llama3.2:1b: success" in err


def test_demo_ignores_the_environment(
    capsys: pytest.CaptureFixture[str], dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", dead_url)
    monkeypatch.setenv("OLLAMA_READY_PULL_POLICY", "never")
    assert run(capsys, "demo", "--seconds", "0.1", "-q")[0] == 0


def test_demo_of_an_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "demo", "--model", "nosuch:model")
    assert code == 2
    assert "hint: choose one of: " in err


# --------------------------------------------------------------------------- signals


def test_sigterm_during_a_pull_returns_143_and_stops_the_download(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.set_bandwidth(20_000_000)  # 20 s for the weights: only the signal ends it
    weights = _weights_digest(PULLABLE)
    previous = signal.getsignal(signal.SIGTERM)
    killer = Killer(lambda: server.partial_bytes(weights) > 0)
    code, out, err = run(capsys, "ensure", PULLABLE, "--host", server.url)
    returned = time.monotonic()
    assert code == 143
    assert killer.sent_at is not None
    assert returned - killer.sent_at < 1.0
    assert out == ""
    assert "interrupted (SIGTERM)" in err
    assert f"the pull of {PULLABLE} was " in err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is previous
    assert _download_stops(server, weights)


class Killer:
    """Send SIGTERM to this process once ``ready()`` holds (the command's handler is in place)."""

    def __init__(self, ready: Callable[[], bool], timeout: float = 10.0) -> None:
        self.sent_at: float | None = None
        self._ready = ready
        self._until = time.monotonic() + timeout
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while time.monotonic() < self._until:
            if self._ready():
                self.sent_at = time.monotonic()
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)


def _weights_digest(name: str) -> str:
    (model,) = (m for m in default_registry() if ModelName.parse(name).matches(m.name))
    return model.blobs[0].digest


def _download_stops(server: FakeOllama, digest: str) -> bool:
    """Whether the server's download of ``digest`` stops growing: its last client went away."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        before = server.partial_bytes(digest)
        time.sleep(0.2)
        if 0 < before == server.partial_bytes(digest):
            return True
    return False


def test_a_command_given_up_on_prints_no_late_result(
    capsys: pytest.CaptureFixture[str], server: FakeOllama
) -> None:
    server.hang_connections(2)  # the list request blocks until then, past the interrupt
    previous = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    killer = Killer(
        lambda: (
            signal.getsignal(signal.SIGTERM) is not previous and time.monotonic() - started > 0.3
        )
    )
    code, out, err = run(capsys, "list", "--host", server.url)
    assert code == 143
    assert killer.sent_at is not None
    assert "interrupted (SIGTERM)" in err
    # Called with argv, main() returns and leaves the blocked worker to finish on its own.
    (worker,) = (t for t in threading.enumerate() if t.name == "ollama-ready-command")
    worker.join(10)
    assert not worker.is_alive()
    late_out, late_err = capsys.readouterr()
    assert out == late_out == ""
    assert late_err == ""
