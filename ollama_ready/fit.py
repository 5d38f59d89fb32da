"""Will a model fit in VRAM? An estimate before load, and the measured placement after.

Before a load, :func:`estimate_fit` applies the rules of Ollama's memory estimate
(``llm/memory.go``, v0.5.7) to the metadata ``/api/show`` returns:

- **KV cache** = ``num_ctx * parallel * block_count * (head_dim_k + head_dim_v) * head_count_kv *
  bytes per element`` (2 for f16, 1 for q8_0, 0.5 for q4_0);
- **graph** (compute buffer) = ``GQA * KV / 6`` with ``GQA = head_count // head_count_kv``:
  Ollama's fallback formula for architectures it has no closed form for;
- **per GPU**: 457 MiB that Ollama keeps free (``MinimumMemory``) plus ``OLLAMA_GPU_OVERHEAD``,
  and the graph on every GPU that holds layers;
- **weights** = the model file's size, split evenly over ``block_count`` repeating layers and the
  output layer (``/api/show`` gives no per-tensor sizes).

The GPUs are tried largest first, one, then two, and so on; layers are placed round-robin as
Ollama places them (a GPU admits layers only with room for two). The verdict is ``full``,
``partial`` (with the estimated number of layers on the GPUs) or ``cpu``.

This is an **estimate**. Ollama's own figure uses exact tensor sizes and per-architecture graph
formulas (and since v0.12.11 a real allocation), so expect it to differ by a few hundred MiB;
treat results near the boundary as uncertain. After a load, :class:`Placement` reports what the
server actually did (``/api/ps`` ``size`` and ``size_vram``), labelled as ``ollama ps`` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal, Protocol

from ollama_ready.errors import ConfigError

__all__ = [
    "DEFAULT_NUM_CTX",
    "GPU_MINIMUM_MEMORY",
    "KV_CACHE_TYPES",
    "FitEstimate",
    "Placement",
    "SizedModel",
    "estimate_fit",
    "placement_label",
]

_MiB: Final = 1 << 20
_GiB: Final = 1 << 30

GPU_MINIMUM_MEMORY: Final = 457 * _MiB
"""Memory Ollama keeps free on every CUDA or ROCm GPU (``MinimumMemory``); Metal keeps 512 MiB."""
DEFAULT_NUM_CTX: Final = 4096
"""Ollama's default context per parallel slot from v0.6.7 (2048 before)."""
KV_CACHE_TYPES: Final[Mapping[str, tuple[int, int]]] = {
    "f16": (2, 1),
    "q8_0": (1, 1),
    "q4_0": (1, 2),
}
"""Bytes per KV cache element, ``(numerator, denominator)``, by ``OLLAMA_KV_CACHE_TYPE``."""

Verdict = Literal["full", "partial", "cpu"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Shape:
    architecture: str
    block_count: int
    head_count: int
    head_count_kv: int
    head_dim_k: int
    head_dim_v: int
    context_length: int | None
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FitEstimate:
    """The estimated VRAM need of a model and where its layers would go.

    Attributes:
        verdict: ``"full"`` (every layer on the GPUs), ``"partial"`` or ``"cpu"``.
        layers: Layers estimated on the GPUs, the output layer counted as one.
        total_layers: ``block_count + 1``.
        gpu_layers: Layers per GPU, in the order the GPUs were given.
        gpus_used: GPUs that hold layers.
        required_bytes: VRAM that the whole model needs on ``max(gpus_used, 1)`` GPUs:
            weights + KV cache + that many times (graph + reserve).
        vram_bytes: VRAM the estimated placement uses.
        free_bytes: The free VRAM per GPU given.
        weights_bytes: The model file's size.
        kv_cache_bytes: The KV cache for ``num_ctx * parallel`` tokens.
        graph_bytes: The compute graph, needed on every GPU that holds layers.
        reserve_bytes: Kept free on every GPU used: ``minimum_memory + gpu_overhead``.
        num_ctx: The context per slot used, after clamping to the model's ``context_length``.
        parallel: Parallel slots.
        notes: Assumptions made on the way (defaults for missing keys, clamping).
    """

    verdict: Verdict
    architecture: str
    layers: int
    total_layers: int
    gpu_layers: tuple[int, ...]
    gpus_used: int
    required_bytes: int
    vram_bytes: int
    free_bytes: tuple[int, ...]
    weights_bytes: int
    kv_cache_bytes: int
    graph_bytes: int
    reserve_bytes: int
    num_ctx: int
    parallel: int
    notes: tuple[str, ...] = ()

    @property
    def fits_fully(self) -> bool:
        """Return whether every layer is estimated to fit on the GPUs."""
        return self.verdict == "full"

    def summary(self) -> str:
        """Describe the estimate in one line."""
        free = _gib(sum(self.free_bytes))
        need = _gib(self.required_bytes)
        gpus = f"{self.gpus_used} GPU" + ("s" if self.gpus_used != 1 else "")
        if self.verdict == "full":
            return f"fits fully on {gpus} (estimate): needs {need}, {free} free"
        if self.verdict == "partial":
            return (
                f"fits partially (estimate): about {self.layers}/{self.total_layers} layers on "
                f"{gpus}, the rest on the CPU; needs {need} to fit fully, {free} free"
            )
        if not self.free_bytes:
            return f"no GPU: runs on the CPU (would need {need} of VRAM)"
        return f"does not fit on the GPU (estimate): runs on the CPU; needs {need}, {free} free"


def estimate_fit(
    model_info: Mapping[str, object],
    *,
    file_size: int,
    gpus: Sequence[int],
    num_ctx: int = DEFAULT_NUM_CTX,
    parallel: int = 1,
    gpu_overhead: int = 0,
    kv_cache_type: str = "f16",
    minimum_memory: int = GPU_MINIMUM_MEMORY,
) -> FitEstimate:
    """Estimate whether a model fits in the free VRAM of ``gpus``, before loading it.

    Args:
        model_info: ``/api/show``'s ``model_info``: ``general.architecture`` and, for that
            architecture, ``block_count``, ``embedding_length``, ``attention.head_count``, and
            optionally ``attention.head_count_kv``, ``attention.key_length``,
            ``attention.value_length``, ``context_length``.
        file_size: The model's weights in bytes (its size in ``/api/tags``).
        gpus: Free VRAM in bytes of each GPU of one library (``GpuInfo.free_memory``).
        num_ctx: Context tokens per parallel slot; clamped to the model's ``context_length``.
        parallel: Parallel slots (``OLLAMA_NUM_PARALLEL``).
        gpu_overhead: Bytes reserved on each GPU (``OLLAMA_GPU_OVERHEAD``).
        kv_cache_type: ``f16``, ``q8_0`` or ``q4_0`` (``OLLAMA_KV_CACHE_TYPE``).
        minimum_memory: Kept free on each GPU: 457 MiB for CUDA and ROCm, 512 MiB for Metal.

    Raises:
        ConfigError: ``model_info`` lacks a needed key, or a number is out of range.
    """
    for label, value, low in (
        ("file_size", file_size, 0),
        ("num_ctx", num_ctx, 1),
        ("parallel", parallel, 1),
        ("gpu_overhead", gpu_overhead, 0),
        ("minimum_memory", minimum_memory, 0),
        *(("gpus", free, 0) for free in gpus),
    ):
        _check_int(label, value, low)
    per_element = KV_CACHE_TYPES.get(kv_cache_type)
    if per_element is None:
        raise ConfigError(
            f"kv_cache_type must be one of {', '.join(KV_CACHE_TYPES)}, got {kv_cache_type!r}"
        )
    shape = _shape(model_info)
    notes = list(shape.notes)
    if shape.context_length is not None and num_ctx > shape.context_length:
        notes.append(f"num_ctx {num_ctx} clamped to the model's context_length")
        num_ctx = shape.context_length
    numerator, denominator = per_element
    kv_per_layer = (
        num_ctx * parallel * (shape.head_dim_k + shape.head_dim_v) * shape.head_count_kv * numerator
    ) // denominator
    kv = kv_per_layer * shape.block_count
    graph = (shape.head_count // shape.head_count_kv) * kv // 6
    layer_weights = file_size // (shape.block_count + 1)
    plan = _Plan(
        layer=layer_weights + kv_per_layer,
        output=file_size - layer_weights * shape.block_count,
        count=shape.block_count,
        graph=graph,
        reserve=minimum_memory + gpu_overhead,
    )
    layers, allocations = plan.place_best(tuple(gpus))
    used = sum(1 for n in layers if n)
    placed = sum(layers)
    verdict: Verdict = "full" if placed == plan.count + 1 else "partial" if placed else "cpu"
    return FitEstimate(
        verdict=verdict,
        architecture=shape.architecture,
        layers=placed,
        total_layers=plan.count + 1,
        gpu_layers=layers,
        gpus_used=used,
        required_bytes=file_size + kv + max(used, 1) * (graph + plan.reserve),
        vram_bytes=sum(allocations),
        free_bytes=tuple(gpus),
        weights_bytes=file_size,
        kv_cache_bytes=kv,
        graph_bytes=graph,
        reserve_bytes=plan.reserve,
        num_ctx=num_ctx,
        parallel=parallel,
        notes=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    layer: int  # one repeating layer: its weights and its share of the KV cache
    output: int
    count: int  # repeating layers
    graph: int
    reserve: int

    def place_best(self, free: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Place on the fewest GPUs (largest first) that hold everything, else on all of them."""
        order = sorted(range(len(free)), key=lambda i: -free[i])
        layers: tuple[int, ...] = (0,) * len(free)
        allocations: tuple[int, ...] = (0,) * len(free)
        for k in range(1, len(free) + 1):
            layers, allocations = self.place(free, order[:k])
            if sum(layers) == self.count + 1:
                break
        return layers, allocations

    def place(
        self, free: tuple[int, ...], candidates: list[int]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Place layers round-robin on ``candidates`` as ``estimateGPULayers`` does."""
        fixed = self.reserve + self.graph
        allocated = dict.fromkeys(candidates, fixed)
        layers = dict.fromkeys(candidates, 0)
        with_space = [g for g in candidates if free[g] >= fixed + 2 * self.layer]
        placed = 0
        for i in range(self.count):
            for j in range(len(with_space), 0, -1):
                gpu = with_space[i % j]
                if free[gpu] - allocated[gpu] >= self.layer:
                    allocated[gpu] += self.layer
                    layers[gpu] += 1
                    placed += 1
                    break
                del with_space[i % j]
        for j in range(len(with_space), 0, -1):
            gpu = with_space[placed % j]
            if free[gpu] - allocated[gpu] >= self.output:
                allocated[gpu] += self.output
                layers[gpu] += 1
                break
        return (
            tuple(layers.get(g, 0) for g in range(len(free))),
            tuple(allocated[g] if layers.get(g) else 0 for g in range(len(free))),
        )


def _shape(model_info: Mapping[str, object]) -> _Shape:
    architecture = model_info.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise ConfigError("model_info lacks general.architecture")
    notes: list[str] = []

    def optional(key: str) -> int | None:
        full = f"{architecture}.{key}"
        value = model_info.get(full)
        if value is None:
            return None
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and value:
            # Some architectures vary head counts by layer: the largest bounds the need.
            notes.append(f"{full} varies by layer; its largest value is used")
            value = max(_as_int(full, item) for item in value)
        count = _as_int(full, value)
        return count if count > 0 else None

    def required(key: str) -> int:
        count = optional(key)
        if count is None:
            raise ConfigError(f"model_info lacks a positive {architecture}.{key}")
        return count

    block_count = required("block_count")
    heads = required("attention.head_count")
    head_dim = required("embedding_length") // heads
    heads_kv = optional("attention.head_count_kv")
    if heads_kv is None:
        # Without the key every attention head has its own KV head (Ollama's Go code assumes 1).
        notes.append(f"{architecture}.attention.head_count_kv missing: head_count used")
        heads_kv = heads
    return _Shape(
        architecture=architecture,
        block_count=block_count,
        head_count=heads,
        head_count_kv=heads_kv,
        head_dim_k=optional("attention.key_length") or head_dim,
        head_dim_v=optional("attention.value_length") or head_dim,
        context_length=optional("context_length"),
        notes=tuple(notes),
    )


def _as_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    return int(value)


def _check_int(label: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")


def _gib(size: int) -> str:
    return f"{size / _GiB:.1f} GiB"


# --------------------------------------------------------------------------- after load


class SizedModel(Protocol):
    """A running model as ``/api/ps`` lists it: total size and the part in VRAM."""

    @property
    def size(self) -> int:
        """Bytes the loaded model takes in all."""
        ...

    @property
    def size_vram(self) -> int:
        """Bytes of it held in VRAM."""
        ...


def placement_label(size: int, size_vram: int) -> str:
    """Return the PROCESSOR column of ``ollama ps`` for a model of ``size`` bytes.

    ``100% CPU`` when nothing is in VRAM, ``100% GPU`` when all of it is, ``Unknown`` when the
    numbers make no sense, else ``<cpu>%/<gpu>% CPU/GPU`` with the CPU share rounded half away
    from zero. The checks run in Ollama's order, so ``size == size_vram == 0`` is ``100% CPU``.
    """
    _check_int("size", size, 0)
    _check_int("size_vram", size_vram, 0)
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    share = Decimal((size - size_vram) / size * 100)
    cpu = int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where a loaded model went, measured by the server (``/api/ps``).

    ``gpu_fraction`` is ``size_vram / size``, or None where ``label`` is ``Unknown``.
    """

    size: int
    size_vram: int
    label: str
    gpu_fraction: float | None

    @classmethod
    def from_sizes(cls, size: int, size_vram: int) -> Placement:
        """Build the placement of a model of ``size`` bytes with ``size_vram`` in VRAM."""
        label = placement_label(size, size_vram)
        if label == "Unknown":
            fraction = None
        elif size_vram == 0:
            fraction = 0.0
        else:
            fraction = size_vram / size
        return cls(size=size, size_vram=size_vram, label=label, gpu_fraction=fraction)

    @classmethod
    def of(cls, model: SizedModel) -> Placement:
        """Build the placement of a running model (``OllamaClient.ps()`` item)."""
        return cls.from_sizes(model.size, model.size_vram)

    @property
    def on_gpu(self) -> bool:
        """Return whether the whole model is in VRAM."""
        return self.label == "100% GPU"

    @property
    def on_cpu(self) -> bool:
        """Return whether none of the model is in VRAM."""
        return self.label == "100% CPU"

    @property
    def partial(self) -> bool:
        """Return whether the model is split between the CPU and the GPU."""
        return self.label.endswith("CPU/GPU")

    def __str__(self) -> str:
        return self.label
