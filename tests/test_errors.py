from __future__ import annotations

import pickle

import pytest

from ollama_ready import errors
from ollama_ready.errors import (
    AggregateError,
    ConfigError,
    InvalidModelName,
    ModelNotFound,
    NotReadyError,
    OllamaReadyError,
    PullStalled,
    ResponseError,
)


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, OllamaReadyError), name


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    assert errors.__doc__ is not None
    for name in errors.__all__:
        assert name in errors.__doc__, name


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (NotReadyError, TimeoutError),
        (PullStalled, TimeoutError),
        (InvalidModelName, ValueError),
        (ConfigError, ValueError),
        (ModelNotFound, LookupError),
    ],
)
def test_builtins_are_mixed_in(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, builtin)


def test_context_and_hint() -> None:
    error = ModelNotFound(
        "pull model manifest: file does not exist",
        host="http://127.0.0.1:11434",
        model="registry.ollama.ai/library/nope:latest",
        phase="pull",
        hint="check the name on https://ollama.com/library",
    )
    assert str(error) == "pull model manifest: file does not exist"
    assert error.describe().endswith("hint: check the name on https://ollama.com/library")
    assert (error.host, error.model, error.phase) == (
        "http://127.0.0.1:11434",
        "registry.ollama.ai/library/nope:latest",
        "pull",
    )


def test_errors_survive_pickling() -> None:
    error = ResponseError("boom", status=503, server_message="busy", host="h", phase="wait")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ResponseError
    assert (copy.status, copy.server_message, copy.host, copy.phase) == (503, "busy", "h", "wait")
    assert str(copy) == "boom"


def test_aggregate_lists_every_cause() -> None:
    error = AggregateError(
        "2 of 3 models failed",
        {"a:latest": ModelNotFound("not found"), "b:latest": TimeoutError("slow")},
    )
    text = str(error)
    assert "a:latest: ModelNotFound: not found" in text
    assert "b:latest: TimeoutError: slow" in text
    assert set(error.errors) == {"a:latest", "b:latest"}
