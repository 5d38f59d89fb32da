"""AMD GPU detection from sysfs fixture trees laid out like a real ``/sys``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ollama_ready.gpu import ROCM_MINIMUM_MEMORY, detect_rocm, rocm_supported_gfx

GiB = 1024**3
MiB = 1024**2
AMD = 0x1002


@dataclass(frozen=True)
class Node:
    gfx_target_version: int
    device_id: int = 0
    unique_id: int = 0
    vendor_id: int = AMD


@dataclass(frozen=True)
class Card:
    device_id: int
    total: int
    used: int = 0
    unique_id: int = 0
    vendor_id: int = AMD
    pci: str | None = None


CPU = Node(gfx_target_version=0, vendor_id=0)
RX7900XTX = Node(110000, device_id=0x744C, unique_id=0x3E0C7E1C3E0A9B11)
MI210 = Node(90010, device_id=0x740F, unique_id=0x1F2E3D4C5B6A7988)


def build_sysfs(
    root: Path,
    nodes: list[Node],
    cards: list[Card],
    *,
    driver: str | None = "6.7.0",
    node_names: list[str] | None = None,
) -> Path:
    """Write module/amdgpu, kfd topology nodes and drm cards under ``root``."""
    module = root / "module" / "amdgpu"
    module.mkdir(parents=True)
    if driver is not None:
        (module / "version").write_text(f"{driver}\n")
    topology = root / "class" / "kfd" / "kfd" / "topology" / "nodes"
    for position, node in enumerate(nodes):
        name = node_names[position] if node_names else str(position)
        (topology / name).mkdir(parents=True)
        (topology / name / "properties").write_text(
            "cpu_cores_count 0\n"
            f"gfx_target_version {node.gfx_target_version}\n"
            f"vendor_id {node.vendor_id}\n"
            f"device_id {node.device_id}\n"
            f"unique_id {node.unique_id}\n"
            "location_id 768\n"
        )
    drm = root / "class" / "drm"
    drm.mkdir(parents=True)
    (drm / "version").write_text("1.1.0 20060810\n")
    for index, card in enumerate(cards):
        target = root / "devices" / "pci0000:00" / (card.pci or f"device{index}")
        target.mkdir(parents=True)
        (target / "vendor").write_text(f"0x{card.vendor_id:04x}\n")
        (target / "device").write_text(f"0x{card.device_id:04x}\n")
        (target / "unique_id").write_text(f"{card.unique_id:x}\n")
        (target / "mem_info_vram_total").write_text(f"{card.total}\n")
        (target / "mem_info_vram_used").write_text(f"{card.used}\n")
        (drm / f"card{index}").mkdir()
        (drm / f"card{index}" / "device").symlink_to(target)
        connector = drm / f"card{index}-DP-1"
        connector.mkdir()
        (connector / "device").symlink_to(drm / f"card{index}")
    return root


@pytest.fixture
def kfd(tmp_path: Path) -> Path:
    device = tmp_path / "dev-kfd"
    device.write_bytes(b"")
    return device


def card_for(node: Node, total: int, used: int = 0, pci: str | None = None) -> Card:
    return Card(node.device_id, total, used, unique_id=node.unique_id, pci=pci)


def test_workstation_with_two_gpus(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(
        tmp_path / "sys",
        [CPU, RX7900XTX, MI210],
        [
            card_for(MI210, 64 * GiB, 2 * GiB, pci="0000:83:00.0"),
            card_for(RX7900XTX, 24 * GiB, 512 * MiB, pci="0000:03:00.0"),
        ],
    )
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert report.reason is None
    assert report.driver_version == "6.7.0"
    first, second = report.devices
    assert (first.index, first.physical_index, second.index) == (0, 1, 1)
    assert first.library == "rocm"
    assert first.compute == "gfx1100"
    assert first.name == "1002:744c"
    assert first.uuid == "GPU-3e0c7e1c3e0a9b11"
    assert (first.total_memory, first.used_memory) == (24 * GiB, 512 * MiB)
    assert first.free_memory == 24 * GiB - 512 * MiB
    assert first.pci_bus_id == "0000:03:00.0"
    assert (first.driver_major, first.driver_minor) == (6, 7)
    assert first.minimum_memory == ROCM_MINIMUM_MEMORY == 457 * MiB
    assert first.variant == ""
    assert first.runner_name == "rocm"
    assert first.compute_capability is None
    assert second.compute == "gfx90a"
    assert second.free_memory == 62 * GiB


@pytest.mark.parametrize(
    ("target", "compute"),
    [
        (90008, "gfx908"),
        (90010, "gfx90a"),
        (90402, "gfx942"),
        (100300, "gfx1030"),
        (110000, "gfx1100"),
        (110501, "gfx1151"),
        (120001, "gfx1201"),
    ],
)
def test_gfx_target_version_decoding(tmp_path: Path, kfd: Path, target: int, compute: str) -> None:
    node = Node(target, device_id=0x7000, unique_id=7)
    sysfs = build_sysfs(tmp_path, [CPU, node], [card_for(node, 16 * GiB)])
    (gpu,) = detect_rocm(sysfs, {}, kfd_device=kfd).devices
    assert gpu.compute == compute


def test_nodes_are_read_in_numeric_order(tmp_path: Path, kfd: Path) -> None:
    second = Node(90010, device_id=0x740F, unique_id=2)
    first = Node(110000, device_id=0x744C, unique_id=1)
    sysfs = build_sysfs(
        tmp_path,
        [second, CPU, first],
        [card_for(first, 24 * GiB), card_for(second, 64 * GiB)],
        node_names=["10", "0", "2"],
    )
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert [gpu.compute for gpu in report.devices] == ["gfx1100", "gfx90a"]
    assert [gpu.physical_index for gpu in report.devices] == [2, 10]


def test_identical_cards_are_told_apart_by_unique_id(tmp_path: Path, kfd: Path) -> None:
    a = Node(110000, device_id=0x744C, unique_id=0xA)
    b = Node(110000, device_id=0x744C, unique_id=0xB)
    sysfs = build_sysfs(
        tmp_path, [CPU, a, b], [card_for(b, 24 * GiB, 20 * GiB), card_for(a, 24 * GiB, GiB)]
    )
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert [(gpu.uuid, gpu.free_memory) for gpu in report.devices] == [
        ("GPU-000000000000000a", 23 * GiB),
        ("GPU-000000000000000b", 4 * GiB),
    ]


def test_zero_unique_id_matches_by_vendor_and_device_and_uses_the_index(
    tmp_path: Path, kfd: Path
) -> None:
    node = Node(90008, device_id=0x738C, unique_id=0)
    sysfs = build_sysfs(tmp_path, [CPU, node], [Card(0x738C, 32 * GiB, unique_id=0x99)])
    (gpu,) = detect_rocm(sysfs, {}, kfd_device=kfd).devices
    assert gpu.uuid == "0"
    assert gpu.total_memory == 32 * GiB


def test_unmatched_node_is_unsupported(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(tmp_path, [CPU, RX7900XTX], [Card(0x1234, 8 * GiB)])
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert report.devices == ()
    assert "no DRM card matches KFD node 1" in (report.unsupported[0].unsupported_reason or "")


def test_integrated_gpu_is_listed_as_unsupported(tmp_path: Path, kfd: Path) -> None:
    igpu = Node(100306, device_id=0x164E, unique_id=5)
    sysfs = build_sysfs(
        tmp_path, [CPU, igpu, RX7900XTX], [card_for(igpu, 512 * MiB), card_for(RX7900XTX, 24 * GiB)]
    )
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert [gpu.compute for gpu in report.devices] == ["gfx1100"]
    (skipped,) = report.unsupported
    assert skipped.compute == "gfx1036"
    assert skipped.supported is False
    assert "integrated GPU" in (skipped.unsupported_reason or "")
    assert "512.0 MiB" in (skipped.unsupported_reason or "")


def test_pre_gfx9_gpu_is_too_old(tmp_path: Path, kfd: Path) -> None:
    polaris = Node(80003, device_id=0x67DF, unique_id=3)
    sysfs = build_sysfs(tmp_path, [CPU, polaris], [card_for(polaris, 8 * GiB)])
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert report.devices == ()
    assert report.unsupported[0].compute == "gfx803"
    assert report.reason is not None
    assert "gfx803 is too old" in report.reason


def test_supported_list_rejects_other_targets(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(
        tmp_path,
        [CPU, RX7900XTX, MI210],
        [card_for(RX7900XTX, 24 * GiB), card_for(MI210, 64 * GiB)],
    )
    report = detect_rocm(sysfs, {}, supported_gfx=["gfx90a:xnack-", "gfx942"], kfd_device=kfd)
    assert [gpu.compute for gpu in report.devices] == ["gfx90a"]
    reason = report.unsupported[0].unsupported_reason or ""
    assert "gfx1100 is not supported" in reason
    assert "gfx90a, gfx942" in reason


def test_hsa_override_skips_the_supported_list(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(tmp_path, [CPU, RX7900XTX], [card_for(RX7900XTX, 24 * GiB)])
    env = {"HSA_OVERRIDE_GFX_VERSION": "11.0.0"}
    report = detect_rocm(sysfs, env, supported_gfx=["gfx90a"], kfd_device=kfd)
    assert [gpu.compute for gpu in report.devices] == ["gfx1100"]
    assert any("HSA_OVERRIDE_GFX_VERSION=11.0.0" in warning for warning in report.warnings)


def test_hsa_override_does_not_rescue_pre_gfx9(tmp_path: Path, kfd: Path) -> None:
    polaris = Node(80003, device_id=0x67DF, unique_id=3)
    sysfs = build_sysfs(tmp_path, [CPU, polaris], [card_for(polaris, 8 * GiB)])
    report = detect_rocm(sysfs, {"HSA_OVERRIDE_GFX_VERSION": "9.0.0"}, kfd_device=kfd)
    assert report.devices == ()


def _three_gpus(root: Path) -> Path:
    nodes = [CPU] + [Node(110000, device_id=0x744C, unique_id=i) for i in (0xA, 0xB, 0xC)]
    return build_sysfs(root, nodes, [card_for(node, 24 * GiB) for node in nodes[1:]])


@pytest.mark.parametrize(
    ("env", "visible"),
    [
        ({}, [0, 1, 2]),
        ({"ROCR_VISIBLE_DEVICES": "2,0"}, [0, 2]),
        ({"ROCR_VISIBLE_DEVICES": "GPU-000000000000000b"}, [1]),
        ({"ROCR_VISIBLE_DEVICES": "gpu-000000000000000B, 2"}, [1, 2]),
        ({"HIP_VISIBLE_DEVICES": "1"}, [1]),
        ({"GPU_DEVICE_ORDINAL": "0"}, [0]),
        ({"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "2"}, [1]),
        ({"HIP_VISIBLE_DEVICES": "2", "GPU_DEVICE_ORDINAL": "0"}, [2]),
        ({"ROCR_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "0"}, [0]),
    ],
)
def test_visible_device_variables(
    tmp_path: Path, kfd: Path, env: dict[str, str], visible: list[int]
) -> None:
    report = detect_rocm(_three_gpus(tmp_path), env, kfd_device=kfd)
    assert [gpu.index for gpu in report.devices] == visible
    assert report.unsupported == ()
    hidden = [warning for warning in report.warnings if "hides AMD GPU" in warning]
    assert len(hidden) == (1 if len(visible) < 3 else 0)


def test_visible_devices_hiding_everything_is_the_reason(tmp_path: Path, kfd: Path) -> None:
    report = detect_rocm(_three_gpus(tmp_path), {"ROCR_VISIBLE_DEVICES": "7"}, kfd_device=kfd)
    assert report.devices == ()
    assert report.reason == "ROCR_VISIBLE_DEVICES='7' hides every AMD GPU"


def test_missing_kfd_device_makes_gpus_unusable(tmp_path: Path) -> None:
    sysfs = build_sysfs(tmp_path, [CPU, RX7900XTX], [card_for(RX7900XTX, 24 * GiB)])
    report = detect_rocm(sysfs, {}, kfd_device=tmp_path / "no-kfd")
    assert report.devices == ()
    (gpu,) = report.unsupported
    assert "kfd driver not loaded" in (gpu.unsupported_reason or "")
    assert "--device /dev/kfd --device /dev/dri" in (report.reason or "")


def test_no_amdgpu_module(tmp_path: Path) -> None:
    report = detect_rocm(tmp_path, {})
    assert report.library == "rocm"
    assert report.devices == ()
    assert report.reason == "the amdgpu kernel module is not loaded"


def test_amdgpu_without_kfd_topology(tmp_path: Path) -> None:
    (tmp_path / "module" / "amdgpu").mkdir(parents=True)
    report = detect_rocm(tmp_path, {})
    assert "no KFD topology" in (report.reason or "")


def test_only_cpu_nodes(tmp_path: Path, kfd: Path) -> None:
    report = detect_rocm(build_sysfs(tmp_path, [CPU], []), {}, kfd_device=kfd)
    assert report.devices == ()
    assert report.reason == "amdgpu is loaded but KFD lists no GPU node"


def test_in_tree_driver_without_version_warns(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(tmp_path, [CPU, MI210], [card_for(MI210, 64 * GiB)], driver=None)
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert report.driver_version is None
    assert (report.devices[0].driver_major, report.devices[0].driver_minor) == (0, 0)
    assert any("amd.com" in warning for warning in report.warnings)


def test_unreadable_vram_use_assumes_none_and_warns(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(tmp_path, [CPU, MI210], [card_for(MI210, 64 * GiB)])
    (sysfs / "devices" / "pci0000:00" / "device0" / "mem_info_vram_used").unlink()
    report = detect_rocm(sysfs, {}, kfd_device=kfd)
    assert report.devices[0].free_memory == 64 * GiB
    assert any("VRAM use unreadable" in warning for warning in report.warnings)


def test_garbage_properties_lines_are_ignored(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(tmp_path, [CPU, MI210], [card_for(MI210, 64 * GiB)])
    properties = sysfs / "class" / "kfd" / "kfd" / "topology" / "nodes" / "1" / "properties"
    properties.write_text("garbage\n" + properties.read_text() + "name not-a-number\n\n")
    assert [gpu.compute for gpu in detect_rocm(sysfs, {}, kfd_device=kfd).devices] == ["gfx90a"]


def test_report_is_json_ready(tmp_path: Path, kfd: Path) -> None:
    sysfs = build_sysfs(tmp_path, [CPU, MI210], [card_for(MI210, 64 * GiB)])
    data = detect_rocm(sysfs, {}, kfd_device=kfd).to_dict()
    assert data["devices"][0]["compute"] == "gfx90a"
    assert data["devices"][0]["gpu_id"] == "GPU-1f2e3d4c5b6a7988"


def test_supported_gfx_from_rocblas(tmp_path: Path) -> None:
    library = tmp_path / "rocm" / "rocblas" / "library"
    library.mkdir(parents=True)
    for name in ("gfx90a", "gfx1100", "gfx1030", "gfx1100"):
        (library / f"TensileLibrary_lazy_{name}.dat").write_bytes(b"")
    (library / "TensileLibrary_gfx90a.co").write_bytes(b"")
    assert rocm_supported_gfx(tmp_path / "rocm") == ("gfx1030", "gfx1100", "gfx90a")
    assert rocm_supported_gfx(tmp_path / "missing") == ()
