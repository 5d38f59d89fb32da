"""Models, blobs and manifests for :class:`~ollama_ready.testing.FakeOllama`.

Sizes are simulated: no model bytes exist anywhere. Digests are still real sha256 values:
text layers (template, system, params, license) and the config blob hash their actual content,
exactly as Ollama does, so two models with the same template share that layer just as they would
on a real server. Only the weights blob has a synthetic digest, derived from the model's name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ollama_ready.names import ModelName

__all__ = [
    "MEDIA_CONFIG",
    "MEDIA_LICENSE",
    "MEDIA_MODEL",
    "MEDIA_PARAMS",
    "MEDIA_SYSTEM",
    "MEDIA_TEMPLATE",
    "FakeBlob",
    "FakeModel",
    "apply_create_request",
    "default_registry",
    "go_json",
    "human_parameter_count",
    "params_blob",
    "text_blob",
]

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
_MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
_MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

_DEFAULT_TEMPLATE = "{{ .Prompt }}"
_DEFAULT_SYSTEM = "You are a helpful assistant."
_DEFAULT_LICENSE = "MIT License"
_TEXT_LAYER_ORDER = (MEDIA_TEMPLATE, MEDIA_SYSTEM, MEDIA_LICENSE, MEDIA_PARAMS)


def go_json(value: Any) -> bytes:
    """Encode like Go's ``json.Marshal`` of a map: sorted keys, no spaces, no HTML escaping."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class FakeBlob:
    """One blob of a fake model: a digest (``sha256:<hex>``), a size and a media type."""

    digest: str
    size: int
    media_type: str = MEDIA_MODEL

    @classmethod
    def of(cls, content: bytes, media_type: str = MEDIA_MODEL) -> FakeBlob:
        """Return the blob holding ``content``, with its real sha256 digest."""
        return cls(f"sha256:{hashlib.sha256(content).hexdigest()}", len(content), media_type)

    @classmethod
    def synthetic(cls, seed: str, size: int, media_type: str = MEDIA_MODEL) -> FakeBlob:
        """Return a blob of ``size`` simulated bytes whose digest is derived from ``seed``."""
        digest = hashlib.sha256(f"ollama_ready.testing:{seed}:{size}".encode()).hexdigest()
        return cls(f"sha256:{digest}", size, media_type)

    @property
    def hex(self) -> str:
        """The 64 hex digits of the digest, without ``sha256:``."""
        return self.digest.partition(":")[2]

    @property
    def short(self) -> str:
        """The 12-hex id Ollama prints in ``pulling <id>`` (``digest[7:19]``)."""
        return self.digest[7:19]


def text_blob(text: str, media_type: str) -> FakeBlob:
    """Return the layer Ollama writes for a template, system prompt or license text."""
    return FakeBlob.of(text.encode(), media_type)


def params_blob(parameters: Mapping[str, Any]) -> FakeBlob:
    """Return the params layer: Go's JSON encoder output, trailing newline included."""
    return FakeBlob.of(go_json(dict(parameters)) + b"\n", MEDIA_PARAMS)


def human_parameter_count(count: int) -> str:
    """Format a parameter count the way Ollama's ``format.HumanNumber`` does (``1.2B``)."""
    for unit, scale in (("B", 1_000_000_000), ("M", 1_000_000), ("K", 1_000)):
        if count >= scale:
            value = count / scale
            if value >= 100 or value == int(value):
                return f"{int(value)}{unit}"
            text = f"{value:.2f}" if value < 10 else f"{value:.1f}"
            return f"{text.rstrip('0').rstrip('.')}{unit}"
    return str(count)


@dataclass(frozen=True, slots=True)
class FakeModel:
    """A model the fake server holds or can pull: its blobs (config last) and its metadata.

    Build one with :meth:`synthetic`. ``name`` is the canonical full name
    (``registry.ollama.ai/library/llama3.2:1b``); ``size`` is what ``/api/tags`` reports.
    ``vram_fraction`` overrides the server's placement for this model in ``/api/ps``.
    """

    name: str
    blobs: tuple[FakeBlob, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    model_info: Mapping[str, Any] = field(default_factory=dict)
    template: str = _DEFAULT_TEMPLATE
    system: str = ""
    license: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ("completion",)
    vram_fraction: float | None = None

    def __post_init__(self) -> None:
        if not self.blobs:
            raise ValueError(f"a model needs at least its config blob: {self.name}")
        canonical = ModelName.parse(self.name).full
        if canonical != self.name:
            object.__setattr__(self, "name", canonical)

    @classmethod
    def synthetic(
        cls,
        name: str,
        *,
        size: int = 2_000_000,
        layers: int = 3,
        family: str = "llama",
        parameter_size: str | None = None,
        quantization_level: str = "Q4_K_M",
        parameter_count: int | None = None,
        context_length: int = 4096,
        block_count: int = 16,
        embedding_length: int = 2048,
        head_count: int = 32,
        head_count_kv: int = 8,
        template: str = _DEFAULT_TEMPLATE,
        system: str = "",
        license: str = "",
        parameters: Mapping[str, Any] | None = None,
        capabilities: Sequence[str] = ("completion",),
        model_info: Mapping[str, Any] | None = None,
        vram_fraction: float | None = None,
        **details: Any,
    ) -> FakeModel:
        """Build a model with deterministic digests whose blobs add up to ``size`` bytes.

        ``layers`` counts the manifest layers (the config blob comes on top): the weights,
        then the template, a params layer, system prompt and license as far as they go.
        Extra keyword arguments land in ``details`` (``format``, ``families``, ...).
        """
        if layers < 1:
            raise ValueError(f"a model has at least one layer (its weights), got {layers}")
        full = ModelName.parse(name).full
        count = parameter_count if parameter_count is not None else max(1, size // 2)
        detail_map: dict[str, Any] = {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": parameter_size or human_parameter_count(count),
            "quantization_level": quantization_level,
        }
        detail_map.update(details)
        info = _model_info(
            family,
            count,
            context_length=context_length,
            block_count=block_count,
            embedding_length=embedding_length,
            head_count=head_count,
            head_count_kv=head_count_kv,
        )
        info.update(model_info or {})
        texts = _LayerTexts(
            template=template or _DEFAULT_TEMPLATE,
            system=system or _DEFAULT_SYSTEM,
            license=license or _DEFAULT_LICENSE,
            parameters=dict(parameters) if parameters is not None else {"num_ctx": 4096},
        )
        text_layers = texts.blobs(layers - 1)
        # The config lists every layer digest; digests have a fixed length, so a placeholder
        # for the weights gives the config's final size before the weights size is known.
        placeholder = FakeBlob.synthetic(full, 0)
        config_size = _config_blob(detail_map, (placeholder, *text_layers)).size
        weights_size = max(1, size - config_size - sum(b.size for b in text_layers))
        weights = FakeBlob.synthetic(full, weights_size)
        config = _config_blob(detail_map, (weights, *text_layers))
        media = {blob.media_type for blob in text_layers}
        return cls(
            name=full,
            blobs=(weights, *text_layers, config),
            details=detail_map,
            model_info=info,
            template=texts.template if MEDIA_TEMPLATE in media else "",
            system=texts.system if MEDIA_SYSTEM in media else "",
            license=texts.license if MEDIA_LICENSE in media else "",
            parameters=texts.parameters if MEDIA_PARAMS in media else {},
            capabilities=tuple(capabilities),
            vram_fraction=vram_fraction,
        )

    @property
    def model_name(self) -> ModelName:
        """The parsed name."""
        return ModelName.parse(self.name)

    @property
    def display(self) -> str:
        """The short name Ollama lists (``DisplayShortest``): ``llama3.2:1b``."""
        return self.model_name.display

    @property
    def size(self) -> int:
        """Bytes of all blobs, config included: the ``size`` of ``/api/tags``."""
        return sum(blob.size for blob in self.blobs)

    @property
    def layers(self) -> tuple[FakeBlob, ...]:
        """The manifest layers (every blob but the config)."""
        return self.blobs[:-1]

    @property
    def config(self) -> FakeBlob:
        """The config blob, pulled last."""
        return self.blobs[-1]

    @property
    def weights(self) -> FakeBlob | None:
        """The first model-weights layer, if any."""
        return next((b for b in self.blobs if b.media_type == MEDIA_MODEL), None)

    @property
    def manifest(self) -> bytes:
        """The manifest document whose sha256 is :attr:`manifest_digest`."""
        document = {
            "schemaVersion": 2,
            "mediaType": _MEDIA_MANIFEST,
            "config": _descriptor(self.config),
            "layers": [_descriptor(blob) for blob in self.layers],
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @property
    def manifest_digest(self) -> str:
        """The bare hex sha256 of the manifest: the ``digest`` of ``/api/tags`` and ``/api/ps``."""
        return hashlib.sha256(self.manifest).hexdigest()

    @property
    def context_length(self) -> int:
        """The trained context length from ``model_info`` (4096 when unknown)."""
        arch = self.model_info.get("general.architecture", "")
        value = self.model_info.get(f"{arch}.context_length")
        return value if isinstance(value, int) and value > 0 else 4096

    def renamed(self, name: str) -> FakeModel:
        """Return the same blobs under another name (what ``/api/copy`` does)."""
        return replace(self, name=ModelName.parse(name).full)


def _model_info(
    arch: str,
    parameter_count: int,
    *,
    context_length: int,
    block_count: int,
    embedding_length: int,
    head_count: int,
    head_count_kv: int,
) -> dict[str, Any]:
    return {
        "general.architecture": arch,
        "general.file_type": 15,
        "general.parameter_count": parameter_count,
        f"{arch}.attention.head_count": head_count,
        f"{arch}.attention.head_count_kv": head_count_kv,
        f"{arch}.attention.layer_norm_rms_epsilon": 0.00001,
        f"{arch}.block_count": block_count,
        f"{arch}.context_length": context_length,
        f"{arch}.embedding_length": embedding_length,
        f"{arch}.feed_forward_length": embedding_length * 4,
        f"{arch}.rope.dimension_count": max(1, embedding_length // max(1, head_count)),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": None,
        "tokenizer.ggml.token_type": None,
    }


@dataclass(frozen=True, slots=True)
class _LayerTexts:
    template: str
    system: str
    license: str
    parameters: Mapping[str, Any]

    def blobs(self, count: int) -> tuple[FakeBlob, ...]:
        """Return ``count`` text layers: template, params, system, license, then fillers."""
        chosen = [
            text_blob(self.template, MEDIA_TEMPLATE),
            params_blob(self.parameters),
            text_blob(self.system, MEDIA_SYSTEM),
            text_blob(self.license, MEDIA_LICENSE),
        ][:count]
        for extra in range(count - len(chosen)):
            chosen.append(FakeBlob.synthetic(f"extra-layer-{extra}", 1024, MEDIA_PARAMS))
        order = {media: position for position, media in enumerate(_TEXT_LAYER_ORDER)}
        return tuple(sorted(chosen, key=lambda blob: order.get(blob.media_type, len(order))))


def _config_blob(details: Mapping[str, Any], layers: Iterable[FakeBlob]) -> FakeBlob:
    config = {
        "model_format": details.get("format", "gguf"),
        "model_family": details.get("family", ""),
        "model_families": details.get("families", []),
        "model_type": details.get("parameter_size", ""),
        "file_type": details.get("quantization_level", ""),
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [blob.digest for blob in layers]},
    }
    return FakeBlob.of(json.dumps(config, separators=(",", ":")).encode(), MEDIA_CONFIG)


def _descriptor(blob: FakeBlob) -> dict[str, Any]:
    return {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}


def default_registry() -> tuple[FakeModel, ...]:
    """Return the models a :class:`FakeOllama` can pull when no registry is given.

    Sizes and architectures are close to the real ones, so fit estimates and progress bars
    look realistic; no bytes are ever sent.
    """
    return (
        FakeModel.synthetic(
            "llama3.2:1b",
            size=1_321_098_329,
            layers=4,
            parameter_size="1.2B",
            quantization_level="Q8_0",
            parameter_count=1_235_814_432,
            context_length=131_072,
            block_count=16,
            embedding_length=2048,
            head_count=32,
            head_count_kv=8,
            capabilities=("completion", "tools"),
        ),
        FakeModel.synthetic(
            "gpt-oss:20b",
            size=13_780_173_839,
            layers=4,
            family="gptoss",
            parameter_size="20.9B",
            quantization_level="MXFP4",
            parameter_count=20_914_757_184,
            context_length=131_072,
            block_count=24,
            embedding_length=2880,
            head_count=64,
            head_count_kv=8,
            capabilities=("completion", "tools", "thinking"),
        ),
        FakeModel.synthetic(
            "qwen2.5:0.5b",
            size=397_821_319,
            layers=4,
            family="qwen2",
            parameter_size="494.03M",
            quantization_level="Q4_K_M",
            parameter_count=494_032_768,
            context_length=32_768,
            block_count=24,
            embedding_length=896,
            head_count=14,
            head_count_kv=2,
            capabilities=("completion", "tools"),
        ),
        FakeModel.synthetic(
            "tinyllama",
            size=637_700_138,
            layers=4,
            parameter_size="1B",
            quantization_level="Q4_0",
            parameter_count=1_100_048_384,
            context_length=2048,
            block_count=22,
            embedding_length=2048,
            head_count=32,
            head_count_kv=4,
        ),
    )


def apply_create_request(base: FakeModel, name: ModelName, request: Mapping[str, Any]) -> FakeModel:
    """Return ``base`` renamed, with the request's template, system, license and parameters."""
    layers = list(base.layers)
    template, system, license_text = base.template, base.system, base.license
    parameters = dict(base.parameters)

    def put(blob: FakeBlob) -> None:
        layers[:] = [b for b in layers if b.media_type != blob.media_type] + [blob]

    if isinstance(request.get("template"), str) and request["template"]:
        template = request["template"]
        put(text_blob(template, MEDIA_TEMPLATE))
    if isinstance(request.get("system"), str) and request["system"]:
        system = request["system"]
        put(text_blob(system, MEDIA_SYSTEM))
    licenses = request.get("license")
    if licenses:
        texts = [licenses] if isinstance(licenses, str) else [str(t) for t in licenses]
        layers[:] = [b for b in layers if b.media_type != MEDIA_LICENSE]
        layers.extend(text_blob(text, MEDIA_LICENSE) for text in texts)
        license_text = "\n".join(texts)
    if isinstance(request.get("parameters"), dict):
        parameters.update(request["parameters"])
    if parameters:
        put(params_blob(parameters))
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        put(FakeBlob.of(go_json(messages), _MEDIA_MESSAGES))
    config = _config_blob(base.details, layers)
    return replace(
        base,
        name=name.full,
        blobs=(*layers, config),
        template=template,
        system=system,
        license=license_text,
        parameters=parameters,
    )
