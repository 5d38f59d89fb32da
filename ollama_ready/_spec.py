"""Build a readiness strategy from text: the CLI's ``--wait`` and ``OLLAMA_READY_WAIT``.

Grammar::

    spec  := step ("+" step)*                  steps run in order on one deadline
    step  := name [":" param ("," param)*]
    param := key "=" value | value             a bare value sets the positional parameter

Examples: ``poll``, ``poll:interval=0.2,timeout=60``, ``sleep:2+poll``,
``healthcheck:level=model,model=llama3.2:1b,interval=5s``, ``serve:binary=/usr/bin/ollama``.
Durations take an optional unit (``ms``, ``s``, ``m``, ``h``). A value holding ``,`` or ``+``
is quoted: ``healthcheck:version=">=0.11,<1"``.

Names are the built-ins (``sleep``, ``poll``, ``healthcheck``, ``serve``) and the entry points of
the ``ollama_ready.strategies`` group. An entry point names a strategy class, which is called
with the parameters (converted by its dataclass field types, else passed as text), or a
ready-made strategy such as a plain function, which takes no parameters.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import types
import typing
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ollama_ready._probe import ReadyLevel
from ollama_ready._serve import Serve
from ollama_ready.errors import InvalidStrategySpec
from ollama_ready.readiness import Healthcheck, Poll, Sequence, Sleep, Strategy

__all__ = ["ENTRY_POINT_GROUP", "strategy_from_spec", "strategy_names"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ollama_ready.strategies"

BUILTIN_STRATEGIES: dict[str, type[Any]] = {
    "healthcheck": Healthcheck,
    "poll": Poll,
    "serve": Serve,
    "sleep": Sleep,
}

_DURATION = re.compile(r"^\s*(?P<number>[-+]?[0-9.]+(?:e[-+]?[0-9]+)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none", "null"})
_QUOTES = "\"'"

Converter = Callable[[str], Any]


def strategy_from_spec(spec: str) -> Strategy:
    """Return the strategy that ``spec`` describes (see the module docstring for the grammar).

    Raises:
        InvalidStrategySpec: an unknown name, parameter or value; the message lists the valid
            choices. It is a ``ValueError``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidStrategySpec(
            f"empty wait strategy spec; valid strategies: {', '.join(strategy_names())}"
        )
    steps = [_build_step(text, spec) for text in _split(spec, "+", spec)]
    return steps[0] if len(steps) == 1 else Sequence(*steps)


def strategy_names() -> tuple[str, ...]:
    """Return every strategy name a spec may use: the built-ins, then the entry points."""
    plugins = sorted({ep.name for ep in _entry_points()} - BUILTIN_STRATEGIES.keys())
    return (*sorted(BUILTIN_STRATEGIES), *plugins)


def _build_step(text: str, spec: str) -> Strategy:
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if not name:
        raise InvalidStrategySpec(
            f"missing strategy name in {spec!r}; valid strategies: {', '.join(strategy_names())}"
        )
    factory = _resolve(name, spec)
    positional, keywords = _parse_params(rest, name, spec) if rest.strip() else ([], {})
    try:
        return _construct(name, factory, positional, keywords, spec)
    except InvalidStrategySpec:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidStrategySpec(f"wait strategy {name!r} in {spec!r}: {exc}") from exc


def _resolve(name: str, spec: str) -> Any:
    builtin = BUILTIN_STRATEGIES.get(name)
    if builtin is not None:
        return builtin
    for entry in _entry_points():
        if entry.name.lower() == name:
            return _load(entry)
    raise InvalidStrategySpec(
        f"unknown wait strategy {name!r} in {spec!r}; valid strategies: "
        f"{', '.join(strategy_names())}"
    )


def _entry_points() -> tuple[EntryPoint, ...]:
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def _load(entry: EntryPoint) -> Any:
    try:
        loaded = entry.load()
    except Exception as exc:
        raise InvalidStrategySpec(
            f"wait strategy {entry.name!r} ({entry.value}) could not be loaded: {exc}"
        ) from exc
    if not callable(loaded):
        raise InvalidStrategySpec(
            f"wait strategy {entry.name!r} ({entry.value}) is not callable: {loaded!r}"
        )
    logger.debug("wait strategy %r comes from entry point %s", entry.name, entry.value)
    return loaded


def _parse_params(text: str, name: str, spec: str) -> tuple[list[str], dict[str, str]]:
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for item in _split(text, ",", spec):
        key, equals, value = _partition_unquoted(item, "=")
        if not equals:
            if keywords or positional:
                raise InvalidStrategySpec(
                    f"wait strategy {name!r} in {spec!r}: only the first parameter may omit "
                    f"its name, got {item.strip()!r}"
                )
            positional.append(_unquote(item.strip(), spec))
            continue
        key = key.strip().lower().replace("-", "_")
        if not key.isidentifier():
            raise InvalidStrategySpec(
                f"wait strategy {name!r} in {spec!r}: {key!r} is not a parameter name"
            )
        if key in keywords:
            raise InvalidStrategySpec(
                f"wait strategy {name!r} in {spec!r}: parameter {key!r} is given twice"
            )
        keywords[key] = _unquote(value.strip(), spec)
    return positional, keywords


def _construct(
    name: str, factory: Any, positional: list[str], keywords: dict[str, str], spec: str
) -> Strategy:
    where = f"wait strategy {name!r} in {spec!r}"
    if not isinstance(factory, type):
        if positional or keywords:
            raise InvalidStrategySpec(
                f"{where}: {name!r} is a ready-made strategy and takes no parameters"
            )
        return typing.cast(Strategy, factory)
    if not dataclasses.is_dataclass(factory):
        return typing.cast(Strategy, factory(*positional, **keywords))
    converters = _converters(factory)
    fields = {f.name: f for f in dataclasses.fields(factory) if f.init}
    settable = sorted(n for n in fields if n in converters)
    arguments: dict[str, Any] = {}
    if positional:
        first = next((f.name for f in fields.values() if not f.kw_only), None)
        if first is None:
            raise InvalidStrategySpec(
                f"{where}: name the parameters (key=value); valid: {', '.join(settable)}"
            )
        keywords = {first: positional[0], **keywords}
    for key, text in keywords.items():
        converter = converters.get(key)
        if converter is None:
            raise InvalidStrategySpec(
                f"{where}: no parameter {key!r} that a spec can set; valid: {', '.join(settable)}"
            )
        arguments[key] = _convert(where, key, text, converter)
    return typing.cast(Strategy, factory(**arguments))


def _convert(where: str, key: str, text: str, converter: Converter) -> Any:
    try:
        return converter(text)
    except InvalidStrategySpec:
        raise
    except (TypeError, ValueError) as exc:
        raise InvalidStrategySpec(f"{where}: {key}={text!r}: {exc}") from exc


def _converters(cls: type[Any]) -> dict[str, Converter]:
    try:
        hints = get_type_hints(cls)
    except Exception:
        # Annotations that cannot be resolved here: hand the values over as text.
        return {f.name: str for f in dataclasses.fields(cls) if f.init}
    converters: dict[str, Converter] = {}
    for f in dataclasses.fields(cls):
        converter = _converter_for(hints.get(f.name, str))
        if f.init and converter is not None:
            converters[f.name] = converter
    return converters


def _converter_for(annotation: Any) -> Converter | None:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        members = [a for a in get_args(annotation) if a is not type(None)]
        chosen = str if str in members else members[0] if len(members) == 1 else None
        inner = None if chosen is None else _converter_for(chosen)
        if inner is None:
            return None
        return lambda text: None if text.strip().lower() in _NONE else inner(text)
    if origin is Literal:
        return _choice(tuple(str(a) for a in get_args(annotation)))
    if annotation is bool:
        return _parse_bool
    if annotation is int:
        return int
    if annotation is float:
        return _parse_duration
    if annotation is str:
        return str
    if isinstance(annotation, type) and issubclass(annotation, ReadyLevel):
        return ReadyLevel.parse
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        enum_type = annotation
        return lambda text: enum_type[text.strip().upper()]
    return None


def _choice(choices: tuple[str, ...]) -> Converter:
    def convert(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return convert


def _parse_duration(text: str) -> float:
    match = _DURATION.match(text.lower())
    if match is None:
        lowered = text.strip().lower()
        if lowered in ("inf", "nan", "-inf", "+inf"):
            return float(lowered)  # the strategy rejects what it cannot use, with its reason
        raise ValueError("expected a number of seconds, optionally with ms, s, m or h")
    return float(match["number"]) * _UNIT_SECONDS[match["unit"]]


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true or false")


def _split(text: str, separator: str, spec: str) -> list[str]:
    """Split ``text`` at ``separator`` outside quotes; every part must be non-empty."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for char in text:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote is not None:
        raise InvalidStrategySpec(f"unclosed quote {quote} in wait strategy spec {spec!r}")
    parts.append("".join(current))
    if any(not part.strip() for part in parts):
        raise InvalidStrategySpec(
            f"empty part between {separator!r} in wait strategy spec {spec!r}"
        )
    return parts


def _partition_unquoted(text: str, separator: str) -> tuple[str, str, str]:
    quote: str | None = None
    for index, char in enumerate(text):
        if quote is not None:
            quote = None if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char == separator:
            return text[:index], separator, text[index + 1 :]
    return text, "", ""


def _unquote(value: str, spec: str) -> str:
    if len(value) >= 2 and value[0] in _QUOTES and value[-1] == value[0]:
        inner = value[1:-1]
        if value[0] not in inner:
            return inner
    if any(q in value for q in _QUOTES):
        raise InvalidStrategySpec(
            f'quote a whole value, as in key="a,b", in wait strategy spec {spec!r}; got {value!r}'
        )
    return value
