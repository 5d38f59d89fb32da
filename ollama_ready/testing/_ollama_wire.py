"""Ollama's wire format for FakeOllama: JSON the way Go encodes it, gin's error texts, shapes.

Everything here is a pure function of its arguments; the server's state lives in ``_ollama``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from ollama_ready.testing._ollama_catalogue import MEDIA_MODEL, FakeBlob, FakeModel
from ollama_ready.testing._ollama_http import HandlerBase

__all__ = [
    "JSON_TYPE",
    "NDJSON_TYPE",
    "REPLY_TOKENS",
    "TEXT_TYPE",
    "WAIT_STREAM_TYPE",
    "HTTPError",
    "Installed",
    "Loaded",
    "allowed_host",
    "check_fraction",
    "dumps",
    "go_quote",
    "is_ip",
    "keep_alive_seconds",
    "kv_cache_bytes",
    "model_field",
    "modelfile",
    "ndjson_line",
    "parameters_text",
    "parse_body",
    "progress_line",
    "ps_entry",
    "reply_metrics",
    "rfc3339",
    "run_reply",
    "send_json",
    "status_phrase",
    "string_field",
    "tags_entry",
    "tensors",
    "unmarshal_error",
]

JSON_TYPE = "application/json; charset=utf-8"
NDJSON_TYPE = "application/x-ndjson"
WAIT_STREAM_TYPE = "application/json"  # waitForStream sets it without a charset
TEXT_TYPE = "text/plain; charset=utf-8"
REPLY_TOKENS = ("This", " is", " a", " reply", " from", " FakeOllama", ".")
_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(slots=True)
class Installed:
    """A model present on the simulated disk, with its manifest's mtime."""

    model: FakeModel
    modified_ns: int


@dataclass(slots=True)
class Loaded:
    """A model loaded by the simulated scheduler, as ``/api/ps`` lists it."""

    model: FakeModel
    expires_ns: int
    size: int
    size_vram: int
    context_length: int


class HTTPError(Exception):
    """An error answered before any body is sent: status and ``error`` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(value: Any) -> bytes:
    """Encode like Go's encoding/json: compact, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.encode()


def ndjson_line(event: Mapping[str, Any]) -> bytes:
    """Encode one stream object as an NDJSON line."""
    return dumps(event) + b"\n"


def send_json(h: HandlerBase, status: int, value: Any) -> None:
    """Send a complete JSON response with gin's content type."""
    h.send_bytes(status, dumps(value), JSON_TYPE)


def progress_line(blob: FakeBlob, completed: int) -> dict[str, Any]:
    """Return a ``pulling <id>`` line; zero ``completed`` is omitted like Go's omitempty."""
    line: dict[str, Any] = {"status": f"pulling {blob.short}", "digest": blob.digest}
    if blob.size:
        line["total"] = blob.size
    if completed:
        line["completed"] = completed
    return line


def rfc3339(ns: int) -> str:
    """Format nanoseconds since the epoch like Go's RFC3339Nano in UTC."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{stamp}{fraction}Z"


def go_quote(text: str) -> str:
    """Quote like Go's ``%q`` for the texts that occur here."""
    return json.dumps(text, ensure_ascii=False)


def status_phrase(status: int) -> str:
    """Return a lower-case reason phrase for an HTTP status."""
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"status {status}"


def parse_body(body: bytes, type_name: str) -> dict[str, Any]:
    """Decode a JSON request body with gin's error texts."""
    if not body.strip():
        raise HTTPError(400, "missing request body")
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise HTTPError(400, _json_syntax_error(body, exc)) from None
    if not isinstance(value, dict):
        raise HTTPError(400, unmarshal_error(value, f"api.{type_name}", "", go_value=True))
    return value


def _json_syntax_error(body: bytes, exc: ValueError) -> str:
    position = getattr(exc, "pos", 0) or 0
    if position >= len(body.rstrip()):
        return "unexpected EOF"
    char = body[position : position + 1].decode(errors="replace")
    return f"invalid character {char!r} looking for beginning of value"


def unmarshal_error(value: Any, target: str, go_type: str, *, go_value: bool = False) -> str:
    """Return encoding/json's text for a JSON value of the wrong type."""
    kind = _json_kind(value)
    if go_value:
        return f"json: cannot unmarshal {kind} into Go value of type {target}"
    return f"json: cannot unmarshal {kind} into Go struct field {target} of type {go_type}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def string_field(request: Mapping[str, Any], key: str, type_name: str) -> str:
    """Return a string field of a request ('' when absent); reject other types like Go."""
    value = request.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HTTPError(400, unmarshal_error(value, f"{type_name}.{key}", "string"))
    return value


def model_field(request: Mapping[str, Any], type_name: str) -> str:
    """Return the request's ``model``, or its deprecated ``name`` when ``model`` is empty."""
    return string_field(request, "model", type_name) or string_field(request, "name", type_name)


def keep_alive_seconds(value: Any) -> float | None:
    """Parse ``keep_alive`` like ``api.Duration``: seconds, or a Go duration string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise HTTPError(400, "json: cannot unmarshal bool into Go value of type api.Duration")
    if isinstance(value, (int, float)):
        if math.isnan(value):
            raise HTTPError(400, "invalid keep_alive")
        return float(value)
    if isinstance(value, str):
        return _go_duration(value)
    raise HTTPError(
        400, f"json: cannot unmarshal {_json_kind(value)} into Go value of type api.Duration"
    )


def _go_duration(text: str) -> float:
    body = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    matches = list(_GO_DURATION.finditer(body))
    if not body or "".join(m.group(0) for m in matches) != body:
        raise HTTPError(400, f"time: invalid duration {go_quote(text)}")
    return sign * sum(float(m.group(1)) * _GO_UNITS[m.group(2)] for m in matches)


def check_fraction(label: str, value: float) -> float:
    """Return ``value`` if it lies in [0, 1]; raise ValueError naming ``label`` otherwise."""
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{label} must be between 0.0 and 1.0, got {value!r}")
    return float(value)


def is_ip(host: str) -> bool:
    """Return whether ``host`` is an IP literal (brackets allowed)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def allowed_host(header: str) -> bool:
    """Apply ``allowedHostsMiddleware``'s rules to a Host header (server bound to loopback)."""
    host = header.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address.is_loopback or address.is_private or address.is_unspecified
    host = host.lower()
    if host in ("", "localhost", socket.gethostname().lower()):
        return True
    return host.endswith((".localhost", ".local", ".internal"))


def tags_entry(entry: Installed) -> dict[str, Any]:
    """Return one ``/api/tags`` item."""
    model = entry.model
    return {
        "name": model.display,
        "model": model.display,
        "modified_at": rfc3339(entry.modified_ns),
        "size": model.size,
        "digest": model.manifest_digest,
        "details": dict(model.details),
    }


def ps_entry(entry: Loaded) -> dict[str, Any]:
    """Return one ``/api/ps`` item."""
    model = entry.model
    return {
        "name": model.display,
        "model": model.display,
        "size": entry.size,
        "digest": model.manifest_digest,
        "details": dict(model.details),
        "expires_at": rfc3339(entry.expires_ns),
        "size_vram": entry.size_vram,
        "context_length": entry.context_length,
    }


def run_reply(name: str, chat: bool, reason: str | None, text: str = "") -> dict[str, Any]:
    """Return a generate (or chat) reply object; ``reason`` None means not done."""
    reply: dict[str, Any] = {"model": name, "created_at": rfc3339(time.time_ns())}
    if chat:
        reply["message"] = {"role": "assistant", "content": text}
    else:
        reply["response"] = text
    reply["done"] = reason is not None
    if reason is not None:
        reply["done_reason"] = reason
    return reply


def reply_metrics() -> dict[str, int]:
    """Return the timing counters of a finished reply."""
    return {
        "total_duration": 1_000_000,
        "load_duration": 100_000,
        "prompt_eval_count": 4,
        "prompt_eval_duration": 200_000,
        "eval_count": len(REPLY_TOKENS),
        "eval_duration": 700_000,
    }


def kv_cache_bytes(model: FakeModel, context: int) -> int:
    """Estimate the f16 KV cache Ollama adds to a loaded model's size."""
    info = model.model_info
    arch = info.get("general.architecture", "")
    blocks = _int(info.get(f"{arch}.block_count"))
    embedding = _int(info.get(f"{arch}.embedding_length"))
    heads = _int(info.get(f"{arch}.attention.head_count")) or 1
    kv_heads = _int(info.get(f"{arch}.attention.head_count_kv")) or heads
    return context * blocks * 2 * (embedding // heads) * kv_heads * 2


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def modelfile(model: FakeModel, models_dir: str) -> str:
    """Return the Modelfile text ``/api/show`` reports."""
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {model.display}",
        "",
    ]
    for blob in model.layers:
        if blob.media_type == MEDIA_MODEL:
            lines.append(f"FROM {models_dir}/blobs/sha256-{blob.hex}")
    if model.template:
        lines.append(f"TEMPLATE {_modelfile_quote(model.template)}")
    if model.system:
        lines.append(f"SYSTEM {_modelfile_quote(model.system)}")
    for key, value in model.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {_go_value(item)}")
    if model.license:
        lines.append(f"LICENSE {_modelfile_quote(model.license)}")
    return "\n".join(lines) + "\n"


def _modelfile_quote(text: str) -> str:
    return f'"""{text}"""' if "\n" in text or '"' in text else text


def parameters_text(parameters: Mapping[str, Any]) -> str:
    """Format parameters like ``/api/show`` (``%-30s %#v`` per value)."""
    lines = []
    for key, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {_go_value(item)}")
    return "\n".join(lines)


def _go_value(value: Any) -> str:
    """Format a parameter like Go's ``%#v`` (strings quoted)."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def tensors(model: FakeModel) -> list[dict[str, Any]]:
    """Return a plausible tensor list for ``/api/show`` from the model's shape."""
    info = model.model_info
    arch = info.get("general.architecture", "")
    blocks = _int(info.get(f"{arch}.block_count"))
    embedding = _int(info.get(f"{arch}.embedding_length")) or 1
    hidden = _int(info.get(f"{arch}.feed_forward_length")) or embedding * 4
    quant = str(model.details.get("quantization_level", "F16"))
    tensors: list[dict[str, Any]] = [
        {"name": "token_embd.weight", "type": quant, "shape": [embedding, 32000]}
    ]
    for block in range(blocks):
        prefix = f"blk.{block}"
        tensors.append({"name": f"{prefix}.attn_norm.weight", "type": "F32", "shape": [embedding]})
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensors.append(
                {"name": f"{prefix}.{part}.weight", "type": quant, "shape": [embedding, embedding]}
            )
        tensors.append({"name": f"{prefix}.ffn_norm.weight", "type": "F32", "shape": [embedding]})
        for part, shape in (
            ("ffn_gate", [embedding, hidden]),
            ("ffn_up", [embedding, hidden]),
            ("ffn_down", [hidden, embedding]),
        ):
            tensors.append({"name": f"{prefix}.{part}.weight", "type": quant, "shape": shape})
    tensors.append({"name": "output_norm.weight", "type": "F32", "shape": [embedding]})
    return tensors
