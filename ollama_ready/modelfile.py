"""Ollama's Modelfile: parse it into a frozen value and find the local files it names.

The grammar follows Ollama's own parser (``parser/parser.go``):

- one instruction per line, its keyword case-insensitive: ``FROM``, ``ADAPTER``, ``TEMPLATE``,
  ``SYSTEM``, ``PARAMETER <name> <value>``, ``LICENSE``, ``MESSAGE <role> <content>``;
- a line whose first non-blank character is ``#`` is a comment (``#`` later in a line is text);
- a value is the rest of the line, trimmed; a value that starts with three double quotes, or
  one, runs across lines until the first line end where it ends with the same quotes, which are
  then removed (there are no escape sequences);
- ``PARAMETER`` values are typed by the parameter's name, as the ``ollama`` CLI does; ``stop``
  repeats into a list; parameters Ollama has retired are dropped with a warning.

Local paths in ``FROM`` and ``ADAPTER`` are relative to the Modelfile's directory, with ``~``
expanded. A ``FROM`` that names no existing file is an existing model's name unless it clearly is a
path, in which case the error names the path that was looked at.
"""

from __future__ import annotations

import codecs
import difflib
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ollama_ready.errors import InvalidModelName, ModelfileError
from ollama_ready.names import ModelName

__all__ = [
    "Instruction",
    "LocalSource",
    "Message",
    "Modelfile",
    "ParameterValue",
    "is_lfs_pointer",
]

logger = logging.getLogger(__name__)

ParameterValue = int | float | bool | str | tuple[str, ...]

_KEYWORDS = ("FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "LICENSE", "MESSAGE")
# Keywords of newer Ollama releases that this library cannot pass through /api/create yet.
_UNSUPPORTED_KEYWORDS = ("DRAFT", "PARSER", "RENDERER", "REQUIRES")
_MESSAGE_ROLES = ("system", "user", "assistant")

# Option names and types from Ollama's api.Options and api.Runner (v0.5 to v0.12).
_PARAMETER_TYPES: dict[str, type] = {
    "num_ctx": int,
    "num_batch": int,
    "num_gpu": int,
    "main_gpu": int,
    "use_mmap": bool,
    "num_thread": int,
    "num_keep": int,
    "seed": int,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
    "typical_p": float,
    "repeat_last_n": int,
    "temperature": float,
    "repeat_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "stop": tuple,
}
# Accepted and dropped with a warning: the ollama CLI's deprecatedParameters, plus two options
# that current servers no longer know.
_RETIRED_PARAMETERS = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "numa",
        "tfs_z",
    }
)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_KEYWORD = re.compile(r"[A-Za-z]+")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_]+")
_ROLE = re.compile(r"[A-Za-z]+")
_BLANK = " \t"
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT64 = 2**63
_FLOAT32_MAX = 3.4028234663852886e38
_WEIGHT_SUFFIXES = (".gguf", ".bin", ".safetensors", ".pth", ".pt")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction of a Modelfile as written: keyword, argument and line number.

    ``name`` is the parameter name of a ``PARAMETER`` and the role of a ``MESSAGE``.
    """

    keyword: str
    argument: str
    line: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One ``MESSAGE`` of the conversation a model starts with."""

    role: str
    content: str

    def to_json(self) -> dict[str, str]:
        """Return the ``/api/create`` form of this message."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class LocalSource:
    """The files on this machine that a ``FROM`` or ``ADAPTER`` line names.

    ``files`` maps the name ``/api/create`` gets (the file's base name) to the file to upload.
    """

    path: Path
    files: Mapping[str, Path] = field(hash=False)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Modelfile:
    """A parsed Modelfile: its instructions and the values they set.

    Build one with :meth:`parse` or :meth:`from_path`. ``from_`` and ``adapter`` are written as in
    the file; :meth:`resolve_from` and :meth:`resolve_adapter` turn them into local files.
    """

    instructions: tuple[Instruction, ...]
    source: str
    base_dir: Path
    from_: str
    from_line: int
    adapter: str | None = None
    adapter_line: int | None = None
    template: str | None = None
    system: str | None = None
    parameters: Mapping[str, ParameterValue] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    license: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    warnings: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        source: str = "<string>",
        base_dir: str | os.PathLike[str] | None = None,
    ) -> Modelfile:
        """Parse Modelfile text; relative paths will resolve against ``base_dir`` (default: cwd).

        Raises:
            ModelfileError: naming ``source``, the line and what is wrong.
        """
        directory = Path(base_dir) if base_dir is not None else Path.cwd()
        instructions = _Tokenizer(text.removeprefix("\ufeff"), source).instructions()
        builder = _Builder(source)
        for instruction in instructions:
            builder.add(instruction)
        return builder.build(instructions, directory.absolute())

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Modelfile:
        """Read and parse a Modelfile; its directory is the base of relative paths."""
        file = Path(os.path.expanduser(os.fspath(path))).absolute()
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise ModelfileError(f"Modelfile not found: {file}") from None
        except IsADirectoryError:
            raise ModelfileError(f"Modelfile path is a directory, not a file: {file}") from None
        except OSError as exc:
            raise ModelfileError(f"cannot read Modelfile {file}: {exc.strerror or exc}") from exc
        return cls.parse(_decode(data, str(file)), source=str(file), base_dir=file.parent)

    def resolve_from(self) -> LocalSource | str:
        """Return the local weights ``FROM`` names, or the name of the existing model it names.

        Raises:
            ModelfileError: the path does not exist (the message names the path looked at), or is
                a directory without model weights, or a Git LFS pointer.
        """
        path = _expand(self.from_, self.base_dir)
        if os.path.lexists(path):
            return self._local_source("FROM", self.from_, self.from_line)
        if _looks_like_path(self.from_):
            raise self._error(self.from_line, f"FROM {self.from_}: no such file: {path}")
        try:
            ModelName.parse(self.from_)
        except InvalidModelName as exc:
            raise self._error(
                self.from_line,
                f"FROM {self.from_}: neither a file ({path} does not exist) nor a model name "
                f"({exc.message})",
            ) from None
        return self.from_

    def resolve_adapter(self) -> LocalSource | None:
        """Return the local files ``ADAPTER`` names, or ``None`` without an ``ADAPTER`` line."""
        if self.adapter is None or self.adapter_line is None:
            return None
        return self._local_source("ADAPTER", self.adapter, self.adapter_line)

    def request_fields(self) -> dict[str, Any]:
        """Return the ``/api/create`` fields this Modelfile sets besides ``from`` and files."""
        fields: dict[str, Any] = {}
        if self.template is not None:
            fields["template"] = self.template
        if self.system is not None:
            fields["system"] = self.system
        if self.parameters:
            fields["parameters"] = {
                name: list(value) if isinstance(value, tuple) else value
                for name, value in self.parameters.items()
            }
        if self.license:
            fields["license"] = list(self.license)
        if self.messages:
            fields["messages"] = [message.to_json() for message in self.messages]
        return fields

    def _local_source(self, keyword: str, argument: str, line: int) -> LocalSource:
        path = _expand(argument, self.base_dir)
        where = f"{keyword} {argument}"
        if not path.exists():
            raise self._error(line, f"{where}: no such file: {path}")
        if path.is_dir():
            files, warnings = _directory_files(path)
            if not files:
                raise self._error(
                    line,
                    f"{where}: no model files in directory {path} (expected *.safetensors, "
                    "*.gguf, *.bin or *.pth weights)",
                )
        else:
            files, warnings = {path.name: path}, ()
        for file in files.values():
            self._reject_lfs_pointer(where, file, line)
        return LocalSource(path=path, files=MappingProxyType(files), warnings=warnings)

    def _reject_lfs_pointer(self, where: str, file: Path, line: int) -> None:
        try:
            pointer = is_lfs_pointer(file)
        except OSError as exc:
            raise self._error(line, f"{where}: cannot read {file}: {exc.strerror or exc}") from exc
        if pointer:
            raise self._error(
                line,
                f"{where}: {file} is a Git LFS pointer, not the file itself; "
                "run `git lfs pull` in its repository first",
            )

    def _error(self, line: int, message: str) -> ModelfileError:
        return ModelfileError(f"{self.source}:{line}: {message}")


class _Tokenizer:
    """Split Modelfile text into instructions, keeping each one's first line number."""

    def __init__(self, text: str, source: str) -> None:
        self._source = source
        pieces = _LINE_BREAK.split(text)
        breaks = [match.group() for match in _LINE_BREAK.finditer(text)]
        self._lines = pieces
        self._breaks = [*breaks, ""]
        self._index = 0

    def instructions(self) -> list[Instruction]:
        found: list[Instruction] = []
        while self._index < len(self._lines):
            line_number = self._index + 1
            text = self._lines[self._index].lstrip(_BLANK)
            if not text or text.startswith("#"):
                self._index += 1
                continue
            found.append(self._instruction(text, line_number))
        return found

    def _instruction(self, text: str, line: int) -> Instruction:
        match = _KEYWORD.match(text)
        end = match.end() if match else 0
        keyword = text[:end].upper()
        if not match or keyword not in _KEYWORDS or (end < len(text) and text[end] not in _BLANK):
            raise self._error(line, _unknown_instruction(text, keyword))
        rest = text[end:].lstrip(_BLANK)
        name: str | None = None
        if keyword == "PARAMETER":
            name, rest = self._split_name(rest, line)
        elif keyword == "MESSAGE":
            name, rest = self._split_role(rest, line)
        argument = self._value(rest, line, keyword if name is None else f"{keyword} {name}")
        return Instruction(keyword=keyword, argument=argument, line=line, name=name)

    def _split_name(self, rest: str, line: int) -> tuple[str, str]:
        token = rest.split(None, 1)[0] if rest.strip() else ""
        if not token:
            raise self._error(
                line, "PARAMETER needs a name and a value, e.g. PARAMETER temperature 0.7"
            )
        match = _PARAMETER_NAME.match(rest)
        if not match or (match.end() < len(rest) and rest[match.end()] not in _BLANK):
            raise self._error(
                line,
                f"PARAMETER name {token!r} may contain only letters, digits and underscores, "
                "and is followed by a space and the value",
            )
        return match.group(), rest[match.end() :].lstrip(_BLANK)

    def _split_role(self, rest: str, line: int) -> tuple[str, str]:
        match = _ROLE.match(rest)
        role = match.group() if match else (rest.split(None, 1)[0] if rest.strip() else "")
        if (
            not match
            or role not in _MESSAGE_ROLES
            or (match.end() < len(rest) and rest[match.end()] not in _BLANK)
        ):
            roles = '"system", "user" or "assistant"'
            got = f', got "{role}"' if role else ""
            raise self._error(line, f"MESSAGE role must be one of {roles}{got}")
        return role, rest[match.end() :].lstrip(_BLANK)

    def _value(self, first: str, line: int, what: str) -> str:
        """Read a value starting with ``first`` (the rest of line ``line``); may span lines."""
        buffer = first
        stripped = buffer.strip()
        quote = '"""' if stripped.startswith('"""') else '"' if stripped.startswith('"') else ""
        while quote and not _closed(stripped, quote):
            if self._index + 1 >= len(self._lines):
                raise self._error(
                    line,
                    f"{what}: the {quote} quote opened here is never closed "
                    f"(reached the end of the file)",
                )
            buffer += self._breaks[self._index] + self._lines[self._index + 1]
            self._index += 1
            stripped = buffer.strip()
        self._index += 1
        if not quote:
            if not stripped:
                raise self._error(line, f"{what} has no value")
            return stripped
        return stripped[len(quote) : -len(quote)]

    def _error(self, line: int, message: str) -> ModelfileError:
        return ModelfileError(f"{self._source}:{line}: {message}")


def _closed(value: str, quote: str) -> bool:
    return len(value) >= 2 * len(quote) and value.endswith(quote)


def _unknown_instruction(text: str, keyword: str) -> str:
    word = text.split(None, 1)[0]
    if len(word) > 40:
        word = word[:40] + "..."
    if keyword in _UNSUPPORTED_KEYWORDS:
        return (
            f"the {keyword} instruction of newer Ollama releases is not supported by ollama_ready; "
            "create this model with `ollama create`"
        )
    expected = ", ".join(_KEYWORDS)
    guess = difflib.get_close_matches(keyword or word.upper(), _KEYWORDS, n=1)
    hint = f" (did you mean {guess[0]}?)" if guess and guess[0] != keyword else ""
    return f'unknown instruction "{word}"{hint}; expected one of {expected}'


class _Builder:
    """Collect instructions into the values of a :class:`Modelfile`, checking them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.warnings: list[str] = []
        self.lines: dict[str, int] = {}
        self.values: dict[str, str] = {}
        self.parameters: dict[str, ParameterValue] = {}
        self.license: list[str] = []
        self.messages: list[Message] = []

    def add(self, item: Instruction) -> None:
        if item.keyword == "PARAMETER":
            self._parameter(item, item.name or "")
        elif item.keyword == "LICENSE":
            self.license.append(item.argument)
        elif item.keyword == "MESSAGE":
            self.messages.append(Message(role=item.name or "", content=item.argument))
        else:
            if item.keyword == "FROM" and "FROM" in self.lines:
                first = self.lines["FROM"]
                raise self._error(item.line, f"a second FROM line (the first is line {first})")
            self._remember(item.keyword, item.line)
            self.values[item.keyword] = item.argument

    def build(self, instructions: list[Instruction], base_dir: Path) -> Modelfile:
        if "FROM" not in self.values:
            raise ModelfileError(
                f"{self.source}: no FROM line; a Modelfile names its weights file or base model "
                "with FROM"
            )
        for warning in self.warnings:
            logger.warning("%s", warning)
        return Modelfile(
            instructions=tuple(instructions),
            source=self.source,
            base_dir=base_dir,
            from_=self.values["FROM"],
            from_line=self.lines["FROM"],
            adapter=self.values.get("ADAPTER"),
            adapter_line=self.lines.get("ADAPTER"),
            template=self.values.get("TEMPLATE"),
            system=self.values.get("SYSTEM"),
            parameters=MappingProxyType(self.parameters),
            license=tuple(self.license),
            messages=tuple(self.messages),
            warnings=tuple(self.warnings),
        )

    def _parameter(self, item: Instruction, name: str) -> None:
        if name in _RETIRED_PARAMETERS:
            self._warn(item.line, f"PARAMETER {name} is no longer used by Ollama; ignored")
            return
        kind = _PARAMETER_TYPES.get(name)
        if kind is None:
            guess = difflib.get_close_matches(name.lower(), _PARAMETER_TYPES, n=1)
            hint = f' (did you mean "{guess[0]}"?)' if guess else ""
            raise self._error(item.line, f'unknown parameter "{name}"{hint}')
        value = _typed(kind, item.argument)
        if value is None:
            expected = _EXPECTED[kind]
            raise self._error(
                item.line, f"PARAMETER {name} must be {expected}, got {item.argument!r}"
            )
        previous = self.parameters.get(name)
        if isinstance(previous, tuple) and isinstance(value, tuple):
            value = previous + value
        else:
            self._remember(f"PARAMETER {name}", item.line)
        self.parameters[name] = value

    def _remember(self, key: str, line: int) -> None:
        previous = self.lines.get(key)
        if previous is not None:
            self._warn(line, f"{key} repeats line {previous}; the later one is used")
        self.lines[key] = line

    def _warn(self, line: int, message: str) -> None:
        self.warnings.append(f"{self.source}:{line}: {message}")

    def _error(self, line: int, message: str) -> ModelfileError:
        return ModelfileError(f"{self.source}:{line}: {message}")


_EXPECTED: dict[type, str] = {int: "an integer", float: "a number", bool: "true or false"}


def _typed(kind: type, text: str) -> ParameterValue | None:
    if kind is tuple:
        return (text,)
    if kind is str:
        return text
    if kind is bool:
        return True if text in _TRUE else False if text in _FALSE else None
    if kind is int:
        if not _INT.fullmatch(text):
            return None
        number = int(text)
        return number if -_INT64 <= number < _INT64 else None
    if not _FLOAT.fullmatch(text):
        return None
    real = float(text)
    return real if math.isfinite(real) and abs(real) <= _FLOAT32_MAX else None


def is_lfs_pointer(path: str | os.PathLike[str]) -> bool:
    """Return whether a file is a Git LFS pointer (a checkout without ``git lfs pull``)."""
    with open(path, "rb") as handle:
        return handle.read(len(_LFS_POINTER)) == _LFS_POINTER


def _decode(data: bytes, source: str) -> str:
    """Decode Modelfile bytes: UTF-8, or UTF-16 when a byte-order mark says so."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ModelfileError(
            f"{source}:{line}: not {encoding.removesuffix('-sig').upper()} text "
            f"(byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _expand(argument: str, base_dir: Path) -> Path:
    """Resolve a path from a Modelfile the way the ollama CLI does: ``~``, then its directory."""
    expanded = os.path.expanduser(argument)
    return Path(os.path.abspath(os.path.join(base_dir, expanded)))


def _looks_like_path(argument: str) -> bool:
    """Whether a missing ``FROM`` target was meant as a file rather than a model name."""
    lowered = argument.lower()
    return (
        argument.startswith(("/", "\\", "~", "./", "../", ".\\", "..\\"))
        or argument in {".", ".."}
        or "\\" in argument
        or bool(_WINDOWS_DRIVE.match(argument))
        or lowered.endswith(_WEIGHT_SUFFIXES)
        or any(ch.isspace() for ch in argument)
    )


# Ollama's filesForModel: the first weight pattern that matches wins; then config files.
_WEIGHT_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("model*.safetensors", "*/model*.safetensors"),
    ("consolidated*.safetensors",),
    ("pytorch_model*.bin",),
    ("consolidated*.pth",),
    ("*.gguf",),
    ("*.bin",),
)
_EXTRA_PATTERNS = ("*.json", "*/*.json", "chat_template.jinja")
_TOKENIZER_PATTERNS = ("tokenizer.model", "*/tokenizer.model")


def _directory_files(directory: Path) -> tuple[dict[str, Path], tuple[str, ...]]:
    """Select a model directory's files as ``ollama create`` does, keyed by base name.

    The API names files by base name only, so a nested file whose name is already taken (a
    sentence-transformers ``1_Pooling/config.json``) is left out with a warning; the top-level
    file wins.
    """
    selected: list[Path] = []
    for patterns in _WEIGHT_PATTERNS:
        matches = _glob(directory, patterns)
        if matches:
            selected.extend(matches)
            break
    else:
        return {}, ()
    selected.extend(_glob(directory, _EXTRA_PATTERNS))
    for pattern in _TOKENIZER_PATTERNS:
        tokenizers = _glob(directory, (pattern,))
        if tokenizers:
            selected.extend(tokenizers)
            break
    files: dict[str, Path] = {}
    warnings: list[str] = []
    for path in selected:
        taken = files.get(path.name)
        if taken is None:
            files[path.name] = path
        elif taken != path:
            warnings.append(
                f"{path} left out: /api/create names files by base name and {taken} "
                f"already uses {path.name!r}"
            )
    for warning in warnings:
        logger.warning("%s", warning)
    return files, tuple(warnings)


def _glob(directory: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        found.extend(sorted(path for path in directory.glob(pattern) if path.is_file()))
    return found
