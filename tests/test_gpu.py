"""NVML GPU detection: presets, NVML faults, CUDA_VISIBLE_DEVICES, CUDA variant eras, Metal."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pynvml
import pytest

from ollama_ready.errors import ConfigError
from ollama_ready.gpu import (
    CUDA_MINIMUM_MEMORY,
    METAL_MINIMUM_MEMORY,
    CudaEra,
    GpuInfo,
    GpuReport,
    cuda_variants,
    detect_all,
    detect_gpus,
    detect_metal,
    parse_cuda_visible_devices,
)
from ollama_ready.testing import FakeGpu, FakeNvml

MiB = 1024**2
GiB = 1024**3


def detect(nvml: FakeNvml, **env: str) -> GpuReport:
    return detect_gpus(nvml, env, system="linux", machine="x86_64")


# --- presets and the fields of one GPU ------------------------------------------------------


def test_h100_preset_fields() -> None:
    report = detect(FakeNvml.h100())
    assert report.reason is None
    assert report.unsupported == ()
    assert report.driver_version == "580.159.04"
    assert report.cuda_driver_version == (13, 0)
    (gpu,) = report.devices
    assert gpu == GpuInfo(
        library="cuda",
        index=0,
        uuid="GPU-5f4c4e2a-9b1d-4c8e-a3f7-1e2d3c4b5a69",
        name="NVIDIA H100 80GB HBM3",
        total_memory=81559 * MiB,
        free_memory=(81559 - 531) * MiB,
        used_memory=531 * MiB,
        compute="9.0",
        compute_capability=(9, 0),
        pci_bus_id="00000000:19:00.0",
        variant="v12",
        driver_major=13,
        driver_minor=0,
        minimum_memory=457 * MiB,
        supported=True,
        unsupported_reason=None,
        physical_index=0,
    )
    assert gpu.runner_name == "cuda_v12"
    assert gpu.usable_memory == gpu.free_memory - CUDA_MINIMUM_MEMORY


@pytest.mark.parametrize(
    ("nvml", "name", "compute", "variant", "cuda"),
    [
        (FakeNvml.gtx_1080(), "NVIDIA GeForce GTX 1080", "6.1", "v12", (12, 4)),
        (FakeNvml.rtx_3090(), "NVIDIA GeForce RTX 3090", "8.6", "v12", (12, 4)),
    ],
    ids=["gtx1080", "rtx3090"],
)
def test_consumer_presets(
    nvml: FakeNvml, name: str, compute: str, variant: str, cuda: tuple[int, int]
) -> None:
    report = detect(nvml)
    (gpu,) = report.devices
    assert (gpu.name, gpu.compute, gpu.variant) == (name, compute, variant)
    assert report.cuda_driver_version == cuda
    assert report.driver_version == "550.54.14"


def test_rtx_3090_has_24576_mib() -> None:
    (gpu,) = detect(FakeNvml.rtx_3090()).devices
    assert gpu.total_memory == 24576 * MiB
    assert gpu.free_memory + gpu.used_memory == gpu.total_memory


def test_k80_is_listed_as_unsupported_never_dropped() -> None:
    report = detect(FakeNvml.tesla_k80())
    assert report.devices == ()
    (k80,) = report.unsupported
    assert k80.name == "Tesla K80"
    assert k80.supported is False
    assert k80.compute_capability == (3, 7)
    assert k80.variant == ""
    assert "3.7" in (k80.unsupported_reason or "")
    assert "5.0" in (k80.unsupported_reason or "")
    assert report.reason is not None
    assert "Tesla K80" in report.reason
    assert "too old" in report.reason


def test_mixed_box_keeps_usable_gpus_and_lists_the_k80() -> None:
    report = detect(FakeNvml.mixed())
    assert [gpu.name for gpu in report.devices] == [
        "NVIDIA GeForce RTX 3090",
        "NVIDIA GeForce GTX 1080",
    ]
    assert [gpu.index for gpu in report.devices] == [0, 1]
    assert [gpu.variant for gpu in report.devices] == ["v11", "v11"]  # CUDA 11.4 driver
    assert [gpu.name for gpu in report.unsupported] == ["Tesla K80"]
    assert report.unsupported[0].index == 2
    assert report.reason is None
    assert [gpu.name for gpu in report.all_devices][-1] == "Tesla K80"


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [(12040, (12, 4)), (11040, (11, 4)), (12000, (12, 0)), (13000, (13, 0)), (12080, (12, 8))],
)
def test_cuda_driver_version_is_decoded_like_cu_driver_get_version(
    encoded: int, expected: tuple[int, int]
) -> None:
    report = detect(FakeNvml([FakeGpu.rtx_3090()], cuda_driver_version=encoded))
    assert report.cuda_driver_version == expected
    assert (report.devices[0].driver_major, report.devices[0].driver_minor) == expected


def test_no_gpu_at_all() -> None:
    nvml = FakeNvml([])
    report = detect(nvml)
    assert report.devices == ()
    assert report.reason == "NVML is working but found no NVIDIA GPU"
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)


# --- NVML failures: never raise, always a reason -------------------------------------------


@pytest.mark.parametrize(
    ("nvml", "error", "words"),
    [
        (FakeNvml.library_missing(), pynvml.NVMLError_LibraryNotFound, "library"),
        (FakeNvml.driver_not_loaded(), pynvml.NVMLError_DriverNotLoaded, "driver is not loaded"),
        (FakeNvml.no_permission(), pynvml.NVMLError_NoPermission, "permission"),
    ],
    ids=["library-missing", "driver-not-loaded", "no-permission"],
)
def test_init_failures_give_a_reason(nvml: FakeNvml, error: type[Exception], words: str) -> None:
    with pytest.raises(error):  # the fake raises pynvml's own class
        FakeNvml(init_error=nvml.init_error).nvmlInit()
    report = detect(nvml)
    assert report.devices == ()
    assert report.unsupported == ()
    assert report.reason is not None
    assert words in report.reason
    assert nvml.init_calls == 1
    assert nvml.shutdown_calls == 0  # nothing to shut down after a failed init


def test_lost_single_gpu_gives_no_devices_and_a_reason() -> None:
    nvml = FakeNvml.h100()
    nvml.lose_gpu(0)
    report = detect(nvml)
    assert report.devices == ()
    (lost,) = report.unsupported
    assert lost.uuid == "0"  # no UUID can be read: Ollama falls back to the index
    assert "lost" in (lost.unsupported_reason or "")
    assert report.reason is not None
    assert "lost" in report.reason
    assert "reboot" in report.reason
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)


def test_lost_gpu_in_a_box_removes_only_that_gpu() -> None:
    nvml = FakeNvml([FakeGpu.h100(), FakeGpu.rtx_3090()])
    nvml.lose_gpu(1)
    report = detect(nvml)
    assert [gpu.name for gpu in report.devices] == ["NVIDIA H100 80GB HBM3"]
    assert [gpu.index for gpu in report.unsupported] == [1]
    assert report.reason is None


def test_gpu_lost_after_the_handle_keeps_what_was_read() -> None:
    nvml = FakeNvml([FakeGpu.h100()])
    nvml.fail("nvmlDeviceGetMemoryInfo", pynvml.NVML_ERROR_GPU_IS_LOST)
    (gpu,) = detect(nvml).unsupported
    assert gpu.uuid == FakeGpu.h100().uuid
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert "lost" in (gpu.unsupported_reason or "")


def test_gpu_without_permission_is_unsupported_with_the_reason() -> None:
    nvml = FakeNvml([FakeGpu.rtx_3090(no_permission=True), FakeGpu.gtx_1080()])
    report = detect(nvml)
    assert [gpu.name for gpu in report.devices] == ["NVIDIA GeForce GTX 1080"]
    assert "permission" in (report.unsupported[0].unsupported_reason or "")


def test_count_failure_is_a_reason() -> None:
    nvml = FakeNvml.h100()
    nvml.fail("nvmlDeviceGetCount", pynvml.NVML_ERROR_UNKNOWN)
    report = detect(nvml)
    assert report.devices == ()
    assert report.reason is not None
    assert report.reason.startswith("cannot count NVIDIA GPUs")
    assert report.driver_version == "580.159.04"
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)


def test_driver_mismatch_has_a_hint() -> None:
    nvml = FakeNvml(init_error=pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
    reason = detect(nvml).reason or ""
    assert "reboot" in reason
    assert "different versions" in reason


def test_unknown_cuda_driver_version_warns_and_assumes_old() -> None:
    nvml = FakeNvml.h100()
    nvml.fail("nvmlSystemGetCudaDriverVersion", pynvml.NVML_ERROR_NOT_SUPPORTED)
    report = detect(nvml)
    assert report.cuda_driver_version is None
    assert report.devices[0].variant == "v11"  # driver 0.0 < 12
    assert any("CUDA driver version unknown" in warning for warning in report.warnings)


def test_unknown_driver_version_string_is_a_warning() -> None:
    nvml = FakeNvml.h100()
    nvml.fail("nvmlSystemGetDriverVersion", pynvml.NVML_ERROR_UNKNOWN)
    report = detect(nvml)
    assert report.driver_version is None
    assert len(report.devices) == 1
    assert any("driver version unknown" in warning for warning in report.warnings)


def test_missing_pci_info_is_not_fatal() -> None:
    nvml = FakeNvml.h100()
    nvml.fail("nvmlDeviceGetPciInfo", pynvml.NVML_ERROR_NOT_SUPPORTED)
    (gpu,) = detect(nvml).devices
    assert gpu.pci_bus_id is None
    assert gpu.supported


def test_shutdown_failure_does_not_raise() -> None:
    nvml = FakeNvml.h100()
    nvml.fail("nvmlShutdown", pynvml.NVML_ERROR_UNKNOWN)
    assert len(detect(nvml).devices) == 1
    assert nvml.shutdown_calls == 1


def test_shutdown_happens_even_when_a_binding_breaks() -> None:
    class Broken(FakeNvml):
        def nvmlDeviceGetName(self, handle: Any) -> str:
            raise RuntimeError("binding bug")

    nvml = Broken([FakeGpu.h100()])
    with pytest.raises(RuntimeError, match="binding bug"):
        detect(nvml)
    assert (nvml.init_calls, nvml.shutdown_calls, nvml.active) == (1, 1, 0)


def test_binding_without_nvml_error_class_never_raises() -> None:
    class Minimal:
        def nvmlInit(self) -> None:
            raise OSError("cannot open libnvidia-ml.so.1")

    report = detect_gpus(Minimal(), {})  # type: ignore[arg-type]
    assert report.reason == "NVML error: cannot open libnvidia-ml.so.1"


def test_bytes_from_old_bindings_are_decoded() -> None:
    class OldBinding(FakeNvml):
        def nvmlDeviceGetName(self, handle: Any) -> Any:
            return super().nvmlDeviceGetName(handle).encode()

        def nvmlSystemGetDriverVersion(self) -> Any:
            return super().nvmlSystemGetDriverVersion().encode()

    report = detect(OldBinding([FakeGpu.rtx_3090()]))
    assert report.devices[0].name == "NVIDIA GeForce RTX 3090"
    assert report.driver_version == "580.159.04"


def test_missing_pynvml_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    report = detect_gpus(None, {})
    assert report.devices == ()
    assert "nvidia-ml-py" in (report.reason or "")


def test_real_pynvml_on_this_machine_never_raises() -> None:
    report = detect_gpus(environ={})
    if report.devices:  # a host with a working NVIDIA driver
        assert all(gpu.uuid.startswith("GPU-") for gpu in report.devices)
        assert report.reason is None
    else:
        assert report.reason
        assert len(report.reason) > 20


def test_real_pynvml_without_libnvidia_ml_says_so() -> None:
    import ctypes.util

    if ctypes.util.find_library("nvidia-ml") is not None or Path("/dev/nvidiactl").exists():
        pytest.skip("this host has an NVIDIA driver")
    report = detect_gpus(environ={})
    assert report.devices == ()
    assert "NVML library" in (report.reason or "")


def test_importing_gpu_does_not_import_pynvml() -> None:
    code = "import sys, ollama_ready.gpu; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- one NVML session per call, thread safety ----------------------------------------------


def test_one_init_and_one_shutdown_per_call() -> None:
    nvml = FakeNvml.mixed()
    for calls in range(1, 4):
        detect(nvml)
        assert (nvml.init_calls, nvml.shutdown_calls, nvml.active) == (calls, calls, 0)


def test_concurrent_detections_never_overlap_nvml_sessions() -> None:
    nvml = FakeNvml.mixed()
    nvml.call_delay = 0.001
    threads = 6
    barrier = threading.Barrier(threads)
    reports: list[GpuReport] = []

    def worker() -> None:
        barrier.wait()
        reports.append(detect(nvml))

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert nvml.max_active == 1
    assert (nvml.init_calls, nvml.shutdown_calls) == (threads, threads)
    assert len(reports) == threads
    assert len(set(reports)) == 1


def test_fake_nvml_requires_init_like_nvml() -> None:
    nvml = FakeNvml.h100()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlShutdown()
    nvml.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetHandleByIndex(5)
    handle = nvml.nvmlDeviceGetHandleByUUID(FakeGpu.h100().uuid)
    assert nvml.nvmlDeviceGetIndex(handle) == 0
    with pytest.raises(pynvml.NVMLError_NotFound):
        nvml.nvmlDeviceGetHandleByUUID("GPU-nope")
    assert nvml.nvmlDeviceGetPciInfo(handle).bus == 0x19
    nvml.nvmlShutdown()


def test_fake_nvml_validates_its_input() -> None:
    with pytest.raises(ValueError, match="unique UUIDs"):
        FakeNvml([FakeGpu.h100(), FakeGpu.h100()])
    with pytest.raises(ValueError, match="no NVML function"):
        FakeNvml.h100().fail("nvmlDeviceGetWhatever", pynvml.NVML_ERROR_UNKNOWN)


# --- CUDA_VISIBLE_DEVICES -------------------------------------------------------------------

UUIDS = (
    "GPU-aa11c0de-0000-4000-8000-000000000000",
    "GPU-aa22c0de-0000-4000-8000-000000000001",
    "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",
    "GPU-12ab34cd-0000-4000-8000-000000000003",
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (0, 1, 2, 3)),
        ("", ()),
        ("   ", ()),
        ("2,1", (2, 1)),
        ("0,2,-1,1", (0, 2)),
        ("-1", ()),
        ("-1,0", ()),
        ("7", ()),
        ("1,7,0", (1,)),
        (UUIDS[2], (2,)),
        (UUIDS[2].upper(), (2,)),
        ("GPU-8932f937", (2,)),
        ("8932f937", (2,)),
        ("gpu-8932F937", (2,)),
        ("GPU-aa", ()),
        ("3,GPU-aa", (3,)),
        ("GPU-aa22", (1,)),
        ("0,0", ()),
        (f"{UUIDS[1]},1", ()),
        (" 1 , 0 ", (1, 0)),
        ("+1", (1,)),
        ("1gpu2", (1,)),
        ("0,,1", (0,)),
        ("MIG-4f1a2b3c-0000-5000-9000-000000000000", ()),
        ("GPU-nomatch,0", ()),
        (f"3,{UUIDS[0]}", (3, 0)),
        ("12", ()),
        ("12ab", (3,)),
        ("1abc", (1,)),
        ("abc", ()),
    ],
)
def test_cuda_visible_devices_table(value: str | None, expected: tuple[int, ...]) -> None:
    result = parse_cuda_visible_devices(value, UUIDS)
    assert result.indices == expected
    assert result.restricted is (value is not None)
    assert bool(result.notes) is (value is not None and len(expected) < len(value.split(",")))


def test_cuda_visible_devices_notes_explain_the_stop() -> None:
    (note,) = parse_cuda_visible_devices("0,GPU-aa,1", UUIDS).notes
    assert "entry 2" in note
    assert "ambiguous" in note
    assert "every entry after it" in note
    (note,) = parse_cuda_visible_devices("1,1", UUIDS).notes
    assert "twice" in note


def test_unknown_uuid_can_still_be_named_by_index() -> None:
    result = parse_cuda_visible_devices("1,0", [UUIDS[0], None])
    assert result.indices == (1, 0)


def _four_gpus() -> FakeNvml:
    models = [FakeGpu.rtx_3090, FakeGpu.rtx_3090, FakeGpu.gtx_1080, FakeGpu.h100]
    gpus = [
        model(uuid=uuid, pci_bus_id=f"00000000:0{i + 1}:00.0")
        for i, (model, uuid) in enumerate(zip(models, UUIDS, strict=True))
    ]
    return FakeNvml(gpus, cuda_driver_version=12040)


def test_visible_order_defines_the_new_indices() -> None:
    report = detect(_four_gpus(), CUDA_VISIBLE_DEVICES="2,GPU-12ab")
    assert [(gpu.index, gpu.physical_index) for gpu in report.devices] == [(0, 2), (1, 3)]
    assert [gpu.uuid for gpu in report.devices] == [UUIDS[2], UUIDS[3]]
    (hidden,) = [w for w in report.warnings if "hides" in w]
    assert "0 (NVIDIA GeForce RTX 3090" in hidden
    assert "1 (NVIDIA GeForce RTX 3090" in hidden


@pytest.mark.parametrize("value", ["-1", "", "5", "0,0"])
def test_visible_devices_hiding_everything_is_the_reason(value: str) -> None:
    nvml = _four_gpus()
    report = detect(nvml, CUDA_VISIBLE_DEVICES=value)
    assert report.devices == ()
    assert report.unsupported == ()
    assert report.reason is not None
    assert report.reason.startswith(f"CUDA_VISIBLE_DEVICES={value!r} hides all 4 NVIDIA GPUs")
    assert (nvml.init_calls, nvml.shutdown_calls) == (1, 1)


def test_hidden_unsupported_gpu_is_not_reported_as_unsupported() -> None:
    report = detect(FakeNvml.mixed(), CUDA_VISIBLE_DEVICES="0")
    assert report.unsupported == ()
    assert any("Tesla K80" in warning for warning in report.warnings)


@pytest.mark.parametrize(
    ("value", "order", "warned"),
    [
        ("1,0", None, True),
        ("1,0", "PCI_BUS_ID", False),
        ("1,0", "FASTEST_FIRST", True),
        (f"{UUIDS[2]},{UUIDS[3]}", None, False),
    ],
)
def test_index_entries_on_mixed_models_warn_about_cuda_device_order(
    value: str, order: str | None, warned: bool
) -> None:
    env = {"CUDA_VISIBLE_DEVICES": value}
    if order is not None:
        env["CUDA_DEVICE_ORDER"] = order
    report = detect_gpus(_four_gpus(), env, system="linux", machine="x86_64")
    assert any("CUDA_DEVICE_ORDER" in warning for warning in report.warnings) is warned


def test_index_entries_on_identical_gpus_do_not_warn() -> None:
    nvml = FakeNvml([FakeGpu.h100(uuid=UUIDS[0]), FakeGpu.h100(uuid=UUIDS[1])])
    report = detect(nvml, CUDA_VISIBLE_DEVICES="1")
    assert not any("CUDA_DEVICE_ORDER" in warning for warning in report.warnings)


def test_environ_none_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert detect_gpus(FakeNvml.h100()).devices == ()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert len(detect_gpus(FakeNvml.h100()).devices) == 1


# --- CUDA variant rules by era --------------------------------------------------------------


@pytest.mark.parametrize(
    ("era", "cc", "driver", "variant"),
    [
        ("0.3.7", (5, 2), (12, 4), "v11"),
        ("0.3.7", (6, 1), (11, 8), "v11"),
        ("0.3.7", (6, 1), (12, 0), "v12"),
        ("0.3.7", (8, 6), (12, 4), "v12"),
        ("0.4", (5, 2), (12, 4), "v11"),
        ("0.4", (6, 1), (11, 8), "v11"),
        ("0.4", (6, 1), (12, 0), "v11"),
        ("0.4", (6, 1), (12, 1), "v12"),
        ("0.4", (9, 0), (13, 0), "v12"),
        ("0.5.13", (5, 2), (12, 4), "v12"),
        ("0.5.13", (8, 6), (11, 8), "v11"),
        ("0.5.13", (8, 6), (12, 0), "v11"),
        ("0.5.13", (8, 6), (12, 1), "v12"),
        ("0.11.11", (8, 6), (12, 4), "v12"),
        ("0.11.11", (6, 1), (12, 4), "v12"),
        ("0.11.11", (7, 5), (13, 0), "v13"),
        ("0.11.11", (5, 0), (13, 0), "v13"),
        ("0.12", (9, 0), (13, 0), "v13"),
        ("0.12", (7, 5), (13, 0), "v13"),
        ("0.12", (7, 0), (13, 0), "v12"),
        ("0.12", (9, 0), (12, 8), "v12"),
    ],
)
def test_variant_rules(
    era: str, cc: tuple[int, int], driver: tuple[int, int], variant: str
) -> None:
    choice = cuda_variants([cc], driver, era=era)
    assert choice.variants == (variant,)
    assert len(choice.reasons) == 1
    assert CudaEra(era).versions in choice.reasons[0]


@pytest.mark.parametrize(
    ("era", "cc", "driver", "warning"),
    [
        ("0.5.13", (8, 6), (11, 8), "no cuda_v11"),
        ("0.11.11", (8, 6), (12, 4), "cuda_v13"),
        ("0.11.11", (6, 1), (12, 4), None),
        ("0.12", (9, 0), (12, 4), "cuda_v13"),
        ("0.4", (6, 1), (11, 8), None),
    ],
)
def test_variant_warnings(
    era: str, cc: tuple[int, int], driver: tuple[int, int], warning: str | None
) -> None:
    warnings = cuda_variants([cc], driver, era=era).warnings
    if warning is None:
        assert warnings == ()
    else:
        (text,) = warnings
        assert warning in text


def test_v012_rule_is_the_lowest_common_denominator() -> None:
    nvml = FakeNvml([FakeGpu.h100(), FakeGpu.gtx_1080()], cuda_driver_version=13000)
    report = detect_gpus(nvml, {}, era="0.12", system="linux", machine="x86_64")
    assert [gpu.variant for gpu in report.devices] == ["v12", "v12"]
    assert "GPU 1 CC 6.1 below 7.5" in report.notes[0]
    alone = detect_gpus(FakeNvml.h100(), {}, era=CudaEra.V0_12, system="linux", machine="x86_64")
    assert alone.devices[0].variant == "v13"


def test_v012_rule_ignores_unsupported_and_hidden_gpus() -> None:
    nvml = FakeNvml([FakeGpu.h100(), FakeGpu.tesla_k80()], cuda_driver_version=13000)
    report = detect_gpus(nvml, {}, era="0.12", system="linux", machine="x86_64")
    assert report.devices[0].variant == "v13"
    nvml = FakeNvml([FakeGpu.gtx_1080(), FakeGpu.h100()], cuda_driver_version=13000)
    report = detect_gpus(
        nvml, {"CUDA_VISIBLE_DEVICES": "1"}, era="0.12", system="linux", machine="x86_64"
    )
    assert report.devices[0].variant == "v13"


def test_per_gpu_eras_mix_variants_on_one_box() -> None:
    nvml = FakeNvml([FakeGpu.rtx_3090(), FakeGpu.h100(compute_capability=(5, 2))])
    nvml.cuda_driver_version = 12040
    report = detect(nvml)
    assert [gpu.variant for gpu in report.devices] == ["v12", "v11"]


def test_variants_of_no_gpus() -> None:
    for era in CudaEra:
        assert cuda_variants([], (12, 4), era=era).variants == ()


def test_unknown_era_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        detect_gpus(FakeNvml.h100(), {}, era="0.6")
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    for era in CudaEra:
        assert repr(era.value) in message


@pytest.mark.parametrize(
    ("version", "era"),
    [
        ("0.3.7", CudaEra.V0_3_7),
        ("0.3.9", CudaEra.V0_3_7),
        ("0.3.10", CudaEra.V0_4),
        ("v0.4.0", CudaEra.V0_4),
        ("0.5.7", CudaEra.V0_4),
        ("0.5.12", CudaEra.V0_4),
        ("0.5.13", CudaEra.V0_5_13),
        ("0.9.3", CudaEra.V0_5_13),
        ("0.11.10", CudaEra.V0_5_13),
        ("0.11.11", CudaEra.V0_11_11),
        ("0.12.0-rc1", CudaEra.V0_12),
        ("0.12.3", CudaEra.V0_12),
    ],
)
def test_era_for_ollama_version(version: str, era: CudaEra) -> None:
    assert CudaEra.for_version(version) is era


@pytest.mark.parametrize("version", ["0.3.6", "0.12.4", "0.12.11", "banana"])
def test_versions_without_a_variant_rule(version: str) -> None:
    with pytest.raises(ConfigError):
        CudaEra.for_version(version)


def test_era_is_a_string_enum() -> None:
    assert CudaEra("0.4") is CudaEra.V0_4
    assert str(CudaEra.V0_11_11) == "0.11.11"
    assert CudaEra.parse(CudaEra.V0_12) is CudaEra.V0_12


# --- Jetson ---------------------------------------------------------------------------------


def jetson(env: dict[str, str], tegra: str, machine: str = "aarch64") -> GpuReport:
    nvml = FakeNvml([FakeGpu.h100(name="Orin", compute_capability=(8, 7))])
    return detect_gpus(nvml, env, system="linux", machine=machine, tegra_release=tegra)


@pytest.mark.parametrize(
    ("env", "tegra", "variant"),
    [
        ({"JETSON_JETPACK": "5.1.2"}, "", "jetpack5"),
        ({"JETSON_JETPACK": "6"}, "# R35 (release), REVISION: 4.1", "jetpack6"),
        ({}, "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref", "jetpack5"),
        ({}, "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic", "jetpack6"),
    ],
)
def test_jetson_variants(env: dict[str, str], tegra: str, variant: str) -> None:
    report = jetson(env, tegra)
    assert report.devices[0].variant == variant
    assert "Jetson" in report.notes[0]


def test_unsupported_l4t_falls_back_to_the_rule_with_a_warning() -> None:
    report = jetson({}, "# R32 (release), REVISION: 7.1")
    assert report.devices[0].variant == "v12"
    assert any("unsupported L4T" in warning for warning in report.warnings)


def test_bad_jetson_jetpack_is_ignored_with_a_warning() -> None:
    report = jetson({"JETSON_JETPACK": "orin"}, "")
    assert report.devices[0].variant == "v12"
    assert any("JETSON_JETPACK" in warning for warning in report.warnings)


def test_jetson_rule_applies_only_to_linux_arm64() -> None:
    report = jetson({"JETSON_JETPACK": "6.0"}, "# R36 (release)", machine="x86_64")
    assert report.devices[0].variant == "v12"


# --- values ---------------------------------------------------------------------------------


def test_report_serialises_to_json() -> None:
    report = detect(FakeNvml.mixed(), CUDA_VISIBLE_DEVICES="0,2")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["library"] == "cuda"
    assert data["cuda_driver_version"] == [11, 4]
    assert data["devices"][0]["gpu_id"] == FakeGpu.rtx_3090().uuid
    assert data["devices"][0]["compute_capability"] == [8, 6]
    assert data["unsupported"][0]["unsupported_reason"].startswith("CUDA GPU is too old")
    assert data["warnings"]


def test_summaries() -> None:
    report = detect(FakeNvml.mixed())
    assert report.summary().startswith("2 GPUs: NVIDIA GeForce RTX 3090 (")
    assert detect(FakeNvml.library_missing()).summary().startswith("no usable GPU: the NVML")
    line = report.unsupported[0].describe()
    assert line.startswith("cuda GPU 2: Tesla K80 (GPU-1b2c3d4e")
    assert line.endswith("is below the minimum 5.0")
    assert "runner cuda_v11" in report.devices[0].describe()
    assert report.total_free_memory == sum(gpu.free_memory for gpu in report.devices)


def test_values_are_frozen() -> None:
    (gpu,) = detect(FakeNvml.h100()).devices
    with pytest.raises(AttributeError):
        gpu.variant = "v11"  # type: ignore[misc]


# --- Metal and the merged report ------------------------------------------------------------


def test_metal_on_apple_silicon() -> None:
    report = detect_metal(
        system="darwin", machine="arm64", recommended_max_working_set_size=21 * GiB
    )
    (gpu,) = report.devices
    assert (gpu.library, gpu.uuid, gpu.index) == ("metal", "0", 0)
    assert gpu.total_memory == gpu.free_memory == 21 * GiB
    assert gpu.minimum_memory == METAL_MINIMUM_MEMORY == 512 * MiB
    assert gpu.runner_name == "metal"
    assert report.notes == ()


def test_metal_without_working_set_uses_system_memory_and_says_so() -> None:
    report = detect_metal(system="darwin", machine="arm64", system_memory=32 * GiB)
    assert report.devices[0].total_memory == 32 * GiB
    assert "upper bound" in report.notes[0]


@pytest.mark.parametrize(
    ("system", "machine", "words"),
    [("darwin", "x86_64", "Intel Macs"), ("linux", "aarch64", "only available on macOS")],
)
def test_no_metal_elsewhere(system: str, machine: str, words: str) -> None:
    report = detect_metal(system=system, machine=machine, system_memory=GiB)
    assert report.devices == ()
    assert words in (report.reason or "")


def test_detect_all_on_linux_merges_cuda_and_rocm(tmp_path: Path) -> None:
    nvml = FakeNvml.h100()
    report = detect_all(nvml, {}, system="linux", machine="x86_64", sysfs_root=tmp_path)
    assert report.library == "all"
    assert [backend.library for backend in report.backends] == ["cuda", "rocm"]
    assert [gpu.name for gpu in report.devices] == ["NVIDIA H100 80GB HBM3"]
    assert report.driver_version == "580.159.04"
    assert report.cuda_driver_version == (13, 0)
    assert report.reason is None


def test_detect_all_without_gpus_names_every_backend(tmp_path: Path) -> None:
    report = detect_all(
        FakeNvml.driver_not_loaded(), {}, system="linux", machine="x86_64", sysfs_root=tmp_path
    )
    assert report.devices == ()
    assert report.reason is not None
    assert report.reason.startswith("cuda: the NVIDIA kernel driver is not loaded")
    assert "; rocm: the amdgpu kernel module is not loaded" in report.reason


def test_detect_all_on_a_mac_only_asks_metal() -> None:
    nvml = FakeNvml.h100()
    report = detect_all(nvml, {}, system="darwin", machine="arm64", system_memory=16 * GiB)
    assert [backend.library for backend in report.backends] == ["metal"]
    assert report.devices[0].library == "metal"
    assert nvml.init_calls == 0


def test_detect_all_on_windows_asks_only_nvml(tmp_path: Path) -> None:
    report = detect_all(FakeNvml.h100(), {}, system="win32", machine="AMD64")
    assert [backend.library for backend in report.backends] == ["cuda"]


@pytest.mark.parametrize(("era", "warned"), [("0.4", True), ("0.3.7", True), ("0.12", False)])
def test_detect_all_warns_when_the_cpu_lacks_avx(tmp_path: Path, era: str, warned: bool) -> None:
    report = detect_all(
        FakeNvml.h100(),
        {},
        era=era,
        system="linux",
        machine="x86_64",
        sysfs_root=tmp_path,
        cpuinfo="flags\t\t: fpu sse sse2 ssse3",
    )
    assert any("no AVX" in warning for warning in report.warnings) is warned
    with_avx = detect_all(
        FakeNvml.h100(),
        {},
        era=era,
        system="linux",
        machine="x86_64",
        sysfs_root=tmp_path,
        cpuinfo="flags\t\t: fpu avx",
    )
    assert not any("no AVX" in warning for warning in with_avx.warnings)
