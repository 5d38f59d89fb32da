"""Modelfile parsing: Ollama's grammar, typed parameters, errors that name file and line."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollama_ready.errors import ConfigError, ModelfileError
from ollama_ready.modelfile import Instruction, LocalSource, Message, Modelfile

FULL = '''\
# A model for the air-gapped site
FROM ./weights/tiny.gguf
ADAPTER ./lora.gguf

TEMPLATE """{{ if .System }}<|system|>{{ .System }}{{ end }}
<|user|>{{ .Prompt }}
<|assistant|>"""
SYSTEM "You are terse. # this is text, not a comment"
PARAMETER temperature 0.2
PARAMETER num_ctx 8192
PARAMETER use_mmap false
PARAMETER stop "<|user|>"
PARAMETER stop <|system|>
LICENSE """MIT License
Copyright the authors"""
LICENSE Apache-2.0
MESSAGE user Is the sky blue?
MESSAGE assistant """Yes."""
'''


def parse(text: str, base_dir: str | Path | None = None) -> Modelfile:
    return Modelfile.parse(text, source="Modelfile", base_dir=base_dir)


def error_of(text: str) -> str:
    with pytest.raises(ModelfileError) as caught:
        parse(text)
    return str(caught.value)


def test_every_instruction_is_parsed_into_its_value() -> None:
    modelfile = parse(FULL, base_dir="/srv/models")

    assert modelfile.from_ == "./weights/tiny.gguf"
    assert modelfile.from_line == 2
    assert modelfile.adapter == "./lora.gguf"
    assert modelfile.adapter_line == 3
    assert modelfile.template == (
        "{{ if .System }}<|system|>{{ .System }}{{ end }}\n<|user|>{{ .Prompt }}\n<|assistant|>"
    )
    assert modelfile.system == "You are terse. # this is text, not a comment"
    assert dict(modelfile.parameters) == {
        "temperature": 0.2,
        "num_ctx": 8192,
        "use_mmap": False,
        "stop": ("<|user|>", "<|system|>"),
    }
    assert modelfile.license == ("MIT License\nCopyright the authors", "Apache-2.0")
    assert modelfile.messages == (
        Message("user", "Is the sky blue?"),
        Message("assistant", "Yes."),
    )
    assert modelfile.base_dir == Path("/srv/models")
    assert modelfile.warnings == ()


def test_instructions_keep_their_first_line_numbers() -> None:
    modelfile = parse(FULL)
    assert [(i.keyword, i.line) for i in modelfile.instructions] == [
        ("FROM", 2),
        ("ADAPTER", 3),
        ("TEMPLATE", 5),
        ("SYSTEM", 8),
        ("PARAMETER", 9),
        ("PARAMETER", 10),
        ("PARAMETER", 11),
        ("PARAMETER", 12),
        ("PARAMETER", 13),
        ("LICENSE", 14),
        ("LICENSE", 16),
        ("MESSAGE", 17),
        ("MESSAGE", 18),
    ]
    assert modelfile.instructions[4] == Instruction("PARAMETER", "0.2", 9, name="temperature")
    assert modelfile.instructions[-1] == Instruction("MESSAGE", "Yes.", 18, name="assistant")


def test_request_fields_are_json_ready_and_omit_what_is_unset() -> None:
    assert parse(FULL).request_fields() == {
        "template": (
            "{{ if .System }}<|system|>{{ .System }}{{ end }}\n<|user|>{{ .Prompt }}\n<|assistant|>"
        ),
        "system": "You are terse. # this is text, not a comment",
        "parameters": {
            "temperature": 0.2,
            "num_ctx": 8192,
            "use_mmap": False,
            "stop": ["<|user|>", "<|system|>"],
        },
        "license": ["MIT License\nCopyright the authors", "Apache-2.0"],
        "messages": [
            {"role": "user", "content": "Is the sky blue?"},
            {"role": "assistant", "content": "Yes."},
        ],
    }
    assert parse("FROM llama3.2\n").request_fields() == {}


def test_the_value_is_frozen() -> None:
    modelfile = parse(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        modelfile.system = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        modelfile.parameters["seed"] = 1  # type: ignore[index]


def test_keywords_are_case_insensitive_but_parameter_names_are_not() -> None:
    modelfile = parse("from llama3.2\nTemplate {{ .Prompt }}\npArAmEtEr seed 42\nsystem hi\n")
    assert modelfile.from_ == "llama3.2"
    assert modelfile.template == "{{ .Prompt }}"
    assert modelfile.parameters == {"seed": 42}
    assert [i.keyword for i in modelfile.instructions] == [
        "FROM",
        "TEMPLATE",
        "PARAMETER",
        "SYSTEM",
    ]
    assert error_of("FROM x\nPARAMETER Temperature 1\n") == (
        'Modelfile:2: unknown parameter "Temperature" (did you mean "temperature"?)'
    )


def test_comments_and_blank_lines_are_skipped_but_hash_inside_a_value_is_text() -> None:
    modelfile = parse(
        "\n   # indented comment\n#FROM not-this\n\t\nFROM base # not a comment\n"
        "  SYSTEM  spaced   out  \n"
    )
    assert modelfile.from_ == "base # not a comment"
    assert modelfile.system == "spaced   out"
    assert [i.line for i in modelfile.instructions] == [5, 6]


def test_triple_quotes_keep_inner_whitespace_and_newlines() -> None:
    modelfile = parse('FROM x\nTEMPLATE """\n  indented\n\ttabbed  \n"""   \nSYSTEM """ pad """\n')
    assert modelfile.template == "\n  indented\n\ttabbed  \n"
    assert modelfile.system == " pad "


def test_triple_quotes_may_hold_single_quotes_and_be_empty() -> None:
    modelfile = parse('FROM x\nSYSTEM """say "hi" to them"""\nTEMPLATE """"""\n')
    assert modelfile.system == 'say "hi" to them'
    assert modelfile.template == ""


def test_a_quoted_value_ends_at_the_first_line_end_after_its_closing_quotes() -> None:
    # Ollama's rule: the value ends at the first line end where the text so far ends with the
    # quotes, so a later line that also ends with them is a new (bad) instruction.
    modelfile = parse('FROM x\nSYSTEM """a\nb"""\nPARAMETER seed 1\n')
    assert modelfile.system == "a\nb"
    assert error_of('FROM x\nSYSTEM """a\nb"""\nc"""\n').startswith(
        'Modelfile:4: unknown instruction "c"""";'
    )


def test_double_quotes_are_removed_without_escape_processing() -> None:
    modelfile = parse('FROM x\nSYSTEM "two\nlines"\nTEMPLATE "a \\"b\\""\nLICENSE ""\n')
    assert modelfile.system == "two\nlines"
    assert modelfile.template == 'a \\"b\\"'
    assert modelfile.license == ("",)


def test_single_quotes_are_plain_text() -> None:
    assert parse("FROM x\nSYSTEM 'hi'\n").system == "'hi'"


def test_crlf_files_count_lines_once_and_keep_crlf_inside_quotes() -> None:
    modelfile = parse('FROM x\r\nSYSTEM """a\r\nb"""\r\nPARAMETER seed 7\r\n')
    assert modelfile.system == "a\r\nb"
    assert modelfile.parameters == {"seed": 7}
    assert [i.line for i in modelfile.instructions] == [1, 2, 4]
    assert error_of("FROM x\r\n\r\nBOGUS y\r\n").startswith(
        'Modelfile:3: unknown instruction "BOGUS"'
    )


def test_a_missing_final_newline_is_fine() -> None:
    assert parse('FROM x\nSYSTEM """end"""').system == "end"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("PARAMETER num_ctx 4096", 4096),
        ("PARAMETER seed -1", -1),
        ("PARAMETER num_gpu +3", 3),
        ("PARAMETER temperature 0.7", 0.7),
        ("PARAMETER top_p 1", 1.0),
        ("PARAMETER min_p .05", 0.05),
        ("PARAMETER repeat_penalty 1e0", 1.0),
        ('PARAMETER presence_penalty "1.5"', 1.5),
        ("PARAMETER use_mmap true", True),
        ("PARAMETER use_mmap F", False),
        ("PARAMETER use_mmap 1", True),
        ("PARAMETER stop ###", ("###",)),
        ('PARAMETER stop ""', ("",)),
    ],
)
def test_parameters_are_typed_by_name(line: str, expected: object) -> None:
    value = next(iter(parse(f"FROM x\n{line}\n").parameters.values()))
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("PARAMETER num_ctx 4k", "PARAMETER num_ctx must be an integer, got '4k'"),
        ("PARAMETER num_ctx 1.5", "PARAMETER num_ctx must be an integer, got '1.5'"),
        ("PARAMETER seed 99999999999999999999", "PARAMETER seed must be an integer, got "),
        ("PARAMETER temperature warm", "PARAMETER temperature must be a number, got 'warm'"),
        ("PARAMETER temperature nan", "PARAMETER temperature must be a number, got 'nan'"),
        ("PARAMETER top_p 1e39", "PARAMETER top_p must be a number, got '1e39'"),
        ("PARAMETER top_p 1_0", "PARAMETER top_p must be a number, got '1_0'"),
        ("PARAMETER use_mmap yes", "PARAMETER use_mmap must be true or false, got 'yes'"),
    ],
)
def test_badly_typed_parameters_name_the_line(line: str, message: str) -> None:
    assert error_of(f"FROM x\n\n{line}\n").startswith(f"Modelfile:3: {message}")


def test_a_repeated_stop_accumulates_and_a_repeated_scalar_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ollama_ready.modelfile"):
        modelfile = parse(
            "FROM x\nPARAMETER stop a\nPARAMETER seed 1\nPARAMETER stop b\nPARAMETER seed 2\n"
        )
    assert modelfile.parameters == {"stop": ("a", "b"), "seed": 2}
    assert modelfile.warnings == (
        "Modelfile:5: PARAMETER seed repeats line 3; the later one is used",
    )
    assert modelfile.warnings[0] in caplog.messages


def test_retired_parameters_are_dropped_with_a_warning() -> None:
    modelfile = parse("FROM x\nPARAMETER mirostat 2\nPARAMETER penalize_newline true\n")
    assert modelfile.parameters == {}
    assert modelfile.warnings == (
        "Modelfile:2: PARAMETER mirostat is no longer used by Ollama; ignored",
        "Modelfile:3: PARAMETER penalize_newline is no longer used by Ollama; ignored",
    )


def test_repeated_template_system_and_adapter_keep_the_last_with_a_warning() -> None:
    modelfile = parse("FROM x\nSYSTEM one\nADAPTER a.gguf\nSYSTEM two\nADAPTER b.gguf\n")
    assert modelfile.system == "two"
    assert modelfile.adapter == "b.gguf"
    assert modelfile.adapter_line == 5
    assert modelfile.warnings == (
        "Modelfile:4: SYSTEM repeats line 2; the later one is used",
        "Modelfile:5: ADAPTER repeats line 3; the later one is used",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "FROM x\nFORM y\n",
            'Modelfile:2: unknown instruction "FORM" (did you mean FROM?); expected one of '
            "FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER, LICENSE, MESSAGE",
        ),
        (
            "FROM x\nFROM: y\n",
            'Modelfile:2: unknown instruction "FROM:"; expected one of '
            "FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER, LICENSE, MESSAGE",
        ),
        (
            'FROM x\n"quoted"\n',
            "Modelfile:2: unknown instruction "
            '""quoted""; expected one of FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER, LICENSE, '
            "MESSAGE",
        ),
        (
            'FROM x\nPARAMETER seed 1\n\nTEMPLATE """{{ .Prompt }}\nPARAMETER seed 2\n',
            'Modelfile:4: TEMPLATE: the """ quote opened here is never closed '
            "(reached the end of the file)",
        ),
        (
            'FROM x\nSYSTEM "oops\n',
            'Modelfile:2: SYSTEM: the " quote opened here is never closed '
            "(reached the end of the file)",
        ),
        (
            "PARAMETER seed 1\n",
            "Modelfile: no FROM line; a Modelfile names its weights file or base model with FROM",
        ),
        ("FROM a\n# b\nFROM b\n", "Modelfile:3: a second FROM line (the first is line 1)"),
        ("FROM\n", "Modelfile:1: FROM has no value"),
        ("FROM x\nSYSTEM   \n", "Modelfile:2: SYSTEM has no value"),
        (
            "FROM x\nPARAMETER\n",
            "Modelfile:2: PARAMETER needs a name and a value, e.g. PARAMETER temperature 0.7",
        ),
        ("FROM x\nPARAMETER top_k\n", "Modelfile:2: PARAMETER top_k has no value"),
        (
            "FROM x\nPARAMETER top-k 3\n",
            "Modelfile:2: PARAMETER name 'top-k' may contain only letters, digits and "
            "underscores, and is followed by a space and the value",
        ),
        (
            "FROM x\nPARAMETER temprature 0.7\n",
            'Modelfile:2: unknown parameter "temprature" (did you mean "temperature"?)',
        ),
        ("FROM x\nPARAMETER flux 1\n", 'Modelfile:2: unknown parameter "flux"'),
        (
            "FROM x\nMESSAGE bot hello\n",
            'Modelfile:2: MESSAGE role must be one of "system", "user" or "assistant", got "bot"',
        ),
        (
            "FROM x\nMESSAGE User hello\n",
            'Modelfile:2: MESSAGE role must be one of "system", "user" or "assistant", got "User"',
        ),
        (
            "FROM x\nMESSAGE\n",
            'Modelfile:2: MESSAGE role must be one of "system", "user" or "assistant"',
        ),
        ("FROM x\nMESSAGE user\n", "Modelfile:2: MESSAGE user has no value"),
        (
            "FROM x\nREQUIRES 0.14.0\n",
            "Modelfile:2: the REQUIRES instruction of newer Ollama releases is not supported by "
            "ollama_ready; create this model with `ollama create`",
        ),
    ],
)
def test_error_messages_name_the_file_and_line(text: str, message: str) -> None:
    assert error_of(text) == message


def test_modelfile_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        parse("SYSTEM x\n")


def test_from_path_reads_the_file_and_uses_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "models" / "Modelfile"
    path.parent.mkdir()
    path.write_text("FROM ./tiny.gguf\n")
    modelfile = Modelfile.from_path(path)
    assert modelfile.source == str(path)
    assert modelfile.base_dir == path.parent


def test_from_path_errors_name_the_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelfileError) as caught:
        Modelfile.from_path("models/Modelfile")
    assert str(caught.value) == f"Modelfile not found: {tmp_path / 'models' / 'Modelfile'}"
    with pytest.raises(ModelfileError) as caught:
        Modelfile.from_path(tmp_path)
    assert str(caught.value) == f"Modelfile path is a directory, not a file: {tmp_path}"
    bad = tmp_path / "Modelfile"
    bad.write_text("FROM x\n\nBOGUS\n")
    with pytest.raises(ModelfileError) as caught:
        Modelfile.from_path(bad)
    assert str(caught.value).startswith(f'{bad}:3: unknown instruction "BOGUS"')


def test_from_path_handles_byte_order_marks(tmp_path: Path) -> None:
    utf8 = tmp_path / "utf8"
    utf8.write_bytes(b"\xef\xbb\xbfFROM x\nSYSTEM caf\xc3\xa9\n")
    assert Modelfile.from_path(utf8).system == "café"
    utf16 = tmp_path / "utf16"
    utf16.write_bytes("FROM x\nSYSTEM café\n".encode("utf-16"))
    assert Modelfile.from_path(utf16).system == "café"


def test_text_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_bytes(b"FROM x\nSYSTEM caf\xe9\n")
    with pytest.raises(ModelfileError) as caught:
        Modelfile.from_path(path)
    assert str(caught.value) == f"{path}:2: not UTF-8 text (byte 0xe9 at offset 17)"


@given(st.text(alphabet=st.characters(exclude_characters='"', codec="utf-8")))
def test_triple_quoted_values_round_trip(value: str) -> None:
    modelfile = Modelfile.parse(f'FROM x\nSYSTEM """{value}"""\nPARAMETER seed 3\n')
    assert modelfile.system == value
    assert modelfile.parameters == {"seed": 3}


# --- local files -----------------------------------------------------------------------------


def test_from_a_relative_file_resolves_against_the_modelfile_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    (models / "weights").mkdir(parents=True)
    gguf = models / "weights" / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    (models / "Modelfile").write_text("FROM ./weights/tiny.gguf\n")
    monkeypatch.chdir(tmp_path)

    source = Modelfile.from_path("models/Modelfile").resolve_from()

    assert isinstance(source, LocalSource)
    assert source.path == gguf
    assert dict(source.files) == {"tiny.gguf": gguf}


def test_from_expands_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    source = Modelfile.parse("FROM ~/m.gguf\n", base_dir="/nowhere").resolve_from()
    assert isinstance(source, LocalSource)
    assert source.files == {"m.gguf": tmp_path / "m.gguf"}


def test_a_missing_file_names_the_resolved_path(tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text("# weights\nFROM ../weights/missing.gguf\n")
    modelfile = Modelfile.from_path(tmp_path / "Modelfile")
    with pytest.raises(ModelfileError) as caught:
        modelfile.resolve_from()
    resolved = tmp_path.parent / "weights" / "missing.gguf"
    assert str(caught.value) == (
        f"{tmp_path / 'Modelfile'}:2: FROM ../weights/missing.gguf: no such file: {resolved}"
    )


@pytest.mark.parametrize(
    "argument", ["/abs/x", "./x", "../x", "~/x", "x.gguf", "dir/x.safetensors", "C:\\x", "a b"]
)
def test_a_missing_path_like_from_is_an_error(tmp_path: Path, argument: str) -> None:
    with pytest.raises(ModelfileError, match="no such file"):
        Modelfile.parse(f"FROM {argument}\n", base_dir=tmp_path).resolve_from()


@pytest.mark.parametrize(
    "argument", ["llama3.2", "llama3.2:1b", "library/qwen2.5:0.5b", "host.io/team/model:v1"]
)
def test_a_from_that_is_no_file_is_a_model_name(tmp_path: Path, argument: str) -> None:
    assert Modelfile.parse(f"FROM {argument}\n", base_dir=tmp_path).resolve_from() == argument


def test_a_from_that_is_neither_file_nor_name_says_both(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError) as caught:
        Modelfile.parse("FROM bad:tag:x\n", source="M", base_dir=tmp_path).resolve_from()
    message = str(caught.value)
    assert message.startswith(
        f"M:1: FROM bad:tag:x: neither a file ({tmp_path / 'bad:tag:x'} does not exist) "
        "nor a model name (invalid model name 'bad:tag:x'"
    )


def test_a_model_directory_selects_weights_and_config_like_ollama(tmp_path: Path) -> None:
    for name in (
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer.model",
        "chat_template.jinja",
        "README.md",
        "pytorch_model.bin",
    ):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_bytes(b"{}")
    (tmp_path / "1_Pooling" / "extra.json").write_bytes(b"{}")

    source = Modelfile.parse(f"FROM {tmp_path}\n").resolve_from()

    assert isinstance(source, LocalSource)
    assert list(source.files) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "config.json",
        "tokenizer.json",
        "extra.json",
        "chat_template.jinja",
        "tokenizer.model",
    ]
    assert source.files["config.json"] == tmp_path / "config.json"
    assert source.warnings == (
        f"{tmp_path / '1_Pooling' / 'config.json'} left out: /api/create names files by base "
        f"name and {tmp_path / 'config.json'} already uses 'config.json'",
    )


def test_a_directory_of_gguf_files(tmp_path: Path) -> None:
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    source = Modelfile.parse("FROM .\n", base_dir=tmp_path).resolve_from()
    assert isinstance(source, LocalSource)
    assert list(source.files) == ["a.gguf", "b.gguf"]


def test_a_directory_without_weights_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelfileError) as caught:
        Modelfile.parse("FROM .\n", source="M", base_dir=tmp_path).resolve_from()
    assert str(caught.value) == (
        f"M:1: FROM .: no model files in directory {tmp_path} "
        "(expected *.safetensors, *.gguf, *.bin or *.pth weights)"
    )


def test_a_git_lfs_pointer_is_rejected(tmp_path: Path) -> None:
    pointer = tmp_path / "tiny.gguf"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 262144\n")
    with pytest.raises(ModelfileError) as caught:
        Modelfile.parse("FROM tiny.gguf\n", source="M", base_dir=tmp_path).resolve_from()
    assert str(caught.value) == (
        f"M:1: FROM tiny.gguf: {pointer} is a Git LFS pointer, not the file itself; "
        "run `git lfs pull` in its repository first"
    )


def test_adapter_resolution(tmp_path: Path) -> None:
    assert Modelfile.parse("FROM x\n", base_dir=tmp_path).resolve_adapter() is None
    (tmp_path / "lora.gguf").write_bytes(b"GGUF")
    source = Modelfile.parse("FROM x\nADAPTER lora.gguf\n", base_dir=tmp_path).resolve_adapter()
    assert source is not None
    assert source.files == {"lora.gguf": tmp_path / "lora.gguf"}
    with pytest.raises(ModelfileError) as caught:
        Modelfile.parse(
            "FROM x\n\nADAPTER gone.gguf\n", source="M", base_dir=tmp_path
        ).resolve_adapter()
    assert str(caught.value) == f"M:3: ADAPTER gone.gguf: no such file: {tmp_path / 'gone.gguf'}"
