"""OLLAMA_HOST rules (protocol doc §3) and Settings.from_env."""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
from collections.abc import Mapping

import pytest
from ollama._client import Client as OfficialClient
from ollama._client import _parse_host as official_parse_host

from ollama_ready._version import __version__
from ollama_ready.config import (
    DEFAULT_PORT,
    Settings,
    is_loopback_url,
    parse_host,
)
from ollama_ready.errors import ConfigError, InvalidHost, InvalidModelName

# Go TestHost (envconfig/config_test.go), then the connectable rewrite. Rows whose Go result
# differs say so: Go keeps a bind-all host, which a client cannot dial.
GO_TEST_HOST = [
    ("", "http://127.0.0.1:11434"),
    ("1.2.3.4", "http://1.2.3.4:11434"),
    (":1234", "http://127.0.0.1:1234"),  # Go: http://:1234
    ("1.2.3.4:1234", "http://1.2.3.4:1234"),
    ("example.com", "http://example.com:11434"),
    ("example.com:1234", "http://example.com:1234"),
    (":0", "http://127.0.0.1:0"),  # Go: http://:0
    (":66000", "http://127.0.0.1:11434"),  # Go: http://:11434
    (":-1", "http://127.0.0.1:11434"),  # Go: http://:11434
    ("[::1]", "http://[::1]:11434"),
    ("[::]", "http://[::1]:11434"),  # Go: http://[::]:11434
    ("::1", "http://[::1]:11434"),
    ("[::1]:1337", "http://[::1]:1337"),
    (" 1.2.3.4 ", "http://1.2.3.4:11434"),
    ('"1.2.3.4"', "http://1.2.3.4:11434"),
    (' " 1.2.3.4 " ', "http://1.2.3.4:11434"),
    ("'1.2.3.4'", "http://1.2.3.4:11434"),
    ("http://1.2.3.4", "http://1.2.3.4:80"),
    ("http://1.2.3.4:4321", "http://1.2.3.4:4321"),
    ("https://1.2.3.4", "https://1.2.3.4:443"),
    ("https://1.2.3.4:4321", "https://1.2.3.4:4321"),
    ("https://example.com/ollama", "https://example.com:443/ollama"),
    ("ollama.com", "https://ollama.com:443"),
]

# Go TestConnectableHost (HEAD).
GO_TEST_CONNECTABLE_HOST = [
    ("", "http://127.0.0.1:11434"),
    ("127.0.0.1", "http://127.0.0.1:11434"),
    ("127.0.0.1:1234", "http://127.0.0.1:1234"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("0.0.0.0:1234", "http://127.0.0.1:1234"),
    ("[::]", "http://[::1]:11434"),
    ("[::]:1234", "http://[::1]:1234"),
    ("[::1]", "http://[::1]:11434"),
    ("[::1]:1234", "http://[::1]:1234"),
    ("192.168.1.5", "http://192.168.1.5:11434"),
    ("192.168.1.5:8080", "http://192.168.1.5:8080"),
    ("example.com", "http://example.com:11434"),
    ("example.com:1234", "http://example.com:1234"),
    ("https://0.0.0.0:4321", "https://127.0.0.1:4321"),
]

# ollama-python's _parse_host doctest table (30 rows; None is the first).
V6 = "[0001:002:003:0004::1]"
PYTHON_DOCTEST: list[tuple[str | None, str]] = [
    (None, "http://127.0.0.1:11434"),
    ("", "http://127.0.0.1:11434"),
    ("1.2.3.4", "http://1.2.3.4:11434"),
    (":56789", "http://127.0.0.1:56789"),
    ("1.2.3.4:56789", "http://1.2.3.4:56789"),
    ("http://1.2.3.4", "http://1.2.3.4:80"),
    ("https://1.2.3.4", "https://1.2.3.4:443"),
    ("https://1.2.3.4:56789", "https://1.2.3.4:56789"),
    ("example.com", "http://example.com:11434"),
    ("example.com:56789", "http://example.com:56789"),
    ("http://example.com", "http://example.com:80"),
    ("https://example.com", "https://example.com:443"),
    ("https://example.com:56789", "https://example.com:56789"),
    ("example.com/", "http://example.com:11434"),
    ("example.com:56789/", "http://example.com:56789"),
    ("example.com/path", "http://example.com:11434/path"),
    ("example.com:56789/path", "http://example.com:56789/path"),
    ("https://example.com:56789/path", "https://example.com:56789/path"),
    ("example.com:56789/path/", "http://example.com:56789/path"),
    (V6, f"http://{V6}:11434"),
    (f"{V6}:56789", f"http://{V6}:56789"),
    (f"http://{V6}", f"http://{V6}:80"),
    (f"https://{V6}", f"https://{V6}:443"),
    (f"https://{V6}:56789", f"https://{V6}:56789"),
    (f"{V6}/", f"http://{V6}:11434"),
    (f"{V6}:56789/", f"http://{V6}:56789"),
    (f"{V6}/path", f"http://{V6}:11434/path"),
    (f"{V6}:56789/path", f"http://{V6}:56789/path"),
    (f"https://{V6}:56789/path", f"https://{V6}:56789/path"),
    (f"{V6}:56789/path/", f"http://{V6}:56789/path"),
]

# §3.3: where Go and ollama-python disagree we follow Go, plus the connectable rewrite.
DISAGREEMENTS = [
    (":1234", "http://127.0.0.1:1234"),  # both reach loopback
    (":0", "http://127.0.0.1:0"),  # Go keeps port 0; Python swaps in 11434
    (":66000", "http://127.0.0.1:11434"),  # Python raises
    (":-1", "http://127.0.0.1:11434"),  # Python raises
    ("::1", "http://[::1]:11434"),  # Python raises
    (" 1.2.3.4 ", "http://1.2.3.4:11434"),  # Python keeps the spaces
    ('"1.2.3.4"', "http://1.2.3.4:11434"),  # Python keeps the quotes
    ("'1.2.3.4'", "http://1.2.3.4:11434"),
    ("ollama.com", "https://ollama.com:443"),  # Python: http://ollama.com:11434
    ("example.com:56789/path/", "http://example.com:56789/path"),  # Go keeps the slash
    ("example.com/", "http://example.com:11434"),
    ("0.0.0.0", "http://127.0.0.1:11434"),  # neither rewrites in Host()
    ("HTTP://x", "http://x:11434"),  # Go and Python: a scheme that is not "http" keeps 11434
]

# Hosts that rewrite or fall back, and so must log a warning.
WARNED = [
    ":1234",
    ":0",
    ":66000",
    ":-1",
    "[::]",
    "0.0.0.0",
    "0.0.0.0:1234",
    "[::]:1234",
    "https://0.0.0.0:4321",
    "::ffff:0.0.0.0",
    "1.2.3.4:abc",
    "HTTP://x",
]

PORT_FALLBACKS = [
    ("1.2.3.4:abc", "http://1.2.3.4:11434"),
    ("http://1.2.3.4:abc", "http://1.2.3.4:80"),
    ("https://example.com:99999", "https://example.com:443"),
    ("example.com:", "http://example.com:11434"),
    ("example.com:1_0", "http://example.com:11434"),
    ("example.com:٣", "http://example.com:11434"),  # not an ASCII digit
    ("example.com:" + "9" * 5000, "http://example.com:11434"),
    ("example.com:+80", "http://example.com:80"),  # Go's ParseInt takes a sign
    ("example.com:0080", "http://example.com:80"),
]

OTHER_VALID = [
    ("localhost", "http://localhost:11434"),
    ("ollama:11434", "http://ollama:11434"),  # a compose service name
    ("my_host.internal", "http://my_host.internal:11434"),
    ("ollama.com:443", "http://ollama.com:443"),  # only the bare name implies https
    ("http://", "http://127.0.0.1:80"),
    ("https://:8443", "https://127.0.0.1:8443"),
    ("::", "http://[::1]:11434"),
    ("0:0:0:0:0:0:0:0", "http://[::1]:11434"),
    ("::ffff:0.0.0.0", "http://127.0.0.1:11434"),
    ("[::ffff:127.0.0.1]:8", "http://[::ffff:127.0.0.1]:8"),
    ("fe80::1%eth0", "http://[fe80::1%eth0]:11434"),
    ("[fe80::1%eth0]:80", "http://[fe80::1%eth0]:80"),
    ("example.com//a//b//", "http://example.com:11434/a//b"),
    ("example.com/ä_b", "http://example.com:11434/%C3%A4_b"),
    ("example.com/a%2Fb", "http://example.com:11434/a%2Fb"),
    ("EXAMPLE.com", "http://EXAMPLE.com:11434"),
    ("example.com.", "http://example.com.:11434"),
    ("\t'example.com'\n", "http://example.com:11434"),
]

INVALID_HOSTS = [
    ("ftp://example.com", "unsupported scheme 'ftp'"),
    ("://example.com", "unsupported scheme ''"),
    ("example.com/x://y", "unsupported scheme 'example.com/x'"),
    ("exa mple.com", "contains ' '"),
    ("example.com\t:80", "contains '\\t'"),
    ("host\x00", "contains '\\x00'"),
    ("\u200bhost", "contains '\\u200b'"),
    ("[::1", "never closed"),
    ("[::1]x", "unexpected 'x' after the IPv6 address"),
    ("[example.com]:80", "is not an IPv6 address"),
    ("example.com]", "']' without a matching '['"),
    ("a:b:c", "too many colons"),
    ("fe80::1%eth0:80", "too many colons"),
    ("user:secret@host", "credentials in the URL"),
    ("http://user@host:80", "credentials in the URL"),
    ("example.com/p?q=1", "cannot carry '?'"),
    ("example.com/p#f", "cannot carry '#'"),
    ("exämple.com", "not ASCII"),
    ("a..b", "is not a host name"),
    (".example.com", "is not a host name"),
    ("a" * 64 + ".com", "is not a host name"),
    ("a\\b", "is not a host name"),
]

LOOPBACK = [
    ("http://127.0.0.1:11434", True),
    ("http://127.8.9.1:1", True),
    ("http://[::1]:11434", True),
    ("http://localhost:11434", True),
    ("http://LocalHost.:11434/x", True),
    ("http://[::ffff:127.0.0.1]:1", True),
    ("http://10.0.0.1:11434", False),
    ("http://0.0.0.0:11434", False),
    ("https://example.com:443", False),
    ("http://localhost.example.com:1", False),
    ("http://[::1", False),
    ("not a url", False),
]


def _bare(environ: Mapping[str, str] | None = None, /, **explicit: object) -> Settings:
    return Settings.from_env({} if environ is None else environ, **explicit)


# --------------------------------------------------------------------------- parse_host


@pytest.mark.parametrize(("value", "expected"), GO_TEST_HOST)
def test_go_test_host(value: str, expected: str) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(("value", "expected"), GO_TEST_CONNECTABLE_HOST)
def test_go_test_connectable_host(value: str, expected: str) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(("value", "expected"), PYTHON_DOCTEST)
def test_python_doctest_table(value: str | None, expected: str) -> None:
    assert parse_host(value) == expected


def test_python_doctest_table_has_thirty_rows() -> None:
    assert len(PYTHON_DOCTEST) == 30


@pytest.mark.parametrize(("value", "expected"), PYTHON_DOCTEST)
def test_python_doctest_table_matches_the_official_client(value: str | None, expected: str) -> None:
    assert official_parse_host(value) == expected


@pytest.mark.parametrize(("value", "expected"), DISAGREEMENTS)
def test_disagreements_follow_go_and_the_connectable_rewrite(value: str, expected: str) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(("value", "expected"), PORT_FALLBACKS)
def test_bad_port_falls_back_to_the_scheme_default(value: str, expected: str) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(("value", "expected"), OTHER_VALID)
def test_other_valid_hosts(value: str, expected: str) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize("value", WARNED)
def test_rewrites_and_fallbacks_log_a_warning(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ollama_ready.config"):
        parse_host(value)
    assert caplog.records
    assert all(repr(value) in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "value", [None, "", "1.2.3.4", "example.com:1234", "[::1]", "https://ollama.com", "ollama.com"]
)
def test_plain_hosts_log_nothing(value: str | None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ollama_ready.config"):
        parse_host(value)
    assert not caplog.records


@pytest.mark.parametrize(("value", "reason"), INVALID_HOSTS)
def test_hopeless_hosts_raise(value: str, reason: str) -> None:
    with pytest.raises(InvalidHost) as caught:
        parse_host(value)
    assert str(caught.value).startswith(f"invalid Ollama host {value!r}: ")
    assert reason in str(caught.value)
    assert caught.value.host == value


def test_invalid_host_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unsupported scheme"):
        parse_host("gopher://x")
    assert issubclass(InvalidHost, ConfigError)


def test_hints_point_at_the_fix() -> None:
    with pytest.raises(InvalidHost) as caught:
        parse_host("fd00::1:2:3:x")
    assert caught.value.hint is not None
    assert "[::1]:11434" in caught.value.hint


@pytest.mark.parametrize(
    "value",
    [row[0] for row in GO_TEST_HOST + PYTHON_DOCTEST + PORT_FALLBACKS + OTHER_VALID],
)
def test_parse_host_is_idempotent(value: str | None) -> None:
    url = parse_host(value)
    assert parse_host(url) == url
    assert not url.endswith("/")


def test_default_port_constant() -> None:
    assert DEFAULT_PORT == 11434
    assert parse_host(None).endswith(f":{DEFAULT_PORT}")


@pytest.mark.parametrize(("url", "loopback"), LOOPBACK)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


# --------------------------------------------------------------------------- Settings.from_env


def test_defaults() -> None:
    settings = _bare()
    assert settings.host == "http://127.0.0.1:11434"
    assert settings.host_source == "default"
    assert settings.api_key is None
    assert dict(settings.headers) == {}
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 30.0)
    assert (settings.timeout, settings.stall_timeout) == (600.0, 120.0)
    assert settings.verify is True
    assert settings.wait is None
    assert settings.pull_policy == "missing"
    assert settings.models == ()
    assert (settings.load, settings.require_gpu, settings.insecure) == (False, False, False)
    assert settings.keep_alive is None
    assert settings.min_server_version is None
    assert settings.progress == "auto"


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:4000")
    monkeypatch.setenv("OLLAMA_READY_TIMEOUT", "42")
    settings = Settings.from_env()
    assert settings.host == "http://127.0.0.1:4000"
    assert settings.host_source == "OLLAMA_HOST"
    assert settings.timeout == 42.0


def test_a_mapping_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "elsewhere:1")
    assert Settings.from_env({}).host_source == "default"


def test_explicit_host_wins_over_an_invalid_environment() -> None:
    settings = _bare({"OLLAMA_HOST": "ftp://broken"}, host="example.com")
    assert settings.host == "http://example.com:11434"
    assert settings.host_source == "argument"


@pytest.mark.parametrize("value", ["", "   ", '""', "''"])
def test_empty_ollama_host_is_the_default(value: str) -> None:
    settings = _bare({"OLLAMA_HOST": value})
    assert (settings.host, settings.host_source) == ("http://127.0.0.1:11434", "default")


def test_explicit_none_means_not_given() -> None:
    settings = _bare({"OLLAMA_READY_TIMEOUT": "9", "OLLAMA_HOST": "h"}, timeout=None, host=None)
    assert settings.timeout == 9.0
    assert settings.host_source == "OLLAMA_HOST"


def test_explicit_values_win_over_the_environment() -> None:
    environ = {"OLLAMA_READY_TIMEOUT": "9", "OLLAMA_READY_PULL_POLICY": "never"}
    settings = _bare(environ, timeout=3, pull_policy="always", models=["a", "b"])
    assert (settings.timeout, settings.pull_policy, settings.models) == (3.0, "always", ("a", "b"))


def test_unknown_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        _bare(colour="red")


@pytest.mark.parametrize(
    ("variable", "text", "field", "expected"),
    [
        ("OLLAMA_HOST", "ollama:11434", "host", "http://ollama:11434"),
        ("OLLAMA_API_KEY", " sk-abc \n", "api_key", "sk-abc"),
        ("OLLAMA_READY_CONNECT_TIMEOUT", "2.5", "connect_timeout", 2.5),
        ("OLLAMA_READY_READ_TIMEOUT", "90s", "read_timeout", 90.0),
        ("OLLAMA_READY_TIMEOUT", "1h30m", "timeout", 5400.0),
        ("OLLAMA_READY_TIMEOUT", "1e3", "timeout", 1000.0),
        ("OLLAMA_READY_STALL_TIMEOUT", "500ms", "stall_timeout", 0.5),
        ("OLLAMA_READY_WAIT", "poll:interval=0.2", "wait", "poll:interval=0.2"),
        ("OLLAMA_READY_PULL_POLICY", "Always", "pull_policy", "always"),
        (
            "OLLAMA_READY_MODELS",
            "llama3.2:1b, qwen2.5:0.5b,,",
            "models",
            ("llama3.2:1b", "qwen2.5:0.5b"),
        ),
        ("OLLAMA_READY_LOAD", "yes", "load", True),
        ("OLLAMA_READY_LOAD", "0", "load", False),
        ("OLLAMA_READY_KEEP_ALIVE", "5m", "keep_alive", "5m"),
        ("OLLAMA_READY_KEEP_ALIVE", "300", "keep_alive", 300.0),
        ("OLLAMA_READY_KEEP_ALIVE", "-1", "keep_alive", -1.0),
        ("OLLAMA_READY_KEEP_ALIVE", "-1m", "keep_alive", "-1m"),
        ("OLLAMA_READY_REQUIRE_GPU", "TRUE", "require_gpu", True),
        ("OLLAMA_READY_MIN_SERVER_VERSION", "0.5.7", "min_server_version", ">=0.5.7"),
        ("OLLAMA_READY_MIN_SERVER_VERSION", ">=0.5,<0.13", "min_server_version", ">=0.5,<0.13"),
        ("OLLAMA_READY_INSECURE", "on", "insecure", True),
        ("OLLAMA_READY_PROGRESS", "json", "progress", "json"),
        ("OLLAMA_READY_VERIFY", "false", "verify", False),
        ("OLLAMA_READY_VERIFY", "true", "verify", True),
    ],
)
def test_each_variable_sets_its_field(
    variable: str, text: str, field: str, expected: object
) -> None:
    assert getattr(_bare({variable: text}), field) == expected


def test_variables_are_trimmed_like_ollama_var() -> None:
    settings = _bare({"OLLAMA_READY_TIMEOUT": ' "30" ', "OLLAMA_READY_PROGRESS": "'lines'"})
    assert (settings.timeout, settings.progress) == (30.0, "lines")


def test_empty_variables_count_as_unset() -> None:
    environ = {"OLLAMA_READY_TIMEOUT": "", "OLLAMA_API_KEY": "  ", "OLLAMA_READY_LOAD": ""}
    settings = _bare(environ)
    assert (settings.timeout, settings.api_key, settings.load) == (600.0, None, False)


def test_ca_bundle(tmp_path: pathlib.Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert _bare({"OLLAMA_READY_CA_BUNDLE": str(bundle)}).verify == str(bundle)
    both = {"OLLAMA_READY_CA_BUNDLE": str(bundle), "OLLAMA_READY_VERIFY": "yes"}
    assert _bare(both).verify == str(bundle)


def test_ca_bundle_with_verification_off_is_a_contradiction(tmp_path: pathlib.Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    environ = {"OLLAMA_READY_CA_BUNDLE": str(bundle), "OLLAMA_READY_VERIFY": "0"}
    with pytest.raises(ConfigError, match=r"OLLAMA_READY_VERIFY='0'.*OLLAMA_READY_CA_BUNDLE"):
        _bare(environ)


def test_headers_variable() -> None:
    settings = _bare({"OLLAMA_READY_HEADERS": "X-Team: ml; X-Trace: a b:c ;"})
    assert dict(settings.headers) == {"X-Team": "ml", "X-Trace": "a b:c"}


@pytest.mark.parametrize(
    ("variable", "text", "fragment"),
    [
        ("OLLAMA_READY_TIMEOUT", "abc", "neither seconds nor a duration"),
        ("OLLAMA_READY_TIMEOUT", "-1", "not a positive, finite number"),
        ("OLLAMA_READY_TIMEOUT", "-5m", "not a positive, finite number"),
        ("OLLAMA_READY_TIMEOUT", "nan", "neither seconds nor a duration"),
        ("OLLAMA_READY_TIMEOUT", "0", "not a positive, finite number"),
        ("OLLAMA_READY_TIMEOUT", "1e999", "not a positive, finite number"),
        ("OLLAMA_READY_CONNECT_TIMEOUT", "5 s", "neither seconds nor a duration"),
        ("OLLAMA_READY_READ_TIMEOUT", "1d", "neither seconds nor a duration"),
        ("OLLAMA_READY_STALL_TIMEOUT", "inf", "neither seconds nor a duration"),
        ("OLLAMA_READY_PULL_POLICY", "sometimes", "not one of missing, always, never"),
        ("OLLAMA_READY_PROGRESS", "fancy", "not one of auto, lines, json, none"),
        ("OLLAMA_READY_LOAD", "maybe", "not a boolean"),
        ("OLLAMA_READY_REQUIRE_GPU", "2", "not a boolean"),
        ("OLLAMA_READY_INSECURE", "yess", "not a boolean"),
        ("OLLAMA_READY_VERIFY", "strict", "not a boolean"),
        ("OLLAMA_READY_KEEP_ALIVE", "5 minutes", "neither seconds nor a duration"),
        ("OLLAMA_READY_KEEP_ALIVE", "NaN", "neither seconds nor a duration"),
        ("OLLAMA_READY_KEEP_ALIVE", "1e999", "not a finite number"),
        ("OLLAMA_READY_MIN_SERVER_VERSION", "new enough", "neither a version"),
        ("OLLAMA_READY_CA_BUNDLE", "/nonexistent/ca.pem", "does not exist"),
        ("OLLAMA_HOST", "ftp://x", "unsupported scheme 'ftp'"),
    ],
)
def test_invalid_variable_names_the_variable_and_the_value(
    variable: str, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _bare({variable: text})
    message = str(caught.value)
    assert message.startswith(f"{variable}={text!r} is invalid: ")
    assert fragment in message


def test_invalid_ollama_host_stays_an_invalid_host() -> None:
    with pytest.raises(InvalidHost, match=r"^OLLAMA_HOST='a b' is invalid: it contains ' '"):
        _bare({"OLLAMA_HOST": "a b"})


def test_invalid_model_in_the_list_stays_an_invalid_model_name() -> None:
    with pytest.raises(InvalidModelName, match=r"OLLAMA_READY_MODELS=.*the model 'bad name'"):
        _bare({"OLLAMA_READY_MODELS": "llama3, bad name"})


@pytest.mark.parametrize(
    ("variable", "text", "fragment"),
    [
        ("OLLAMA_API_KEY", "sk-top secret", "whitespace or control characters"),
        ("OLLAMA_READY_HEADERS", "Authorization Bearer topsecret", "item 1 of 1"),
        ("OLLAMA_READY_HEADERS", "X-A: 1; X-A: topsecret", "given twice"),
        ("OLLAMA_READY_HEADERS", "X-A: 1; x-a: topsecret", "given twice"),
        ("OLLAMA_READY_HEADERS", "Bad Name: topsecret", "not a valid HTTP header name"),
        ("OLLAMA_READY_HEADERS", "X-A: top\x7fsecret", "control characters"),
    ],
)
def test_invalid_secret_variables_never_show_the_value(
    variable: str, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _bare({variable: text})
    message = str(caught.value)
    assert message.startswith(f"{variable}=*** is invalid: ")
    assert fragment in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("timeout", -1, "not a positive, finite number"),
        ("timeout", math.nan, "not a positive, finite number"),
        ("connect_timeout", True, "expected a number of seconds"),
        ("read_timeout", "soon", "neither seconds nor a duration"),
        ("pull_policy", "sometimes", "not one of"),
        ("load", "perhaps", "not a boolean"),
        ("require_gpu", 1, "expected true or false"),
        ("verify", 0, "expected True, False or a CA bundle path"),
        ("keep_alive", math.inf, "not a finite number"),
        ("models", 3, "expected model names"),
        ("headers", "X-A: 1", "expected a mapping"),
        ("headers", {"X-A": 1}, "is int 1, not a string"),
        ("host_source", "env", "not one of argument, OLLAMA_HOST, default"),
        ("min_server_version", "~=", "neither a version"),
    ],
)
def test_invalid_argument_names_the_field(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _bare(**{field: value})
    message = str(caught.value)
    shown = "***" if field == "headers" else repr(value)
    assert message.startswith(f"{field}={shown} is invalid: ")
    assert fragment in message


def test_keep_alive_argument_accepts_numbers_and_durations() -> None:
    assert _bare(keep_alive=0).keep_alive == 0.0
    assert _bare(keep_alive="10m").keep_alive == "10m"
    assert _bare(keep_alive=-1).keep_alive == -1.0


# --------------------------------------------------------------------------- Settings, the value


def test_settings_are_frozen_hashable_and_comparable() -> None:
    settings = _bare(headers={"X-A": "1"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timeout = 1.0  # type: ignore[misc]
    assert settings == _bare(headers={"X-A": "1"})
    assert hash(settings) == hash(_bare(headers={"X-A": "1"}))
    assert settings != _bare(headers={"X-A": "2"})


def test_headers_cannot_be_changed_after_construction() -> None:
    given = {"X-A": "1"}
    settings = _bare(headers=given)
    given["X-A"] = "changed"
    assert settings.headers["X-A"] == "1"
    with pytest.raises(TypeError):
        settings.headers["X-A"] = "2"  # type: ignore[index]


def test_direct_construction_and_replace_are_checked() -> None:
    settings = Settings(host="0.0.0.0", host_source="argument", api_key=None, headers={})
    assert settings.host == "http://127.0.0.1:11434"
    with pytest.raises(ConfigError, match=r"^timeout=-3 is invalid"):
        dataclasses.replace(settings, timeout=-3)
    assert dataclasses.replace(settings, host="[::]:1").host == "http://[::1]:1"


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = _bare(
        {"OLLAMA_API_KEY": "sk-verysecret"},
        headers={"X-Token": "hunter2", "Authorization": "Basic c2VjcmV0"},
    )
    for text in (repr(settings), str(settings), f"{settings}"):
        assert "sk-verysecret" not in text
        assert "hunter2" not in text
        assert "c2VjcmV0" not in text
        assert "api_key='***'" in text
        assert "'X-Token': '***'" in text
    assert "api_key=None" in repr(_bare())


def test_request_headers_carry_user_agent_and_bearer_token() -> None:
    headers = _bare({"OLLAMA_API_KEY": "sk-abc"}).request_headers()
    assert headers["Authorization"] == "Bearer sk-abc"
    assert headers["User-Agent"].startswith(f"ollama-ready/{__version__} (")
    assert "Python/" in headers["User-Agent"]


def test_request_headers_without_a_key_have_no_authorization() -> None:
    headers = _bare().request_headers()
    assert "Authorization" not in headers
    assert set(headers) == {"User-Agent"}


def test_an_explicit_authorization_header_beats_the_api_key() -> None:
    settings = _bare({"OLLAMA_API_KEY": "sk-abc"}, headers={"authorization": "Basic xyz"})
    headers = settings.request_headers()
    assert headers == {"User-Agent": headers["User-Agent"], "authorization": "Basic xyz"}


def test_extra_headers_replace_ours_case_insensitively() -> None:
    headers = _bare(headers={"user-agent": "mine/1", "X-A": "1"}).request_headers()
    assert headers == {"user-agent": "mine/1", "X-A": "1"}


def test_bearer_token_matches_the_official_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "sk-official")
    official = OfficialClient(host="http://127.0.0.1:1")
    ours = Settings.from_env().request_headers()
    assert ours["Authorization"] == official._client.headers["authorization"]


@pytest.mark.parametrize(
    ("host", "bypass"),
    [
        ("127.0.0.1:1", True),
        ("localhost", True),
        ("[::1]", True),
        ("0.0.0.0", True),  # rewritten to loopback first
        (":8080", True),
        ("127.1.2.3", True),
        ("example.com", False),
        ("10.1.2.3", False),
        ("ollama.com", False),
    ],
)
def test_loopback_hosts_bypass_proxies(host: str, bypass: bool) -> None:
    assert _bare(host=host).bypass_proxy is bypass
