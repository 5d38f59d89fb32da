"""Fuzz the user-facing parsers: hosts, model names and the settings read from the environment.

Properties: only the documented exception escapes, nothing hangs (hypothesis' deadline and
pytest-timeout), and whatever is accepted is really valid (checked by independent oracles).
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ollama._client import _parse_host as official_parse_host

from ollama_ready.config import Settings, parse_host
from ollama_ready.errors import ConfigError, InvalidHost, InvalidModelName
from ollama_ready.names import ModelName

_T = TypeVar("_T")

FUZZ = settings(max_examples=300, deadline=timedelta(seconds=1))

# --------------------------------------------------------------------------- host strategies

_HOST_ALPHABET = "abcXYZ019-_.:[]/@%?#'\" \t\x00é"
_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
_HOSTNAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_IPV4 = st.ip_addresses(v=4).map(str)
_IPV6 = st.ip_addresses(v=6).map(str)
_HOST_PART = st.one_of(
    _HOSTNAME,
    _IPV4,
    _IPV6,
    _IPV6.map(lambda a: f"[{a}]"),
    st.sampled_from(["", "0.0.0.0", "::", "[::]", "localhost", "ollama.com", "[::1", "a:b:c"]),
    st.text(_HOST_ALPHABET, max_size=12),
)
_PORT_PART = st.one_of(
    st.just(""),
    st.integers(-100_000, 200_000).map(lambda n: f":{n}"),
    st.text("0123456789+-_a ", max_size=8).map(lambda t: f":{t}"),
)
_PATH_PART = st.one_of(
    st.just(""),
    st.text("abc/%é?#~:@ ", max_size=10).map(lambda t: f"/{t}"),
)
_SCHEME_PART = st.sampled_from(["", "", "http://", "https://", "HTTPS://", "ftp://", "://", "h"])
_WRAPPING = st.sampled_from(["", " ", '"', "'", " ' ", "\n"])


@st.composite
def _host_values(draw: st.DrawFn) -> str:
    wrap = draw(_WRAPPING)
    body = draw(_SCHEME_PART) + draw(_HOST_PART) + draw(_PORT_PART) + draw(_PATH_PART)
    return f"{wrap}{body}{wrap[::-1]}"


def _check_base_url(url: str) -> None:
    """Assert that ``url`` is a usable base URL: an oracle independent of config.py."""
    split = urllib.parse.urlsplit(url)
    assert split.scheme in ("http", "https")
    port = split.port  # raises ValueError on a bad port
    assert port is not None
    assert 0 <= port <= 65535
    assert split.hostname
    assert not split.query
    assert not split.fragment
    assert split.username is None
    assert f"{split.scheme}://{split.netloc}{split.path}" == url
    assert url.isascii()
    assert not url.endswith("/")
    try:
        address = ipaddress.ip_address(split.hostname.partition("%")[0])
    except ValueError:
        return
    assert not address.is_unspecified, "bind-all addresses must be rewritten to loopback"


def _attempt(call: Callable[[], _T], error: type[Exception]) -> tuple[_T | None, str]:
    """Return ``(result, "")``, or ``(None, message)`` if ``call`` raised ``error``."""
    try:
        return call(), ""
    except error as exc:
        return None, str(exc)


def _check_host_outcome(value: str | None) -> None:
    url, error = _attempt(lambda: parse_host(value), InvalidHost)
    if url is None:
        assert error.startswith(f"invalid Ollama host {value or ''!r}: ")
        return
    _check_base_url(url)
    assert parse_host(url) == url


@FUZZ
@given(st.text(max_size=60))
def test_parse_host_on_any_text(value: str) -> None:
    _check_host_outcome(value)


@FUZZ
@given(_host_values())
@example("[::]:0/x")
@example("https://0.0.0.0:65535/a/b/")
@example("[fe80::1%eth0]:1")
def test_parse_host_on_host_like_text(value: str) -> None:
    _check_host_outcome(value)


def _connectable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return not address.is_unspecified and not (mapped is not None and mapped.is_unspecified)


_WELL_FORMED_HOST = st.one_of(
    _HOSTNAME.filter(lambda h: h != "ollama.com"),
    _IPV4.filter(lambda a: a != "0.0.0.0"),
    st.ip_addresses(v=6).filter(_connectable).map(lambda a: f"[{a}]"),
)


@FUZZ
@given(
    scheme=st.sampled_from(["", "http://", "https://"]),
    host=_WELL_FORMED_HOST,
    port=st.one_of(st.just(""), st.integers(1, 65535).map(lambda n: f":{n}")),
    path=st.lists(_LABEL, max_size=3).map("/".join),
    slash=st.booleans(),
)
def test_well_formed_hosts_agree_with_the_official_client(
    scheme: str, host: str, port: str, path: str, slash: bool
) -> None:
    value = f"{scheme}{host}{port}" + (f"/{path}" if path else "") + ("/" if slash else "")
    assert parse_host(value) == official_parse_host(value)


# --------------------------------------------------------------------------- model names

# The rules of §4.1, written independently of names.py.
_PART_RULES = {
    "host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}", re.ASCII),
    "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}", re.ASCII),
    "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}", re.ASCII),
    "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}", re.ASCII),
}
_NAME_ALPHABET = "abZ09_-.:/@ é"
_PART = st.one_of(
    st.text("abcXYZ0189_-.", min_size=1, max_size=10),
    st.text(_NAME_ALPHABET, max_size=6),
    st.sampled_from(["8" * 80, "8" * 81, "3" * 350, "3" * 351, ""]),
)


@st.composite
def _name_values(draw: st.DrawFn) -> str:
    text = draw(_PART)
    if draw(st.booleans()):
        text = f"{draw(_PART)}/{text}"
        if draw(st.booleans()):
            text = f"{draw(_PART)}/{text}"
            if draw(st.booleans()):
                text = draw(st.sampled_from(["http://", "https://", "HTTP://", "ftp://"])) + text
    if draw(st.booleans()):
        text = f"{text}:{draw(_PART)}"
    return text


def _check_name_outcome(text: str) -> None:
    name, error = _attempt(lambda: ModelName.parse(text), InvalidModelName)
    if name is None:
        assert error.startswith(f"invalid model name {text!r}: the ")
        return
    assert name.is_valid()
    for part, rule in _PART_RULES.items():
        assert rule.fullmatch(getattr(name, part)), (part, name)
    assert name.scheme in ("http", "https")
    again = ModelName.parse(name.full)
    assert (again.host, again.namespace, again.model, again.tag) == (
        name.host,
        name.namespace,
        name.model,
        name.tag,
    )
    assert ModelName.parse(name.display) == name
    assert ModelName.from_filepath(name.filepath) == name
    swapped = ModelName.parse(text.swapcase())
    assert swapped == name
    assert hash(swapped) == hash(name)


@FUZZ
@given(st.text(max_size=40))
def test_model_name_parse_on_any_text(text: str) -> None:
    _check_name_outcome(text)


@FUZZ
@given(_name_values())
@example("_why/_the/_lucky:_stiff")
@example("host:https/namespace/model:tag")
def test_model_name_parse_on_name_like_text(text: str) -> None:
    _check_name_outcome(text)


@FUZZ
@given(st.text(max_size=40))
def test_parse_bare_never_raises_and_agrees_with_parse(text: str) -> None:
    bare = ModelName.parse_bare(text)
    if bare.is_valid() and bare.scheme.lower() in ("", "http", "https"):
        assert ModelName.parse(text) == bare


# --------------------------------------------------------------------------- settings


@FUZZ
@given(st.text(max_size=20))
@example("1h30m")
@example("1e-400")
@example("-0")
def test_timeout_variable_is_positive_and_finite_or_rejected(text: str) -> None:
    value, error = _attempt(
        lambda: Settings.from_env({"OLLAMA_READY_TIMEOUT": text}).timeout, ConfigError
    )
    if value is None:
        assert error.startswith("OLLAMA_READY_TIMEOUT=")
        return
    assert math.isfinite(value)
    assert value > 0


@FUZZ
@given(st.text(max_size=20))
def test_keep_alive_variable_is_a_duration_or_rejected(text: str) -> None:
    settings, error = _attempt(
        lambda: Settings.from_env({"OLLAMA_READY_KEEP_ALIVE": text}), ConfigError
    )
    if settings is None:
        assert error.startswith("OLLAMA_READY_KEEP_ALIVE=")
        return
    value = settings.keep_alive
    assert value is None or isinstance(value, str) or math.isfinite(value)


@FUZZ
@given(st.text(st.characters(codec="utf-8"), max_size=40))
@example("X-A: 1; X-B: 2")
def test_headers_variable_gives_sendable_headers_or_is_rejected(text: str) -> None:
    headers, error = _attempt(
        lambda: Settings.from_env({"OLLAMA_READY_HEADERS": text}).request_headers(), ConfigError
    )
    if headers is None:
        assert error.startswith("OLLAMA_READY_HEADERS=*** is invalid: ")
        return
    for name, value in headers.items():
        assert re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name)
        assert "\r" not in value
        assert "\n" not in value


# --------------------------------------------------------------------------- no hang


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_host("[" * 100_000),
        lambda: parse_host("a." * 100_000),
        lambda: parse_host("h:" + "9" * 100_000),
        lambda: parse_host("h/" + "%" * 100_000),
        lambda: ModelName.parse("a:" * 100_000),
        lambda: ModelName.parse("/" * 100_000),
        lambda: Settings.from_env({"OLLAMA_READY_TIMEOUT": "1h" * 50_000}),
        lambda: Settings.from_env({"OLLAMA_READY_HEADERS": "X: y;" * 50_000}),
    ],
)
def test_huge_inputs_finish_quickly(call: Callable[[], object]) -> None:
    started = time.perf_counter()
    _attempt(call, ConfigError)
    assert time.perf_counter() - started < 2.0
