"""strategy_from_spec: the text form of strategies, built-ins and entry points."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollama_ready.errors import InvalidStrategySpec
from ollama_ready.readiness import (
    Healthcheck,
    Poll,
    ReadyLevel,
    Sequence,
    Serve,
    Sleep,
    strategy_from_spec,
    wait_until_ready,
)
from ollama_ready.testing import FakeClock

BUILTINS = "healthcheck, poll, serve, sleep"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("poll", Poll()),
        ("POLL", Poll()),
        (" poll : interval = 0.2 , timeout = 60 ", Poll(interval=0.2, timeout=60)),
        ("poll:interval=200ms,probe_timeout=1m", Poll(interval=0.2, probe_timeout=60)),
        ("poll:timeout=none", Poll(timeout=None)),
        ("poll:timeout=2h", Poll(timeout=7200)),
        (
            "poll:schedule=expo,interval=0.1,max_interval=5,jitter=0",
            Poll(schedule="expo", interval=0.1, max_interval=5, jitter=0),
        ),
        ("poll:path=/api/version,method=GET", Poll(path="/api/version", method="GET")),
        ("poll:connect-timeout=1", Poll(connect_timeout=1)),
        ("sleep:2", Sleep(2)),
        ("sleep:seconds=2,verify=false", Sleep(2, verify=False)),
        ("sleep:0.5,verify=no", Sleep(0.5, verify=False)),
        (
            "healthcheck:level=gpu,model=llama3.2:1b,interval=5s,retries=5,start_period=1m",
            Healthcheck(
                level=ReadyLevel.MODEL_ON_GPU,
                model="llama3.2:1b",
                interval=5,
                retries=5,
                start_period=60,
            ),
        ),
        (
            "healthcheck:version='>=0.11,<1',success_threshold=2",
            Healthcheck(version=">=0.11,<1", success_threshold=2),
        ),
        ('healthcheck:version=">=0.11"', Healthcheck(version=">=0.11")),
        ("serve", Serve()),
        (
            "serve:binary=/opt/ollama/bin/ollama,log_file=/tmp/ollama.log,stop_timeout=3",
            Serve(binary="/opt/ollama/bin/ollama", log_file="/tmp/ollama.log", stop_timeout=3),
        ),
        ("sleep:2+poll", Sequence(Sleep(2), Poll())),
        (
            "sleep:1,verify=false + poll:interval=0.1 + healthcheck:model=m",
            Sequence(Sleep(1, verify=False), Poll(interval=0.1), Healthcheck(model="m")),
        ),
    ],
)
def test_specs_build_strategies(spec: str, expected: object) -> None:
    assert strategy_from_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", f"empty wait strategy spec; valid strategies: {BUILTINS}"),
        ("   ", "empty wait strategy spec"),
        ("pol", f"unknown wait strategy 'pol' in 'pol'; valid strategies: {BUILTINS}"),
        (":interval=1", "missing strategy name"),
        ("poll+", "empty part between '\\+'"),
        ("poll:interval=1,,timeout=2", "empty part between ','"),
        ("poll:intervall=1", "no parameter 'intervall'.*valid: connect_timeout, interval, jitter"),
        ("poll:interval=fast", "interval='fast': expected a number of seconds"),
        ("poll:interval=-1", "interval must be a positive number"),
        ("poll:interval=0", "interval must be a positive number"),
        ("poll:interval=nan", "interval must be a positive number"),
        ("poll:interval=inf", "interval must be finite"),
        ("poll:0.2", "name the parameters"),
        ("poll:schedule=linear", "expected one of constant, expo, fibo"),
        ("poll:method=POST", "method must be one of HEAD, GET"),
        ("poll:interval=1,interval=2", "given twice"),
        ("poll:interval=1,2", "only the first parameter may omit its name"),
        ("poll:1x=2", "'1x' is not a parameter name"),
        ("sleep:two", "seconds='two'"),
        ("sleep:1,verify=maybe", "expected true or false"),
        ("healthcheck:retries=1.5", "retries='1.5'"),
        ("healthcheck:level=ready", "unknown readiness level 'ready'; valid: server"),
        ("healthcheck:level=model", "needs a model"),
        ("healthcheck:model=bad name!", "model"),
        ("healthcheck:version=>>1", "invalid version requirement"),
        ("serve:env=A", "no parameter 'env' that a spec can set; valid: binary, log_file"),
        ("serve:then=poll", "no parameter 'then'"),
        ("poll:path='/x", "unclosed quote"),
        ("poll:path=/a'b'", "quote a whole value"),
    ],
)
def test_bad_specs_say_what_is_valid(spec: str, message: str) -> None:
    with pytest.raises(InvalidStrategySpec, match=message) as caught:
        strategy_from_spec(spec)
    assert isinstance(caught.value, ValueError)


# --- entry points ----------------------------------------------------------------------------

_PLUGIN = '''
"""A third-party distribution's strategies."""

from __future__ import annotations

from dataclasses import dataclass

from ollama_ready.readiness import ReadyLevel, ReadyReport


@dataclass(frozen=True)
class Knock:
    """Knock a few times, then declare the server ready."""

    times: int = 1
    loud: bool = False

    def __call__(self, client, deadline):
        return ReadyReport(
            host=client.base_url,
            level=ReadyLevel.SERVER,
            attempts=self.times,
            strategy=f"knock x{self.times} loud={self.loud}",
        )


class Textual:
    """Not a dataclass: it receives its parameters as text."""

    def __init__(self, word="none"):
        self.word = word

    def __call__(self, client, deadline):
        return ReadyReport(host=client.base_url, level=None, strategy=self.word)


def instant(client, deadline):
    return ReadyReport(host=client.base_url, level=ReadyLevel.SERVER, strategy="instant")
'''

_ENTRY_POINTS = """
[ollama_ready.strategies]
knock = acme_ollama_waits:Knock
textual = acme_ollama_waits:Textual
instant = acme_ollama_waits:instant
broken = acme_ollama_waits_missing:Thing
poll = acme_ollama_waits:Knock
"""


@pytest.fixture
def plugin_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install a distribution with strategies in the entry-point group, on sys.path."""
    (tmp_path / "acme_ollama_waits.py").write_text(_PLUGIN)
    info = tmp_path / "acme_ollama_waits-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ollama-waits\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(_ENTRY_POINTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("acme_ollama_waits", None)


def test_an_entry_point_strategy_is_found_and_used(plugin_distribution: Path) -> None:
    strategy = strategy_from_spec("knock:times=3,loud=yes")
    assert type(strategy).__module__ == "acme_ollama_waits"
    report = wait_until_ready("127.0.0.1:9", strategy="knock:times=3,loud=yes", clock=FakeClock())
    assert report.attempts == 3
    assert report.strategy == "knock x3 loud=True"


def test_the_environment_can_name_an_entry_point(
    plugin_distribution: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_READY_WAIT", "sleep:0.5,verify=false+knock:2")
    report = wait_until_ready("127.0.0.1:9", clock=FakeClock())
    assert report.attempts == 2


def test_entry_points_are_listed_among_the_choices(plugin_distribution: Path) -> None:
    with pytest.raises(
        InvalidStrategySpec, match=f"valid strategies: {BUILTINS}, broken, instant, knock, textual"
    ):
        strategy_from_spec("knok")


def test_a_ready_made_strategy_takes_no_parameters(plugin_distribution: Path) -> None:
    strategy = strategy_from_spec("instant")
    assert getattr(strategy, "__name__", None) == "instant"
    with pytest.raises(InvalidStrategySpec, match="ready-made strategy and takes no parameters"):
        strategy_from_spec("instant:x=1")


def test_a_plain_class_gets_its_parameters_as_text(plugin_distribution: Path) -> None:
    report = wait_until_ready("127.0.0.1:9", strategy="textual:word=hello", clock=FakeClock())
    assert report.strategy == "hello"
    with pytest.raises(InvalidStrategySpec, match="unexpected keyword"):
        strategy_from_spec("textual:colour=red")


def test_typed_parameters_of_an_entry_point_are_checked(plugin_distribution: Path) -> None:
    with pytest.raises(InvalidStrategySpec, match="times='many'"):
        strategy_from_spec("knock:times=many")
    with pytest.raises(InvalidStrategySpec, match=r"no parameter 'volume'.*valid: loud, times"):
        strategy_from_spec("knock:volume=11")


def test_a_broken_entry_point_is_named(plugin_distribution: Path) -> None:
    with pytest.raises(InvalidStrategySpec, match=r"'broken' \(acme_ollama_waits_missing:Thing\)"):
        strategy_from_spec("broken")


def test_built_ins_win_over_entry_points_of_the_same_name(plugin_distribution: Path) -> None:
    assert strategy_from_spec("poll") == Poll()


# --- fuzzing ---------------------------------------------------------------------------------

_NAMES = st.sampled_from(["poll", "sleep", "healthcheck", "serve", "Poll", "nope", ""])
_KEYS = st.sampled_from(
    [
        "interval",
        "timeout",
        "schedule",
        "max_interval",
        "jitter",
        "probe_timeout",
        "path",
        "method",
        "seconds",
        "verify",
        "level",
        "version",
        "model",
        "retries",
        "start_period",
        "success_threshold",
        "binary",
        "log_file",
        "env",
        "then",
        "x",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(
        ["0", "-1", "nan", "inf", "1e999", "0.05", "2s", "10ms", "1m", "true", "none", "gpu"]
    ),
    st.sampled_from(["expo", "HEAD", "/", ">=0.11", "'a,b'", '"', "llama3.2:1b", ""]),
    st.text(max_size=12),
)
_PARAM = st.builds(lambda k, v: f"{k}={v}", _KEYS, _VALUES) | _VALUES
_STEP = st.builds(
    lambda name, params: name + (":" + ",".join(params) if params else ""),
    _NAMES,
    st.lists(_PARAM, max_size=4),
)
_SPECS = st.builds("+".join, st.lists(_STEP, min_size=1, max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_SPECS, st.text(max_size=60)))
def test_any_text_builds_a_strategy_or_raises_a_spec_error(spec: str) -> None:
    try:
        strategy = strategy_from_spec(spec)
    except ValueError as exc:  # InvalidStrategySpec is one
        problem = str(exc)
    else:
        assert callable(strategy)
        return
    assert problem
