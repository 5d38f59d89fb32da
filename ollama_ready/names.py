"""Ollama model names: parse, validate, compare and display them by Ollama's own grammar.

A full name is ``[scheme://]host/namespace/model:tag``. Missing parts take the defaults
``registry.ollama.ai``, ``library`` and ``latest``, so ``llama3`` is
``registry.ollama.ai/library/llama3:latest``. The rules follow ``types/model/name.go`` in Ollama.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Literal

from ollama_ready.errors import InvalidModelName

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SCHEME",
    "DEFAULT_TAG",
    "MISSING_PART",
    "ModelName",
    "PartKind",
    "is_valid_part",
]

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"

#: Stands for the empty side of a separator (``"n/m:"``); it can never pass validation.
MISSING_PART = "!MISSING!"

PartKind = Literal["host", "namespace", "model", "tag", "digest"]

_MAX_LENGTH: dict[PartKind, int] = {
    "host": 350,
    "namespace": 80,
    "model": 80,
    "tag": 80,
    "digest": 80,
}
_ALNUM_OR_UNDERSCORE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SCHEMES = frozenset({"http", "https"})


def _part_problem(kind: PartKind, value: str) -> str | None:
    """Return why ``value`` is not a valid part of this kind, or None when it is."""
    if value == MISSING_PART:
        return "is empty: a '/' or ':' in the name has nothing on one side"
    if not value:
        return "is empty"
    limit = _MAX_LENGTH[kind]
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}"
    if value[0] not in _ALNUM_OR_UNDERSCORE:
        return f"must start with a letter, a digit or '_', not {value[0]!r}"
    for position, char in enumerate(value[1:], start=1):
        if char in _ALNUM_OR_UNDERSCORE or char == "-":
            continue
        if char == "." and kind != "namespace":
            continue
        if char == ":" and kind in ("host", "digest"):
            continue
        return f"contains {char!r} at position {position}; {_rule(kind, char)}"
    return None


def _rule(kind: PartKind, char: str) -> str:
    if char == "." and kind == "namespace":
        return "a namespace cannot contain '.'"
    if char == ":" and kind in ("namespace", "model"):
        return "':' is allowed only in the host (host:port) and before the tag"
    if kind in ("host", "digest"):
        return f"a {kind} may contain only letters, digits and '_', '-', '.', ':'"
    if kind == "namespace":
        return "a namespace may contain only letters, digits and '_', '-'"
    return f"a {kind} may contain only letters, digits and '_', '-', '.'"


def _describe(kind: PartKind, value: str, problem: str) -> str:
    shown = "" if value in ("", MISSING_PART) else f" {value!r}"
    return f"the {kind}{shown} {problem}"


def is_valid_part(kind: PartKind, value: str) -> bool:
    """Return whether ``value`` is a valid name part of ``kind`` (Go ``isValidPart``)."""
    return _part_problem(kind, value) is None


def _cut_last(text: str, separator: str) -> tuple[str, str, bool]:
    """Split at the last ``separator``; an empty side becomes :data:`MISSING_PART`."""
    before, found, after = text.rpartition(separator)
    if not found:
        return text, "", False
    return before or MISSING_PART, after or MISSING_PART, True


@dataclass(frozen=True, slots=True, eq=False)
class ModelName:
    """An Ollama model name, compared case-insensitively like the server compares names.

    Construct it with :meth:`parse` (defaults applied, validated) or :meth:`parse_bare`
    (Ollama's ``ParseNameBare``: no defaults, no validation). ``scheme`` is kept for pulls
    from a plain-HTTP registry but takes no part in equality, :attr:`full` or :attr:`display`.
    """

    host: str = ""
    namespace: str = ""
    model: str = ""
    tag: str = ""
    scheme: str = ""

    @classmethod
    def parse_bare(cls, s: str) -> ModelName:
        """Split ``s`` into its parts without defaults or validation (Go ``ParseNameBare``)."""
        tag = ""
        # "/" is not a tag character, so a ":" after the last "/" always starts the tag.
        if s.rfind(":") > s.rfind("/"):
            s, tag, _ = _cut_last(s, ":")
        rest, model, found = _cut_last(s, "/")
        if not found:
            return cls(model=s, tag=tag)
        rest, namespace, found = _cut_last(rest, "/")
        if not found:
            return cls(namespace=rest, model=model, tag=tag)
        scheme, separator, host = rest.partition("://")
        if not separator:
            scheme, host = "", rest
        return cls(host=host, namespace=namespace, model=model, tag=tag, scheme=scheme)

    @classmethod
    def parse(cls, s: str) -> ModelName:
        """Parse ``s`` with the defaults applied and validate every part.

        The scheme, if any, must be ``http`` or ``https``; it is returned in lower case.

        Raises:
            InvalidModelName: a part breaks a rule; the message names the part and the rule.
        """
        name = cls.parse_bare(s).with_defaults()
        problem = name._problem()
        if problem is not None:
            hint = None
            if "@" in s:
                hint = "Ollama dropped name@digest references in v0.2.0; pin the tag instead"
            raise InvalidModelName(f"invalid model name {s!r}: {problem}", model=s, hint=hint)
        return dataclasses.replace(name, scheme=name.scheme.lower())

    @classmethod
    def from_filepath(cls, path: str | os.PathLike[str]) -> ModelName | None:
        """Rebuild a name from its ``host/namespace/model/tag`` path; None if it is not one."""
        text = os.fspath(path)
        if os.sep != "/":
            text = text.replace(os.sep, "/")
        parts = text.split("/")
        if len(parts) != 4:
            return None
        name = cls(host=parts[0], namespace=parts[1], model=parts[2], tag=parts[3])
        return name if name.is_valid() else None

    def with_defaults(self) -> ModelName:
        """Return this name with every empty part set to its default (Go ``Merge``)."""
        return ModelName(
            host=self.host or DEFAULT_HOST,
            namespace=self.namespace or DEFAULT_NAMESPACE,
            model=self.model,
            tag=self.tag or DEFAULT_TAG,
            scheme=self.scheme or DEFAULT_SCHEME,
        )

    def is_valid(self) -> bool:
        """Return whether all four parts are present and valid (Go ``IsValid``)."""
        return self._part_problem() is None

    def _part_problem(self) -> str | None:
        for kind, value in self._parts():
            problem = _part_problem(kind, value)
            if problem is not None:
                return _describe(kind, value, problem)
        return None

    def _problem(self) -> str | None:
        problem = self._part_problem()
        if (
            problem is None
            and self.scheme
            and not (self.scheme.isascii() and self.scheme.lower() in _SCHEMES)
        ):
            problem = f"the scheme {self.scheme!r} is not supported; use http:// or https://"
        return problem

    def _parts(self) -> tuple[tuple[PartKind, str], ...]:
        return (
            ("host", self.host),
            ("namespace", self.namespace),
            ("model", self.model),
            ("tag", self.tag),
        )

    def _key(self) -> tuple[str, str, str, str]:
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    @property
    def full(self) -> str:
        """The name with every present part: ``registry.ollama.ai/library/llama3:latest``."""
        text = "".join(f"{part}/" for part in (self.host, self.namespace) if part) + self.model
        return f"{text}:{self.tag}" if self.tag else text

    @property
    def display(self) -> str:
        """The shortest form Ollama shows (``DisplayShortest``): ``llama3:latest``."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def filepath(self) -> str:
        """The manifest path form ``host/namespace/model/tag``, always with ``/``.

        Raises:
            InvalidModelName: the name is not valid (a :meth:`parse_bare` result, for instance).
        """
        problem = self._part_problem()
        if problem is not None:
            raise InvalidModelName(f"{self.full!r} has no filepath: {problem}", model=self.full)
        return "/".join(value for _, value in self._parts())

    def matches(self, other: str | ModelName) -> bool:
        """Return whether ``other`` names the same model; an invalid name matches nothing."""
        if isinstance(other, str):
            try:
                other = ModelName.parse(other)
            except InvalidModelName:
                return False
        return self == other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelName):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.full
