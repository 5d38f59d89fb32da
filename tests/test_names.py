"""Model names: every table of the protocol doc §4 (Ollama's ``types/model/name_test.go``)."""

from __future__ import annotations

import pathlib

import pytest

from ollama_ready.errors import ConfigError, InvalidModelName
from ollama_ready.names import MISSING_PART, ModelName, PartKind, is_valid_part

P80 = "8" * 80
P350 = "3" * 350

# §4.2 TestParseNameParts: input -> ParseNameBare parts, and Filepath after the defaults.
PARSE_NAME_PARTS = [
    (
        "registry.ollama.ai/library/dolphin-mistral:7b-v2.6-dpo-laser-q6_K",
        ("registry.ollama.ai", "library", "dolphin-mistral", "7b-v2.6-dpo-laser-q6_K", ""),
        "registry.ollama.ai/library/dolphin-mistral/7b-v2.6-dpo-laser-q6_K",
    ),
    (
        "scheme://host:port/namespace/model:tag",
        ("host:port", "namespace", "model", "tag", "scheme"),
        "host:port/namespace/model/tag",
    ),
    (
        "host/namespace/model:tag",
        ("host", "namespace", "model", "tag", ""),
        "host/namespace/model/tag",
    ),
    (
        "host:port/namespace/model:tag",
        ("host:port", "namespace", "model", "tag", ""),
        "host:port/namespace/model/tag",
    ),
    (
        "host/namespace/model",
        ("host", "namespace", "model", "", ""),
        "host/namespace/model/latest",
    ),
    (
        "host:port/namespace/model",
        ("host:port", "namespace", "model", "", ""),
        "host:port/namespace/model/latest",
    ),
    (
        "namespace/model",
        ("", "namespace", "model", "", ""),
        "registry.ollama.ai/namespace/model/latest",
    ),
    ("model", ("", "", "model", "", ""), "registry.ollama.ai/library/model/latest"),
    ("h/nn/mm:t", ("h", "nn", "mm", "t", ""), "h/nn/mm/t"),
    (f"{P80}/{P80}/{P80}:{P80}", (P80, P80, P80, P80, ""), f"{P80}/{P80}/{P80}/{P80}"),
    (f"{P350}/{P80}/{P80}:{P80}", (P350, P80, P80, P80, ""), f"{P350}/{P80}/{P80}/{P80}"),
]

# §4.3 TestNameIsValid: ParseNameBare(s).IsValid(), no defaults applied.
NAME_IS_VALID = [
    ("", False),
    ("_why/_the/_lucky:_stiff", True),
    ("h/n/m:t", True),
    ("host/namespace/model:tag", True),
    ("host/namespace/model", False),
    ("namespace/model", False),
    ("model", False),
    (f"{P80}/{P80}/{P80}:{P80}", True),
    (f"{P350}/{P80}/{P80}:{P80}", True),
    ("h/nn/mm:t", True),
    ("m", False),
    ("n/m:", False),
    ("h/n/m", False),
    ("@t", False),
    ("m@d", False),
    ("^", False),
    ("mm:", False),
    ("/nn/mm", False),
    ("//", False),
    ("//mm", False),
    ("hh//", False),
    ("//mm:@", False),
    ("00@", False),
    ("@", False),
    ("-hh/nn/mm:tt", False),
    ("hh/-nn/mm:tt", False),
    ("hh/nn/-mm:tt", False),
    ("hh/nn/mm:-tt", False),
    ("host:https/namespace/model:tag", True),
    ("host/name:space/model:tag", False),
]

# §4.3 TestNameIsValidPart.
NAME_IS_VALID_PART: list[tuple[PartKind, str, bool]] = [
    ("host", "", False),
    ("host", "a", True),
    ("host", "a.", True),
    ("host", "a.b", True),
    ("host", "a:123", True),
    ("host", "a:123/aa/bb", False),
    ("namespace", "bb", True),
    ("namespace", "a.", False),
    ("model", "-h", False),
    ("digest", "sha256-" + "1" + "0" * 63, True),
]

# §4.3 TestIsValidNamespace.
NAMESPACE_VALID = [
    "a",
    "himynameisjoe",
    "himynameisreallyreallyreallyreallylongbutitshouldstillbevalid",
]
NAMESPACE_INVALID = [
    "",
    "a:b",
    "a/b",
    "a:b/c",
    "a/b:c",
    "a/b:c/d",
    "a/b:c/d@e",
    "a/b:c/d@sha256-100",
]

# §4.3 TestParseNameFromFilepath.
FROM_FILEPATH_VALID = [
    ("host/namespace/model/tag", ("host", "namespace", "model", "tag")),
    ("host:port/namespace/model/tag", ("host:port", "namespace", "model", "tag")),
]
FROM_FILEPATH_INVALID = [
    "namespace/model/tag",
    "model/tag",
    "model",
    "../../model/tag",
    "/namespace/./tag",
    "./././.",
    "/path/to/random/file",
]

# §4.4 DisplayShortest.
DISPLAY_SHORTEST = [
    ("registry.ollama.ai/library/model:latest", "model:latest"),
    ("registry.ollama.ai/library/model:tag", "model:tag"),
    ("registry.ollama.ai/namespace/model:tag", "namespace/model:tag"),
    ("host/namespace/model:tag", "host/namespace/model:tag"),
    ("host/library/model:tag", "host/library/model:tag"),
]

# Invalid names: the part the message must name, and a fragment of the rule it breaks.
INVALID_NAMES = [
    ("", "the model is empty", ""),
    ("n/m:", "the tag is empty", "nothing on one side"),
    ("/m", "the namespace is empty", "nothing on one side"),
    ("-hh/nn/mm:tt", "the host '-hh'", "must start with a letter, a digit or '_'"),
    ("hh/-nn/mm:tt", "the namespace '-nn'", "must start with"),
    ("hh/nn/-mm:tt", "the model '-mm'", "must start with"),
    ("hh/nn/mm:-tt", "the tag '-tt'", "must start with"),
    ("ns.x/m", "the namespace 'ns.x'", "a namespace cannot contain '.'"),
    ("host/name:space/model:tag", "the namespace 'name:space'", "':' is allowed only in the host"),
    ("m" * 81, "the model", "81 characters long; the limit is 80"),
    ("m:" + "t" * 81, "the tag", "the limit is 80"),
    ("n" * 81 + "/m", "the namespace", "the limit is 80"),
    ("h" * 351 + "/n/m:t", "the host", "351 characters long; the limit is 350"),
    ("m@d", "the model 'm@d'", "contains '@' at position 1"),
    ("a/b/c/d", "the host 'a/b'", "contains '/' at position 1"),
    ("llama 3", "the model 'llama 3'", "contains ' '"),
    ("llämä", "the model 'llämä'", "contains 'ä'"),
    ("ftp://h/n/m:t", "the scheme 'ftp'", "use http:// or https://"),
]


@pytest.mark.parametrize(("text", "parts", "filepath"), PARSE_NAME_PARTS)
def test_parse_name_parts(text: str, parts: tuple[str, str, str, str, str], filepath: str) -> None:
    bare = ModelName.parse_bare(text)
    assert (bare.host, bare.namespace, bare.model, bare.tag, bare.scheme) == parts
    assert bare.with_defaults().filepath == filepath


@pytest.mark.parametrize(("text", "parts", "filepath"), PARSE_NAME_PARTS)
def test_parse_gives_the_filepath_of_the_table(
    text: str, parts: tuple[str, str, str, str, str], filepath: str
) -> None:
    if parts[4] == "scheme":
        # Go keeps any scheme; a pull over it could only fail, so parse() refuses it early.
        with pytest.raises(InvalidModelName, match="the scheme 'scheme' is not supported"):
            ModelName.parse(text)
    else:
        assert ModelName.parse(text).filepath == filepath


@pytest.mark.parametrize(("text", "valid"), NAME_IS_VALID)
def test_name_is_valid(text: str, valid: bool) -> None:
    assert ModelName.parse_bare(text).is_valid() is valid


@pytest.mark.parametrize("text", ["model", "namespace/model", "host/namespace/model", "llama3.2"])
def test_defaults_make_short_names_valid(text: str) -> None:
    assert not ModelName.parse_bare(text).is_valid()
    assert ModelName.parse(text).is_valid()


@pytest.mark.parametrize(("kind", "value", "valid"), NAME_IS_VALID_PART)
def test_name_is_valid_part(kind: PartKind, value: str, valid: bool) -> None:
    assert is_valid_part(kind, value) is valid


@pytest.mark.parametrize("value", NAMESPACE_VALID)
def test_valid_namespace(value: str) -> None:
    assert is_valid_part("namespace", value)


@pytest.mark.parametrize("value", NAMESPACE_INVALID)
def test_invalid_namespace(value: str) -> None:
    assert not is_valid_part("namespace", value)


@pytest.mark.parametrize(("path", "parts"), FROM_FILEPATH_VALID)
def test_from_filepath(path: str, parts: tuple[str, str, str, str]) -> None:
    name = ModelName.from_filepath(path)
    assert name is not None
    assert (name.host, name.namespace, name.model, name.tag) == parts


@pytest.mark.parametrize("path", FROM_FILEPATH_INVALID)
def test_from_filepath_rejects(path: str) -> None:
    assert ModelName.from_filepath(path) is None


def test_from_filepath_takes_a_path_object() -> None:
    path = pathlib.PurePath("host", "namespace", "model", "tag")
    assert ModelName.from_filepath(path) == ModelName.parse("host/namespace/model:tag")


@pytest.mark.parametrize(("text", "shown"), DISPLAY_SHORTEST)
def test_display_shortest(text: str, shown: str) -> None:
    assert ModelName.parse(text).display == shown


def test_display_compares_host_and_namespace_case_insensitively() -> None:
    assert ModelName.parse("Registry.Ollama.AI/Library/llama3:8b").display == "llama3:8b"


def test_parse_name_default() -> None:
    assert ModelName.parse("xx").full == "registry.ollama.ai/library/xx:latest"


@pytest.mark.parametrize(("text", "part", "rule"), INVALID_NAMES)
def test_invalid_name_names_the_part_and_the_rule(text: str, part: str, rule: str) -> None:
    with pytest.raises(InvalidModelName) as caught:
        ModelName.parse(text)
    message = str(caught.value)
    assert message.startswith(f"invalid model name {text!r}: {part}")
    assert rule in message
    assert MISSING_PART not in message
    assert caught.value.model == text


def test_invalid_name_is_a_value_error_and_a_config_error() -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        ModelName.parse("bad name")
    assert issubclass(InvalidModelName, ConfigError)


def test_digest_reference_gets_a_hint() -> None:
    with pytest.raises(InvalidModelName) as caught:
        ModelName.parse("llama3@sha256-" + "0" * 64)
    assert caught.value.hint is not None
    assert "v0.2.0" in caught.value.hint


def test_forms_of_a_parsed_name() -> None:
    name = ModelName.parse("llama3")
    assert name.full == str(name) == "registry.ollama.ai/library/llama3:latest"
    assert name.display == "llama3:latest"
    assert name.filepath == "registry.ollama.ai/library/llama3/latest"
    assert name.scheme == "https"


def test_full_omits_absent_parts_of_a_bare_name() -> None:
    assert ModelName.parse_bare("ns/m").full == "ns/m"
    assert ModelName.parse_bare("m:t").full == "m:t"


def test_filepath_of_an_invalid_name_raises() -> None:
    with pytest.raises(InvalidModelName, match="the tag is empty"):
        _ = ModelName.parse_bare("h/n/m").filepath


def test_with_defaults_fills_only_empty_parts() -> None:
    name = ModelName(host="h:5000", model="m", scheme="http").with_defaults()
    assert name == ModelName.parse("h:5000/library/m:latest")
    assert name.scheme == "http"


def test_scheme_is_kept_lower_case_and_ignored_by_equality() -> None:
    name = ModelName.parse("HTTP://localhost:5000/team/model:v1")
    assert name.scheme == "http"
    assert name.host == "localhost:5000"
    assert name == ModelName.parse("localhost:5000/team/model:v1")
    assert name.full == "localhost:5000/team/model:v1"


@pytest.mark.parametrize(
    "other",
    [
        "llama3",
        "llama3:latest",
        "library/llama3",
        "registry.ollama.ai/library/llama3:latest",
        "REGISTRY.ollama.ai/Library/LLAMA3:Latest",
    ],
)
def test_equality_is_on_the_defaulted_parts_case_insensitively(other: str) -> None:
    name = ModelName.parse("llama3")
    assert ModelName.parse(other) == name
    assert hash(ModelName.parse(other)) == hash(name)
    assert name.matches(other)


@pytest.mark.parametrize(
    "other", ["llama3:8b", "llama3.2", "me/llama3", "example.com/library/llama3:latest"]
)
def test_different_models_are_not_equal(other: str) -> None:
    name = ModelName.parse("llama3")
    assert ModelName.parse(other) != name
    assert not name.matches(other)


def test_equal_names_collapse_in_a_set() -> None:
    names = {ModelName.parse(s) for s in ("llama3", "LLAMA3:latest", "qwen2.5:0.5b")}
    assert len(names) == 2


def test_a_name_is_not_equal_to_a_string() -> None:
    assert ModelName.parse("llama3") != "registry.ollama.ai/library/llama3:latest"


def test_matches_takes_a_model_name_and_rejects_invalid_text() -> None:
    name = ModelName.parse("qwen2.5:0.5b")
    assert name.matches(ModelName.parse("QWEN2.5:0.5B"))
    assert not name.matches("qwen2.5:")
    assert not name.matches("")


def test_model_name_is_frozen() -> None:
    name = ModelName.parse("llama3")
    with pytest.raises(AttributeError):
        name.tag = "8b"  # type: ignore[misc]
