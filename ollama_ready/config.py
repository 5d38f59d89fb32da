"""Settings and Ollama's ``OLLAMA_HOST`` rules: the only reader of the environment.

:func:`parse_host` turns any ``OLLAMA_HOST`` value into a base URL the way Ollama's Go server
reads it (``envconfig.Host``), followed by the ``ConnectableHost`` rewrite of bind-all addresses
to loopback. :class:`Settings` gathers everything else from explicit arguments and
``OLLAMA_READY_*`` variables, checked before any request is made.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import os
import platform
import re
import types
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar

from ollama_ready._format import go_duration_seconds
from ollama_ready._version import __version__
from ollama_ready.errors import ConfigError, InvalidHost
from ollama_ready.names import ModelName

__all__ = [
    "DEFAULT_PORT",
    "HOST_SOURCES",
    "PROGRESS_MODES",
    "PULL_POLICIES",
    "Settings",
    "is_loopback_url",
    "parse_host",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT: Final = 11434
HOST_SOURCES: Final = ("argument", "OLLAMA_HOST", "default")
PULL_POLICIES: Final = ("missing", "always", "never")
PROGRESS_MODES: Final = ("auto", "lines", "json", "none")

_SCHEME_PORTS: Final = {"http": 80, "https": 443}
_OLLAMA_COM: Final = "ollama.com"
_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
_PORT = re.compile(r"[+-]?[0-9]+")
# Characters a URL path may carry unescaped (RFC 3986 pchar), besides letters and digits.
_PATH_SAFE = "/%:@!$&'()*+,;=~"

_T = TypeVar("_T")


# --------------------------------------------------------------------------- OLLAMA_HOST


def parse_host(value: str | None) -> str:
    """Turn an ``OLLAMA_HOST``-style value into a connectable base URL without a trailing slash.

    ``None`` or ``""`` give ``http://127.0.0.1:11434``. The rules are Ollama's, in order:
    whitespace and quotes are trimmed; ``http`` defaults to port 80, ``https`` to 443 and no
    scheme to ``http`` with 11434 (the bare name ``ollama.com`` means ``https://ollama.com:443``);
    a port that is not an integer in 0..65535 falls back to that default, as the server does;
    the path is kept without its slashes at either end. Bind-all hosts (``0.0.0.0``, ``::``,
    an empty host as in ``:1234``) become loopback, because a client cannot dial them.

    Where ollama-python's ``_parse_host`` differs (quotes, bare IPv6, port 0, ports out of
    range, ``ollama.com``), the Go rule wins: the server reads the same variable, and the client
    must dial where the server listens. Rewrites and fallbacks are logged as warnings.

    Raises:
        InvalidHost: the value cannot name a server (bad scheme, whitespace or control
            characters inside, malformed brackets, a query string, ...).
    """
    raw = "" if value is None else value
    try:
        return _parse_host(raw)
    except _HostProblem as problem:
        raise InvalidHost(
            f"invalid Ollama host {raw!r}: {problem.reason}", host=raw, hint=problem.hint
        ) from None


def _parse_host(raw: str) -> str:
    text = _trim(raw)
    _reject_unprintable(raw, text)
    scheme, default_port, rest = _split_scheme(raw, text)
    hostport, _, path = rest.partition("/")
    host, port_text = _split_host_port(raw, hostport)
    port = default_port if port_text is None else _port(raw, port_text, default_port)
    host_text = _connectable_host(raw, host, explicit=port_text is not None)
    return f"{scheme}://{host_text}:{port}{_path(raw, path)}"


def is_loopback_url(base_url: str) -> bool:
    """Return whether ``base_url`` points at this machine (127.0.0.0/8, ``::1``, ``localhost``)."""
    try:
        hostname = urllib.parse.urlsplit(base_url).hostname
    except ValueError:
        return False
    if not hostname:
        return False
    if hostname.rstrip(".").lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class _HostProblem(Exception):
    """Why a host value is hopeless; :func:`parse_host` turns it into :class:`InvalidHost`."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def _trim(text: str) -> str:
    # Go's envconfig.Var trims whitespace, then quotes; Host() trims whitespace once more.
    return text.strip().strip("\"'").strip()


def _reject_unprintable(raw: str, text: str) -> None:
    for position, char in enumerate(text):
        if char.isspace() or not char.isprintable():
            raise _HostProblem(f"it contains {char!r} at position {position} of {text!r}")


def _split_scheme(raw: str, text: str) -> tuple[str, int, str]:
    """Return ``(scheme, default port, rest)``."""
    scheme, separator, rest = text.partition("://")
    if not separator:
        if text == _OLLAMA_COM:
            return "https", 443, text
        return "http", DEFAULT_PORT, text
    if scheme in _SCHEME_PORTS:
        return scheme, _SCHEME_PORTS[scheme], rest
    if scheme.lower() in _SCHEME_PORTS:
        # Ollama compares the scheme case-sensitively, so the server listens on 11434 here.
        logger.warning(
            "Ollama host %r: scheme %r is not lowercase, so Ollama's default port is %d, not %d;"
            " write %r to get the usual port",
            raw,
            scheme,
            DEFAULT_PORT,
            _SCHEME_PORTS[scheme.lower()],
            f"{scheme.lower()}://",
        )
        return scheme.lower(), DEFAULT_PORT, rest
    raise _HostProblem(f"unsupported scheme {scheme!r}; Ollama speaks http:// or https://")


def _split_host_port(raw: str, hostport: str) -> tuple[str, str | None]:
    """Split like Go ``net.SplitHostPort``; the port is None when there is none.

    Brackets are removed from an IPv6 literal. Without a port, a bare IPv6 address may
    contain colons (``::1``), as Ollama's fallback to ``net.ParseIP`` allows.
    """
    if "@" in hostport:
        # Go would read "user:secret@host" as host "user" with a bad port: the wrong server.
        raise _HostProblem(
            "credentials in the URL (user@host) are not supported",
            hint="send an API key with OLLAMA_API_KEY, or other credentials with headers",
        )
    if hostport.startswith("["):
        inside, closed, after = hostport[1:].partition("]")
        if not closed:
            raise _HostProblem("the '[' of an IPv6 address is never closed with ']'")
        if after and not after.startswith(":"):
            raise _HostProblem(f"unexpected {after!r} after the IPv6 address [{inside}]")
        if not _is_ipv6(inside):
            raise _HostProblem(f"{inside!r} inside brackets is not an IPv6 address")
        return inside, after[1:] if after else None
    if "]" in hostport:
        raise _HostProblem("']' without a matching '['")
    if hostport.count(":") > 1:
        if _is_ipv6(hostport):
            return hostport, None
        raise _HostProblem(
            f"{hostport!r} has too many colons to be host:port",
            hint="write an IPv6 address in brackets, e.g. [::1]:11434",
        )
    host, colon, port = hostport.partition(":")
    return host, port if colon else None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    # A zone id ends up in the URL; keep it to characters a URL carries unescaped.
    _, _, zone = text.partition("%")
    return all(char.isascii() and (char.isalnum() or char in "-._~") for char in zone)


def _port(raw: str, text: str, default: int) -> int:
    # Go's strconv.ParseInt(port, 10, 32): an optional sign and ASCII digits only.
    number = int(text) if _PORT.fullmatch(text) and len(text) <= 12 else -1
    if not 0 <= number <= 65535:
        logger.warning(
            "Ollama host %r: invalid port %r, using the default %d, where Ollama listens then",
            raw,
            text,
            default,
        )
        return default
    if number == 0:
        logger.warning(
            "Ollama host %r: port 0 lets the server pick any free port; a client cannot find it",
            raw,
        )
    return number


def _connectable_host(raw: str, host: str, *, explicit: bool) -> str:
    """Validate ``host`` and return it ready for a URL, bind-all addresses made loopback."""
    if not host:
        if explicit:
            logger.warning(
                "Ollama host %r has an empty host (bind all interfaces); connecting to 127.0.0.1",
                raw,
            )
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _hostname(host)
    if isinstance(address, ipaddress.IPv4Address):
        return _loopback_if_unspecified(raw, host, address.is_unspecified, "127.0.0.1")
    mapped = address.ipv4_mapped
    if mapped is not None and mapped.is_unspecified:
        return _loopback_if_unspecified(raw, host, True, "127.0.0.1")
    return _loopback_if_unspecified(raw, f"[{host}]", address.is_unspecified, "[::1]")


def _loopback_if_unspecified(raw: str, host: str, unspecified: bool, loopback: str) -> str:
    if not unspecified:
        return host
    logger.warning("Ollama host %r is a bind-all address; connecting to %s instead", raw, loopback)
    return loopback


def _hostname(host: str) -> str:
    if not host.isascii():
        raise _HostProblem(
            f"host name {host!r} is not ASCII",
            hint="write an internationalised name in its xn-- (punycode) form",
        )
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 254 or not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        raise _HostProblem(
            f"{host!r} is not a host name: it allows letters, digits, '-' and '_' in dot-separated"
            " labels of 1 to 63 characters"
        )
    return host


def _path(raw: str, path: str) -> str:
    path = path.strip("/")
    for char in "?#":
        if char in path:
            raise _HostProblem(f"a base URL cannot carry {char!r} (a query or a fragment)")
    return f"/{urllib.parse.quote(path, safe=_PATH_SAFE)}" if path else ""


# --------------------------------------------------------------------------- value checks
# Each check takes a typed value (an argument, or what a parser made of a variable) and returns
# it normalised, or raises ConfigError saying why. Parsers turn a variable's text into a value.

_BOOLEANS: Final = {
    **dict.fromkeys(("1", "t", "true", "y", "yes", "on"), True),
    **dict.fromkeys(("0", "f", "false", "n", "no", "off"), False),
}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SECONDS = re.compile(rf"[+-]?{_NUMBER}(?:[eE][+-]?[0-9]+)?")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_host(value: object) -> str:
    try:
        return _parse_host("" if value is None else _str(value))
    except _HostProblem as problem:
        raise InvalidHost(problem.reason, hint=problem.hint) from None


def _check_host_source(value: object) -> str:
    if value in HOST_SOURCES:
        return str(value)
    raise ConfigError(f"{value!r} is not one of {', '.join(HOST_SOURCES)}")


def _check_api_key(value: object) -> str | None:
    key = _str(value).strip()
    if any(char.isspace() or not char.isprintable() for char in key):
        raise ConfigError("the API key contains whitespace or control characters")
    return key or None


def _check_headers(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping of header names to values, got {_kind(value)}")
    seen: dict[str, str] = {}
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is not a valid HTTP header name")
        if not isinstance(text, str):
            raise ConfigError(f"the value of header {name!r} is {_kind(text)}, not a string")
        if any(char != "\t" and not char.isprintable() for char in text):
            raise ConfigError(f"the value of header {name!r} contains control characters")
        if name.lower() in seen:
            raise ConfigError(f"header {name!r} is given twice (as {seen[name.lower()]!r})")
        seen[name.lower()] = name
        headers[name] = text.strip()
    return types.MappingProxyType(headers)


def _check_seconds(value: object) -> float:
    if isinstance(value, str):
        value = _parse_seconds(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected a number of seconds, got {_kind(value)}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{value!r} is not a positive, finite number of seconds")
    return seconds


def _check_verify(value: object) -> bool | str:
    if isinstance(value, bool):
        return value
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str) or not path:
        raise ConfigError(f"expected True, False or a CA bundle path, got {_kind(value)}")
    if not os.path.exists(path):
        raise ConfigError(f"the CA bundle {path!r} does not exist")
    return path


def _check_optional_text(value: object) -> str | None:
    return _str(value).strip() or None


def _check_pull_policy(value: object) -> str:
    return _choice(value, PULL_POLICIES)


def _check_progress(value: object) -> str:
    return _choice(value, PROGRESS_MODES)


def _check_models(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, Iterable):
        raise ConfigError(f"expected model names, got {_kind(value)}")
    names = tuple(name.strip() for name in (_str(item) for item in value) if name.strip())
    for name in names:
        ModelName.parse(name)
    return names


def _check_bool(value: object) -> bool:
    if isinstance(value, str):
        return _parse_bool(value)
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {_kind(value)}")
    return value


def _check_keep_alive(value: object) -> str | float | None:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _SECONDS.fullmatch(text):
            return _check_keep_alive(float(text))
        _duration_seconds(text)
        return text
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected seconds or a duration such as '5m', got {_kind(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{value!r} is not a finite number of seconds")
    return float(value)


def _check_min_server_version(value: object) -> str | None:
    text = _str(value).strip()
    if not text:
        return None
    # Deferred: packaging.specifiers costs ~15 ms of start-up (it loads packaging.tags).
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        Version(text)
    except InvalidVersion:
        pass
    else:
        return f">={text}"
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise ConfigError(
            f"{text!r} is neither a version ('0.5.7') nor a version specifier ('>=0.5,<0.13')"
        ) from None
    return text


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {_kind(value)}")
    return value


def _choice(value: object, choices: tuple[str, ...]) -> str:
    text = _str(value).strip().lower()
    if text in choices:
        return text
    raise ConfigError(f"{text!r} is not one of {', '.join(choices)}")


def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _parse_bool(text: str) -> bool:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"{text!r} is not a boolean (use true/false, 1/0, yes/no, on/off)"
        ) from None


def _parse_seconds(text: str) -> float:
    """Parse seconds (``30``, ``2.5``) or a Go-style duration (``500ms``, ``5m``, ``1h30m``)."""
    text = text.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    return _duration_seconds(text)


def _duration_seconds(text: str) -> float:
    seconds = go_duration_seconds(text)
    if seconds is None:
        raise ConfigError(f"{text!r} is neither seconds nor a duration such as 90s, 5m or 1h30m")
    return seconds


def _parse_headers(text: str) -> dict[str, str]:
    """Parse ``"Name: value; Other: v"`` into a dict; empty items are skipped."""
    headers: dict[str, str] = {}
    items = [item for item in text.split(";") if item.strip()]
    for number, item in enumerate(items, start=1):
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            # The item may hold a secret, so it is named by position, never shown.
            raise ConfigError(f"item {number} of {len(items)} is not 'Name: value'")
        if name.strip() in headers:
            raise ConfigError(f"header {name.strip()!r} is given twice")
        headers[name.strip()] = value
    return headers


# field -> (environment variable, parser of its text, check of the resulting value)
_Check = Callable[[Any], Any]
_FIELDS: Final[dict[str, tuple[str | None, Callable[[str], Any] | None, _Check]]] = {
    "host": ("OLLAMA_HOST", None, _check_host),
    "host_source": (None, None, _check_host_source),
    "api_key": ("OLLAMA_API_KEY", None, _check_api_key),
    "headers": ("OLLAMA_READY_HEADERS", _parse_headers, _check_headers),
    "connect_timeout": ("OLLAMA_READY_CONNECT_TIMEOUT", None, _check_seconds),
    "read_timeout": ("OLLAMA_READY_READ_TIMEOUT", None, _check_seconds),
    "verify": (None, None, _check_verify),
    "timeout": ("OLLAMA_READY_TIMEOUT", None, _check_seconds),
    "stall_timeout": ("OLLAMA_READY_STALL_TIMEOUT", None, _check_seconds),
    "wait": ("OLLAMA_READY_WAIT", None, _check_optional_text),
    "pull_policy": ("OLLAMA_READY_PULL_POLICY", None, _check_pull_policy),
    "models": ("OLLAMA_READY_MODELS", None, _check_models),
    "load": ("OLLAMA_READY_LOAD", None, _check_bool),
    "keep_alive": ("OLLAMA_READY_KEEP_ALIVE", None, _check_keep_alive),
    "require_gpu": ("OLLAMA_READY_REQUIRE_GPU", None, _check_bool),
    "min_server_version": ("OLLAMA_READY_MIN_SERVER_VERSION", None, _check_min_server_version),
    "insecure": ("OLLAMA_READY_INSECURE", None, _check_bool),
    "progress": ("OLLAMA_READY_PROGRESS", None, _check_progress),
}
# Variables whose values are secret: errors name them but never show the value.
_SECRET_VARIABLES: Final = frozenset({"OLLAMA_API_KEY", "OLLAMA_READY_HEADERS"})


def _checked(label: str, shown: str, check: Callable[[], _T]) -> _T:
    """Run ``check``; re-raise its ConfigError (same class) prefixed with what was checked."""
    try:
        return check()
    except ConfigError as exc:
        raise type(exc)(
            f"{label}={shown} is invalid: {exc.message}",
            host=exc.host,
            model=exc.model,
            hint=exc.hint,
        ) from None


def _env_text(environ: Mapping[str, str], variable: str) -> str | None:
    """Read ``variable`` as Ollama's ``Var()`` does; empty means unset."""
    return _trim(environ.get(variable, "")) or None


# --------------------------------------------------------------------------- Settings


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Everything ollama_ready needs to reach a server and ensure models; an immutable value.

    Build it with :meth:`from_env`. Every field is checked and normalised on construction (also
    through ``dataclasses.replace``), so an invalid value raises :class:`ConfigError` before any
    request. ``api_key`` and header values never appear in ``repr`` or ``str``.
    """

    host: str
    host_source: str
    api_key: str | None
    headers: Mapping[str, str] = field(hash=False)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    verify: bool | str = True
    timeout: float = 600.0
    stall_timeout: float = 120.0
    wait: str | None = None
    pull_policy: str = "missing"
    models: tuple[str, ...] = ()
    load: bool = False
    keep_alive: str | float | None = None
    require_gpu: bool = False
    min_server_version: str | None = None
    insecure: bool = False
    progress: str = "auto"

    def __post_init__(self) -> None:
        for name, (_, _, check) in _FIELDS.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_FIELDS:
                continue
            shown = "***" if name in ("api_key", "headers") else repr(value)
            object.__setattr__(self, name, _checked(name, shown, functools.partial(check, value)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        """Build settings from explicit values, then the environment, then the defaults.

        ``explicit`` takes any field name; a value of None counts as not given. ``environ``
        defaults to ``os.environ``, read now. Values are trimmed of whitespace and quotes as
        Ollama trims its own, and an empty one counts as unset. The variables: ``OLLAMA_HOST``,
        ``OLLAMA_API_KEY`` and ``OLLAMA_READY_`` + ``TIMEOUT``, ``CONNECT_TIMEOUT``,
        ``READ_TIMEOUT``, ``STALL_TIMEOUT`` (seconds or ``90s``/``5m``/``1h30m``), ``WAIT``,
        ``PULL_POLICY``, ``MODELS`` (comma list), ``LOAD``, ``KEEP_ALIVE``, ``REQUIRE_GPU``,
        ``MIN_SERVER_VERSION`` (``0.5.7`` means ``>=0.5.7``), ``INSECURE``, ``PROGRESS``,
        ``VERIFY`` (true/false), ``CA_BUNDLE`` (a path) and ``HEADERS`` (``"Name: v; Other: w"``).

        Raises:
            ConfigError: a variable or an argument holds an invalid value; the message names it.
            TypeError: ``explicit`` names no field of Settings.
        """
        unknown = sorted(set(explicit) - set(_FIELDS))
        if unknown:
            raise TypeError(f"Settings.from_env() got unexpected arguments: {', '.join(unknown)}")
        env = os.environ if environ is None else environ
        values = {name: value for name, value in explicit.items() if value is not None}
        for name, (variable, parse, check) in _FIELDS.items():
            if name in values or variable is None:
                continue
            text = _env_text(env, variable)
            if text is not None:
                values[name] = _from_variable(variable, text, parse, check)
        if "verify" not in values:
            values["verify"] = _verify_from_env(env)
        values.setdefault("host_source", _host_source(explicit, env))
        values.setdefault("host", None)
        values.setdefault("api_key", None)
        values.setdefault("headers", {})
        return cls(**values)

    def request_headers(self) -> dict[str, str]:
        """Return the headers for every request: User-Agent, the extra headers, Authorization.

        As in the official client, ``Authorization: Bearer <api_key>`` is added only when the
        extra headers carry no ``Authorization`` of their own. An extra header replaces ours.
        """
        headers = {"User-Agent": _user_agent()}
        for name, value in self.headers.items():
            for existing in [key for key in headers if key.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value
        if self.api_key and not any(key.lower() == "authorization" for key in headers):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @property
    def bypass_proxy(self) -> bool:
        """Whether requests must skip HTTP proxies: true for loopback hosts (ollama-python#437)."""
        return is_loopback_url(self.host)

    def __repr__(self) -> str:
        shown = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "api_key" and value is not None:
                text = "'***'"
            elif item.name == "headers":
                text = repr(dict.fromkeys(value, "***"))
            else:
                text = repr(value)
            shown.append(f"{item.name}={text}")
        return f"Settings({', '.join(shown)})"


_OPTIONAL_FIELDS: Final = frozenset({"api_key", "wait", "keep_alive", "min_server_version"})


def _from_variable(
    variable: str, text: str, parse: Callable[[str], Any] | None, check: Callable[[Any], _T]
) -> _T:
    shown = "***" if variable in _SECRET_VARIABLES else repr(text)
    return _checked(variable, shown, lambda: check(parse(text) if parse else text))


def _host_source(explicit: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    if explicit.get("host") is not None:
        return "argument"
    if _env_text(environ, "OLLAMA_HOST") is not None:
        return "OLLAMA_HOST"
    return "default"


def _verify_from_env(environ: Mapping[str, str]) -> bool | str:
    verify = _env_text(environ, "OLLAMA_READY_VERIFY")
    bundle = _env_text(environ, "OLLAMA_READY_CA_BUNDLE")
    enabled = (
        True if verify is None else _from_variable("OLLAMA_READY_VERIFY", verify, None, _check_bool)
    )
    if bundle is None:
        return bool(enabled)
    if not enabled:
        raise ConfigError(
            f"OLLAMA_READY_VERIFY={verify!r} turns TLS verification off, but "
            f"OLLAMA_READY_CA_BUNDLE={bundle!r} names a CA bundle to verify with",
            hint="unset one of the two",
        )
    return _from_variable("OLLAMA_READY_CA_BUNDLE", bundle, None, _check_verify)


def _user_agent() -> str:
    return (
        f"ollama-ready/{__version__} ({platform.machine()} {platform.system().lower()})"
        f" Python/{platform.python_version()}"
    )
