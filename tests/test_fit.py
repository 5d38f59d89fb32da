"""VRAM fit estimate (§7) on worked examples derived by hand, and the ``ollama ps`` label (§4.4)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ollama_ready.errors import ConfigError
from ollama_ready.fit import (
    GPU_MINIMUM_MEMORY,
    FitEstimate,
    Placement,
    estimate_fit,
    placement_label,
)

MiB = 1 << 20
GiB = 1 << 30

# A llama-3.2-1B-like model as /api/show reports it.
SMALL = {
    "general.architecture": "llama",
    "general.parameter_count": 1_235_814_432,
    "llama.block_count": 16,
    "llama.embedding_length": 2048,
    "llama.attention.head_count": 32,
    "llama.attention.head_count_kv": 8,
    "llama.attention.key_length": 64,
    "llama.attention.value_length": 64,
    "llama.context_length": 131072,
}
SMALL_FILE = 1_321_082_016

# Worked example, num_ctx 4096, one slot, f16 KV cache:
#   KV per layer  = 4096 * 1 * (64 + 64) * 8 heads_kv * 2 bytes          =     8_388_608 (8 MiB)
#   KV            = 16 layers * 8 MiB                                     =   134_217_728 (128 MiB)
#   graph         = GQA (32 // 8 = 4) * KV // 6 = 536_870_912 // 6      =    89_478_485
#   reserve       = 457 MiB                                               =   479_199_232
#   required      = 1_321_082_016 + 134_217_728 + 89_478_485 + 479_199_232 = 2_023_977_461
#   layer weights = 1_321_082_016 // 17 (16 blocks + output)              =    77_710_706
#   output layer  = 1_321_082_016 - 16 * 77_710_706                       =    77_710_720
#   one layer     = 77_710_706 + 8_388_608                                =    86_099_314
#   fixed per GPU = reserve + graph = 479_199_232 + 89_478_485            =   568_677_717
SMALL_KV = 134_217_728
SMALL_GRAPH = 89_478_485
SMALL_REQUIRED = 2_023_977_461
SMALL_LAYER = 86_099_314
SMALL_FIXED = 568_677_717


def test_small_model_fits_fully_on_an_8_gib_gpu() -> None:
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[8 * GiB])
    assert estimate.verdict == "full"
    assert estimate.fits_fully
    assert (estimate.layers, estimate.total_layers, estimate.gpu_layers) == (17, 17, (17,))
    assert estimate.kv_cache_bytes == SMALL_KV
    assert estimate.graph_bytes == SMALL_GRAPH
    assert estimate.reserve_bytes == 457 * MiB == GPU_MINIMUM_MEMORY
    assert estimate.required_bytes == SMALL_REQUIRED
    # everything placed: the allocation is exactly the requirement
    assert estimate.vram_bytes == SMALL_REQUIRED
    assert estimate.gpus_used == 1
    assert (estimate.num_ctx, estimate.parallel, estimate.notes) == (4096, 1, ())
    assert estimate.summary() == "fits fully on 1 GPU (estimate): needs 1.9 GiB, 8.0 GiB free"


def test_the_boundary_is_the_required_byte_count() -> None:
    exact = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[SMALL_REQUIRED])
    assert exact.verdict == "full"
    # One byte short: 16 blocks fit (568_677_717 + 16 * 86_099_314 = 1_946_266_741), leaving
    # 2_023_977_460 - 1_946_266_741 = 77_710_719 bytes, one short of the 77_710_720 output layer.
    short = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[SMALL_REQUIRED - 1])
    assert short.verdict == "partial"
    assert (short.layers, short.vram_bytes) == (16, 1_946_266_741)


def test_small_model_fits_partially_on_a_1_gib_gpu() -> None:
    # Admitted: 1 GiB >= fixed + 2 layers = 568_677_717 + 172_198_628 = 740_876_345.
    # Room for layers: 1_073_741_824 - 568_677_717 = 505_064_107 -> 5 layers of 86_099_314
    # (430_496_570; a sixth would need 516_595_884); the output layer does not fit.
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[1 * GiB])
    assert estimate.verdict == "partial"
    assert (estimate.layers, estimate.gpu_layers, estimate.gpus_used) == (5, (5,), 1)
    assert estimate.vram_bytes == SMALL_FIXED + 5 * SMALL_LAYER == 999_174_287
    assert estimate.required_bytes == SMALL_REQUIRED
    assert estimate.summary() == (
        "fits partially (estimate): about 5/17 layers on 1 GPU, the rest on the CPU; "
        "needs 1.9 GiB to fit fully, 1.0 GiB free"
    )


def test_small_model_runs_on_the_cpu_when_a_gpu_cannot_take_two_layers() -> None:
    # 700 MiB = 734_003_200 < 740_876_345 needed to admit any layer.
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[700 * MiB])
    assert estimate.verdict == "cpu"
    assert (estimate.layers, estimate.gpu_layers, estimate.gpus_used, estimate.vram_bytes) == (
        0,
        (0,),
        0,
        0,
    )
    assert estimate.required_bytes == SMALL_REQUIRED
    assert estimate.summary().startswith("does not fit on the GPU (estimate): runs on the CPU")


def test_no_gpu_means_cpu() -> None:
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[])
    assert estimate.verdict == "cpu"
    assert estimate.gpu_layers == ()
    assert estimate.summary() == "no GPU: runs on the CPU (would need 1.9 GiB of VRAM)"


def test_parallel_slots_multiply_the_context() -> None:
    # KV per layer = 8192 * 4 * 128 * 8 * 2 = 67_108_864; KV = 16 * 64 MiB = 1 GiB;
    # graph = 4 * 1_073_741_824 // 6 = 715_827_882.
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[8 * GiB], num_ctx=8192, parallel=4)
    assert estimate.kv_cache_bytes == 1 * GiB
    assert estimate.graph_bytes == 715_827_882
    assert estimate.required_bytes == SMALL_FILE + GiB + 715_827_882 + 457 * MiB
    assert estimate.verdict == "full"


@pytest.mark.parametrize(
    ("kv_type", "kv_bytes"),
    [("f16", SMALL_KV), ("q8_0", SMALL_KV // 2), ("q4_0", SMALL_KV // 4)],
)
def test_kv_cache_type_sets_bytes_per_element(kv_type: str, kv_bytes: int) -> None:
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[8 * GiB], kv_cache_type=kv_type)
    assert estimate.kv_cache_bytes == kv_bytes
    assert estimate.graph_bytes == 4 * kv_bytes // 6


def test_gpu_overhead_is_reserved_on_each_gpu() -> None:
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[8 * GiB], gpu_overhead=GiB)
    assert estimate.reserve_bytes == 457 * MiB + GiB
    assert estimate.required_bytes == SMALL_REQUIRED + GiB
    # the same overhead turns the exact fit into a partial one
    tight = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[SMALL_REQUIRED], gpu_overhead=1)
    assert tight.verdict == "partial"


def test_minimum_memory_is_a_parameter_for_metal() -> None:
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[8 * GiB], minimum_memory=512 * MiB)
    assert estimate.required_bytes == SMALL_REQUIRED - 457 * MiB + 512 * MiB


def test_num_ctx_is_clamped_to_the_context_length() -> None:
    estimate = estimate_fit(SMALL, file_size=SMALL_FILE, gpus=[80 * GiB], num_ctx=200_000)
    assert estimate.num_ctx == 131072
    # 131072 = 32 * 4096, so the KV cache is 32 times the worked example's
    assert estimate.kv_cache_bytes == 32 * SMALL_KV
    assert any("clamped" in note for note in estimate.notes)


# A synthetic model with round numbers: 4 blocks, 5 GiB of weights, head_dim 4096 / 32 = 128.
#   layer weights = 5 GiB // 5 = 1 GiB; output = 5 GiB - 4 GiB = 1 GiB
#   KV per layer  = 4096 * 1 * (128 + 128) * 8 * 2 = 16 MiB; KV = 64 MiB = 67_108_864
#   graph         = 4 * 67_108_864 // 6 = 44_739_242
#   one layer     = 1 GiB + 16 MiB = 1_090_519_040
#   fixed per GPU = 479_199_232 + 44_739_242 = 523_938_474
BIG = {
    "general.architecture": "llama",
    "llama.block_count": 4,
    "llama.embedding_length": 4096,
    "llama.attention.head_count": 32,
    "llama.attention.head_count_kv": 8,
    "llama.context_length": 8192,
}
BIG_FILE = 5 * GiB
BIG_FIXED = 523_938_474
BIG_LAYER = 1_090_519_040


@pytest.mark.parametrize(
    ("gpus", "gpu_layers"),
    [
        ([4 * GiB, 3 * GiB], (3, 2)),
        ([3 * GiB, 4 * GiB], (2, 3)),  # reported in the order given, placed largest first
        ([4 * GiB, 3 * GiB, 2 * GiB], (3, 2, 0)),  # two GPUs suffice: the third stays empty
    ],
)
def test_big_model_needs_two_gpus(gpus: list[int], gpu_layers: tuple[int, ...]) -> None:
    # One 4 GiB GPU: (4_294_967_296 - 523_938_474) // 1_090_519_040 = 3 of 5 layers.
    # Two GPUs, round-robin: blocks to 4G, 3G, 4G, 3G; the output layer then tries the GPU at
    # index 4 % 2 = 0 (4 GiB), which has 4_294_967_296 - 523_938_474 - 2 * 1_090_519_040
    # = 1_589_990_742 >= 1 GiB left. So 3 + 2 layers.
    estimate = estimate_fit(BIG, file_size=BIG_FILE, gpus=gpus)
    assert estimate.verdict == "full"
    assert estimate.gpu_layers == gpu_layers
    assert estimate.gpus_used == 2
    # required for 2 GPUs = 5 GiB + 64 MiB + 2 * 523_938_474
    assert estimate.required_bytes == 5_368_709_120 + 67_108_864 + 2 * BIG_FIXED == 6_483_694_932
    assert estimate.vram_bytes == estimate.required_bytes
    assert estimate.summary().startswith("fits fully on 2 GPUs (estimate): needs 6.0 GiB")


def test_big_model_partially_on_two_gpus() -> None:
    # Each 3 GiB GPU holds (3_221_225_472 - 523_938_474) // 1_090_519_040 = 2 blocks, leaving
    # 516_248_918 < 1 GiB for the output layer: 4 of 5 layers.
    estimate = estimate_fit(BIG, file_size=BIG_FILE, gpus=[3 * GiB, 3 * GiB])
    assert estimate.verdict == "partial"
    assert (estimate.layers, estimate.gpu_layers) == (4, (2, 2))
    assert estimate.vram_bytes == 2 * (BIG_FIXED + 2 * BIG_LAYER) == 5_409_953_108
    assert estimate.required_bytes == 6_483_694_932


def test_gpus_that_cannot_take_two_layers_are_not_used() -> None:
    # 2 GiB each: 2_147_483_648 < fixed + 2 layers = 523_938_474 + 2_181_038_080, so neither GPU
    # takes a layer, although each could hold one.
    estimate = estimate_fit(BIG, file_size=BIG_FILE, gpus=[2 * GiB, 2 * GiB])
    assert estimate.verdict == "cpu"
    assert estimate.gpu_layers == (0, 0)


def test_missing_optional_keys_use_defaults_and_say_so() -> None:
    info = {k: v for k, v in BIG.items() if not k.endswith("head_count_kv")}
    estimate = estimate_fit(info, file_size=BIG_FILE, gpus=[80 * GiB])
    # head_count_kv defaults to head_count (32): KV per layer = 4096 * 256 * 32 * 2 = 64 MiB,
    # KV = 256 MiB; GQA = 1, graph = 268_435_456 // 6 = 44_739_242.
    assert estimate.kv_cache_bytes == 256 * MiB
    assert estimate.graph_bytes == 44_739_242
    assert any("head_count_kv missing" in note for note in estimate.notes)


def test_key_and_value_lengths_override_the_head_dim() -> None:
    info = {**BIG, "llama.attention.key_length": 192, "llama.attention.value_length": 128}
    estimate = estimate_fit(info, file_size=BIG_FILE, gpus=[80 * GiB])
    # KV = 4096 * 1 * 4 * (192 + 128) * 8 * 2
    assert estimate.kv_cache_bytes == 4096 * 4 * 320 * 8 * 2


def test_per_layer_head_counts_use_the_largest() -> None:
    info = {**BIG, "llama.attention.head_count_kv": [8, 4, 8, 2]}
    estimate = estimate_fit(info, file_size=BIG_FILE, gpus=[80 * GiB])
    assert estimate.kv_cache_bytes == 64 * MiB
    assert any("varies by layer" in note for note in estimate.notes)


def test_whole_floats_from_json_are_accepted() -> None:
    info = {**BIG, "llama.block_count": 4.0}
    assert estimate_fit(info, file_size=BIG_FILE, gpus=[80 * GiB]).total_layers == 5


@pytest.mark.parametrize(
    ("info", "match"),
    [
        ({}, "general.architecture"),
        ({**BIG, "general.architecture": ""}, "general.architecture"),
        ({k: v for k, v in BIG.items() if k != "llama.block_count"}, "llama.block_count"),
        ({**BIG, "llama.block_count": 0}, "llama.block_count"),
        ({**BIG, "llama.embedding_length": None}, "llama.embedding_length"),
        ({**BIG, "llama.attention.head_count": True}, "whole number"),
        ({**BIG, "llama.attention.head_count": 2.5}, "whole number"),
        ({**BIG, "llama.attention.head_count": "32"}, "whole number"),
    ],
)
def test_bad_model_info_is_rejected(info: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        estimate_fit(info, file_size=BIG_FILE, gpus=[GiB])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"file_size": -1},
        {"num_ctx": 0},
        {"parallel": 0},
        {"gpu_overhead": -1},
        {"gpus": [GiB, -1]},
        {"kv_cache_type": "q5_1"},
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"file_size": BIG_FILE, "gpus": [GiB], **kwargs}
    with pytest.raises(ConfigError):
        estimate_fit(BIG, **arguments)  # type: ignore[arg-type]


def test_estimate_is_a_frozen_value() -> None:
    estimate = estimate_fit(BIG, file_size=BIG_FILE, gpus=[GiB])
    assert isinstance(estimate, FitEstimate)
    with pytest.raises(AttributeError):
        estimate.verdict = "full"  # type: ignore[misc]


# --------------------------------------------------------------------------- after load


@pytest.mark.parametrize(
    ("size", "size_vram", "label"),
    [
        (4_000_000_000, 4_000_000_000, "100% GPU"),
        (4_000_000_000, 0, "100% CPU"),
        (0, 0, "100% CPU"),  # Ollama checks size_vram == 0 first
        (100, 101, "Unknown"),
        (0, 5, "Unknown"),
        (100, 50, "50%/50% CPU/GPU"),
        (100, 1, "99%/1% CPU/GPU"),
        (1000, 999, "0%/100% CPU/GPU"),  # 0.1% rounds to 0 but is not "100% GPU"
        (8, 7, "13%/87% CPU/GPU"),  # 12.5 rounds half away from zero, like Go's math.Round
        (8, 5, "38%/62% CPU/GPU"),  # 37.5 -> 38 (banker's rounding would also say 38)
        (200, 199, "1%/99% CPU/GPU"),  # 0.5 -> 1 (banker's rounding would say 0)
    ],
)
def test_placement_label_matches_ollama_ps(size: int, size_vram: int, label: str) -> None:
    assert placement_label(size, size_vram) == label
    assert Placement.from_sizes(size, size_vram).label == label


@pytest.mark.parametrize(("size", "size_vram"), [(-1, 0), (10, -1)])
def test_placement_label_rejects_negative_sizes(size: int, size_vram: int) -> None:
    with pytest.raises(ConfigError):
        placement_label(size, size_vram)


@dataclass(frozen=True)
class Running:
    size: int
    size_vram: int


def test_placement_of_a_running_model() -> None:
    partial = Placement.of(Running(size=8, size_vram=6))
    assert partial == Placement(size=8, size_vram=6, label="25%/75% CPU/GPU", gpu_fraction=0.75)
    assert (partial.partial, partial.on_gpu, partial.on_cpu) == (True, False, False)
    assert str(partial) == "25%/75% CPU/GPU"

    full = Placement.of(Running(size=8, size_vram=8))
    assert (full.on_gpu, full.partial, full.gpu_fraction) == (True, False, 1.0)

    cpu = Placement.of(Running(size=8, size_vram=0))
    assert (cpu.on_cpu, cpu.partial, cpu.gpu_fraction) == (True, False, 0.0)

    unknown = Placement.from_sizes(8, 9)
    assert (unknown.label, unknown.gpu_fraction, unknown.partial) == ("Unknown", None, False)
