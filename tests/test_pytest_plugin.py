"""The pytest plugin, exercised through real pytest sessions run by ``pytester``.

Each inner session talks to a FakeOllama that the outer test starts, so the counts of requests
it received tell what the plugin did (one wait per session, one pull across xdist workers).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ollama_ready.pytest_plugin import OllamaOptions, resolve_options
from ollama_ready.testing import FakeOllama

# In-process pytester runs drop the modules first imported during a run; import what the plugin
# loads lazily now, so every run sees the same classes (requests' cookie jar, our errors, ...).
for _module in ("requests", "ollama_ready.ensure", "ollama_ready.gpu", "ollama_ready.pull"):
    importlib.import_module(_module)

pytest_plugins = ["pytester"]

# Inner sessions skip the cache and hypothesis' plugin (which re-imports hypothesis every run).
NO_CACHE = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(tick=0.005) as fake:
        yield fake


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (a port that was just closed)."""
    fake = FakeOllama().start()
    url = fake.url
    fake.stop()
    return url


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NO_CACHE, "-rsxX", *args)


# --------------------------------------------------------------------------- options


def _resolve(
    pytester: pytest.Pytester, args: tuple[str, ...], env: dict[str, str], ini: str
) -> OllamaOptions:
    if ini:
        pytester.makefile(".ini", pytest="[pytest]\n" + ini)
    config = pytester.parseconfig(*args)
    return resolve_options(config, environ=env)


PRECEDENCE = [
    pytest.param((), {}, "", "http://127.0.0.1:11434", "default", id="default"),
    pytest.param(
        (), {}, "ollama_host = ini:1", "http://ini:1", "ollama_host in pytest.ini", id="ini"
    ),
    pytest.param(
        (),
        {"OLLAMA_HOST": "env:2"},
        "ollama_host = ini:1",
        "http://env:2",
        "OLLAMA_HOST",
        id="env-over-ini",
    ),
    pytest.param(
        ("--ollama-host", "cli:3"),
        {"OLLAMA_HOST": "env:2"},
        "ollama_host = ini:1",
        "http://cli:3",
        "--ollama-host",
        id="cli-over-env",
    ),
    pytest.param(
        (),
        {"OLLAMA_HOST": "  "},
        "ollama_host = ini:1",
        "http://ini:1",
        "ollama_host in pytest.ini",
        id="empty-env-is-unset",
    ),
]


@pytest.mark.parametrize(("args", "env", "ini", "host", "origin"), PRECEDENCE)
def test_host_precedence(
    pytester: pytest.Pytester,
    args: tuple[str, ...],
    env: dict[str, str],
    ini: str,
    host: str,
    origin: str,
) -> None:
    resolved = _resolve(pytester, args, env, ini)
    assert resolved.settings.host == host
    assert resolved.origins["host"] == origin
    expected_source = {"default": "default", "OLLAMA_HOST": "OLLAMA_HOST"}.get(origin, "argument")
    assert resolved.settings.host_source == expected_source


@pytest.mark.parametrize(
    ("args", "env", "ini", "timeout", "origin"),
    [
        ((), {}, "", 600.0, "default"),
        ((), {}, "ollama_timeout = 30", 30.0, "ollama_timeout in pytest.ini"),
        ((), {"OLLAMA_READY_TIMEOUT": "2m"}, "ollama_timeout = 30", 120.0, "OLLAMA_READY_TIMEOUT"),
        (("--ollama-timeout=7.5",), {"OLLAMA_READY_TIMEOUT": "2m"}, "", 7.5, "--ollama-timeout"),
    ],
)
def test_timeout_precedence(
    pytester: pytest.Pytester,
    args: tuple[str, ...],
    env: dict[str, str],
    ini: str,
    timeout: float,
    origin: str,
) -> None:
    resolved = _resolve(pytester, args, env, ini)
    assert resolved.settings.timeout == timeout
    assert resolved.origins["timeout"] == origin


@pytest.mark.parametrize(
    ("args", "env", "ini", "required", "origin"),
    [
        ((), {}, "", False, "default"),
        ((), {}, "ollama_required = true", True, "ollama_required in pytest.ini"),
        (
            (),
            {"OLLAMA_READY_REQUIRED": "0"},
            "ollama_required = yes",
            False,
            "OLLAMA_READY_REQUIRED",
        ),
        (("--ollama-required",), {"OLLAMA_READY_REQUIRED": "off"}, "", True, "--ollama-required"),
    ],
)
def test_required_precedence(
    pytester: pytest.Pytester,
    args: tuple[str, ...],
    env: dict[str, str],
    ini: str,
    required: bool,
    origin: str,
) -> None:
    resolved = _resolve(pytester, args, env, ini)
    assert resolved.required is required
    assert resolved.origins["required"] == origin


def test_other_variables_reach_the_settings(pytester: pytest.Pytester) -> None:
    resolved = _resolve(
        pytester, (), {"OLLAMA_READY_PULL_POLICY": "never", "OLLAMA_API_KEY": "k"}, ""
    )
    assert resolved.settings.pull_policy == "never"
    assert resolved.settings.api_key == "k"
    assert "http://127.0.0.1:11434 (from default), timeout 600 s" in resolved.describe()


@pytest.mark.parametrize(
    ("args", "env", "ini", "named"),
    [
        ((), {"OLLAMA_READY_TIMEOUT": "soon"}, "", "OLLAMA_READY_TIMEOUT"),
        ((), {}, "ollama_timeout = -3", "ollama_timeout in pytest.ini"),
        ((), {}, "ollama_required = maybe", "ollama_required in pytest.ini"),
        ((), {"OLLAMA_HOST": "ftp://x"}, "", "OLLAMA_HOST"),
    ],
)
def test_invalid_values_name_their_origin(
    pytester: pytest.Pytester, args: tuple[str, ...], env: dict[str, str], ini: str, named: str
) -> None:
    with pytest.raises(pytest.UsageError, match=named):
        _resolve(pytester, args, env, ini)


def test_invalid_command_line_value_is_a_usage_error_at_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--ollama-timeout=never")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ollama-timeout*never*"])


def test_options_have_their_own_group_and_ini_twins(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(
        [
            "ollama_ready: an Ollama server and its models:",
            "*--ollama-host=HOST*",
            "*--ollama-timeout=SECONDS*",
            "*--ollama-required*",
        ]
    )
    text = result.stdout.str()
    for ini in ("ollama_host", "ollama_timeout", "ollama_required"):
        assert f"  {ini} " in text


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.ollama_model(*names, load=False, **options):*",
            "@pytest.mark.fake_ollama(**kwargs):*",
        ]
    )


def test_importing_the_package_does_not_load_the_plugin() -> None:
    code = "import sys, ollama_ready; print('ollama_ready.pytest_plugin' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- ollama_model


def test_ollama_model_pulls_once_and_returns_the_result(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from ollama_ready.ensure import EnsureResult

        @pytest.mark.ollama_model("llama3.2:1b")
        def test_first(ollama_model):
            assert isinstance(ollama_model, EnsureResult)
            assert ollama_model.display_name == "llama3.2:1b"
            assert ollama_model.pulled

        @pytest.mark.ollama_model("llama3.2:1b")
        def test_second(ollama_model, ollama_client):
            assert not ollama_model.pulled
            assert any(m.name == "llama3.2:1b" for m in ollama_client.list_models())
        """
    )
    result = run(pytester, "--strict-markers", "--ollama-host", server.url)
    result.assert_outcomes(passed=2)
    assert server.count("POST", "/api/pull") == 1
    assert server.has_model("llama3.2:1b")


def test_several_models_and_class_markers(pytester: pytest.Pytester, server: FakeOllama) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ollama_model("tinyllama", load=False)
        class TestModels:
            @pytest.mark.ollama_model("qwen2.5:0.5b", load=True)
            def test_both(self, ollama_model):
                names = [r.display_name for r in ollama_model]
                assert names == ["tinyllama:latest", "qwen2.5:0.5b"]
                assert all(r.placement is not None for r in ollama_model)
                assert ollama_model[0].placement.label == "100% CPU"
        """
    )
    result = run(pytester, "--ollama-host", server.url)
    result.assert_outcomes(passed=1)
    assert server.is_loaded("tinyllama")
    assert server.is_loaded("qwen2.5:0.5b")


def test_models_from_the_environment_when_no_marker(
    pytester: pytest.Pytester, server: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_READY_MODELS", "tinyllama")
    pytester.makepyfile(
        """
        def test_env(ollama_model):
            assert ollama_model.display_name == "tinyllama:latest"
        """
    )
    run(pytester, "--ollama-host", server.url).assert_outcomes(passed=1)


def test_no_model_named_is_an_error_that_says_what_to_do(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    pytester.makepyfile("def test_none(ollama_model): pass")
    result = run(pytester, "--ollama-host", server.url)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*names no model*@pytest.mark.ollama_model*OLLAMA_READY_MODELS*"])


def test_unknown_marker_option_is_an_error(pytester: pytest.Pytester, server: FakeOllama) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ollama_model("tinyllama", lod=True)
        def test_typo(ollama_model):
            pass
        """
    )
    result = run(pytester, "--ollama-host", server.url)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown option(s) lod*valid:*load*"])
    assert server.count("POST", "/api/pull") == 0


def test_a_failed_pull_fails_the_test_with_the_reason(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ollama_model("no-such-model:7b")
        def test_missing(ollama_model):
            pass
        """
    )
    result = run(pytester, "--ollama-host", server.url)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ollama_model:*no-such-model*"])
    assert "Traceback" not in result.stdout.str()


# --------------------------------------------------------------------------- ollama_server


SERVER_TESTS = """
import pytest

def test_a(ollama_server):
    assert ollama_server.version == "0.12.11"

def test_b(ollama_client):
    assert ollama_client.version() == "0.12.11"

def test_c(ollama_server, ollama_settings):
    assert ollama_server.host == ollama_settings.host
"""


def test_server_is_waited_for_once_per_session(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    pytester.makepyfile("def test_one(ollama_server): pass")
    run(pytester, "--no-header", "--ollama-host", server.url).assert_outcomes(passed=1)
    one = server.count("GET", "/api/version")
    server.clear_requests()
    pytester.makepyfile(SERVER_TESTS)
    run(pytester, "--no-header", "--ollama-host", server.url).assert_outcomes(passed=3)
    # b's own version() call is the only extra request: the session waited once.
    assert (one, server.count("GET", "/api/version")) == (1, 2)


def test_no_server_skips_at_once_with_the_reason(pytester: pytest.Pytester, dead_url: str) -> None:
    pytester.makepyfile(SERVER_TESTS)
    started = time.monotonic()
    result = run(pytester, "--ollama-host", dead_url, "--ollama-timeout", "60")
    assert time.monotonic() - started < 20
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(
        [f"SKIPPED*no Ollama server at {dead_url}*connection refused*--ollama-required*"]
    )


def test_no_server_fails_when_required(pytester: pytest.Pytester, dead_url: str) -> None:
    pytester.makepyfile(SERVER_TESTS)
    result = run(
        pytester, "--ollama-host", dead_url, "--ollama-timeout", "0.3", "--ollama-required"
    )
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines([f"*no Ollama server at {dead_url}*not ready after*"])


def test_required_waits_for_a_server_that_comes_up(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    server.refuse_connections(0.6)
    pytester.makepyfile(SERVER_TESTS)
    result = run(
        pytester, "--ollama-host", server.url, "--ollama-timeout", "30", "--ollama-required"
    )
    result.assert_outcomes(passed=3)


def test_a_server_that_answers_late_is_waited_for(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    server.hang_connections(0.5)
    pytester.makepyfile(SERVER_TESTS)
    run(pytester, "--no-header", "--ollama-host", server.url).assert_outcomes(passed=3)


def test_a_server_that_never_answers_is_skipped_after_the_timeout(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    server.hang_connections(30)
    pytester.makepyfile(SERVER_TESTS)
    started = time.monotonic()
    result = run(pytester, "--no-header", "--ollama-host", server.url, "--ollama-timeout", "0.5")
    assert time.monotonic() - started < 15
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["SKIPPED*no Ollama server at*"])


def test_fixtures_can_be_overridden_in_conftest(
    pytester: pytest.Pytester, server: FakeOllama, dead_url: str
) -> None:
    pytester.makeconftest(
        f"""
        import pytest
        from ollama_ready.config import Settings

        @pytest.fixture(scope="session")
        def ollama_settings():
            return Settings.from_env({{}}, host={server.url!r}, timeout=20)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ollama_model("tinyllama")
        def test_overridden(ollama_model, ollama_settings):
            assert ollama_model.host == ollama_settings.host
        """
    )
    run(pytester, "--ollama-host", dead_url).assert_outcomes(passed=1)
    assert server.has_model("tinyllama")


# --------------------------------------------------------------------------- fake_ollama


def test_fake_ollama_fixture_marker_and_faults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pytest
        import requests

        STARTED = []

        @pytest.mark.fake_ollama(models=["tinyllama"], version="0.5.7")
        def test_configured(fake_ollama):
            assert os.environ["OLLAMA_HOST"] == fake_ollama.url
            assert fake_ollama.has_model("tinyllama")
            version = requests.get(fake_ollama.url + "/api/version", timeout=5).json()
            assert version == {"version": "0.5.7"}
            fake_ollama.fail_next(1, status=503, path="/api/tags")
            assert requests.get(fake_ollama.url + "/api/tags", timeout=5).status_code == 503

        def test_defaults(fake_ollama):
            assert fake_ollama.models == ()
            assert fake_ollama.tick == 0.01

        def test_factory(fake_ollama_factory):
            first = fake_ollama_factory(models=["tinyllama"])
            second = fake_ollama_factory(version="0.3.10")
            assert first.url != second.url
            STARTED.append(first.url)

        def test_factory_servers_were_stopped():
            with pytest.raises(requests.ConnectionError):
                requests.get(STARTED[0], timeout=5)
        """
    )
    run(pytester).assert_outcomes(passed=4)


def test_fake_ollama_marker_rejects_positional_arguments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.fake_ollama("tinyllama")
        def test_bad(fake_ollama):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*keyword arguments only*"])


# --------------------------------------------------------------------------- header


def test_report_header_shows_host_version_and_gpus(
    pytester: pytest.Pytester, server: FakeOllama
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--ollama-host", server.url)
    result.stdout.fnmatch_lines(
        [f"ollama: {server.url} (from --ollama-host): Ollama 0.12.11", "ollama: GPUs here: *"]
    )


def test_report_header_never_hangs(pytester: pytest.Pytester, server: FakeOllama) -> None:
    server.hang_connections(30)
    pytester.makepyfile("def test_nothing(): pass")
    started = time.monotonic()
    result = run(pytester, "--ollama-host", server.url)
    assert time.monotonic() - started < 10
    result.stdout.fnmatch_lines([f"ollama: {server.url} (from --ollama-host): not reachable*"])
    result.assert_outcomes(passed=1)


def test_report_header_shows_a_configuration_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_READY_REQUIRED", "perhaps")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    result.stdout.fnmatch_lines(["ollama: configuration error:*OLLAMA_READY_REQUIRED*perhaps*"])


# --------------------------------------------------------------------------- xdist

XDIST_TESTS = """
import pytest

@pytest.mark.parametrize("n", range(8))
@pytest.mark.ollama_model("llama3.2:1b")
def test_uses_the_model(ollama_model, n):
    assert ollama_model.display_name == "llama3.2:1b"
"""


def test_xdist_workers_pull_a_model_once(pytester: pytest.Pytester) -> None:
    # 1.3 GB at 1 GB/s: the pull lasts over a second, long enough for the workers to overlap.
    with FakeOllama(tick=0.02, bandwidth=1_000_000_000) as fake:
        pytester.makepyfile(XDIST_TESTS)
        result = pytester.runpytest_subprocess(
            *NO_CACHE, "-n", "4", "--ollama-host", fake.url, timeout=90
        )
        result.assert_outcomes(passed=8)
        pulls = [r for r in fake.requests if r.path == "/api/pull"]
        assert len(pulls) == 1
        # Proof that the workers really overlapped: the requests that follow the pull come
        # from the worker that pulled (the others wait on the lock), so every worker whose
        # session probe came before them was waiting while the pull ran.
        done = min(r.at for r in fake.requests if r.at > pulls[0].at and r.path != "/api/version")
        early = [r for r in fake.requests if r.path == "/api/version" and r.at < done]
        # The header's probe and the puller's two (session, ensure) come first anyway.
        assert len(early) >= 4, "the workers did not overlap: the test proves nothing"
