"""``CUDA_VISIBLE_DEVICES`` resolved the way the CUDA driver resolves it.

The value is a comma-separated sequence of GPU identifiers. The listed GPUs are the only ones a
CUDA program sees, renumbered ``0, 1, ...`` in the order of the list. Each entry is read after
stripping whitespace:

==========================================  ==================================================
``CUDA_VISIBLE_DEVICES``                    visible GPUs (NVML indices, in CUDA order)
==========================================  ==================================================
unset                                       all of them, in NVML order
``""`` (set but empty, or only blanks)      none
``"2,1"``                                   2 then 1: GPU 2 becomes CUDA device 0
``"0,2,-1,1"``                              0, 2: an invalid entry hides itself and the rest
``"-1"`` (or any invalid first entry)       none
``"7"`` on a 2-GPU box                      none: index 7 does not exist
``"GPU-8932f937-d72c-4106-c12f-…"``         the GPU with that UUID
``"GPU-8932f937"``                          the one GPU whose UUID starts so (unique prefix)
``"8932f937"``                              the same: a hex prefix without ``GPU-`` is a UUID prefix
``"GPU-8"`` matching two GPUs               invalid (ambiguous), so it and the rest are hidden
``"0,0"`` or ``"GPU-a…,0"`` naming one GPU  none: CUDA rejects a repeated device
``"1gpu2"``                                 1: like CUDA's ``strtoul``, leading digits are read
``"0,,1"``                                  0: the empty entry is invalid
``"MIG-…"``                                 not resolved here (MIG instances are not enumerated)
==========================================  ==================================================

An entry made only of decimal digits is always an index, even if some UUID starts with those
digits. A hex-looking entry without ``GPU-`` is tried as a UUID prefix first, then read as an
index by its leading digits. UUIDs compare case-insensitively.

Indices are NVML indices, which follow PCI bus order. CUDA numbers GPUs fastest-first unless
``CUDA_DEVICE_ORDER=PCI_BUS_ID``; on a box with different GPU models, index entries can therefore
mean different GPUs to CUDA. :func:`ollama_ready.gpu.detect_gpus` warns about that case; UUIDs are
always unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CudaVisibleDevices", "parse_cuda_visible_devices"]

_DECIMAL = re.compile(r"\+?[0-9]+")
_HEX_PREFIX = re.compile(r"[0-9a-f][0-9a-f-]*")


@dataclass(frozen=True, slots=True)
class CudaVisibleDevices:
    """Hold which GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible, and why others are not.

    Attributes:
        value: The variable's value, or ``None`` when it is unset.
        indices: NVML indices of the visible GPUs, in CUDA's order (position = CUDA index).
        notes: Human sentences about entries that hid devices (invalid, ambiguous, repeated).
    """

    value: str | None
    indices: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def restricted(self) -> bool:
        """Return whether the variable is set (and so may hide GPUs)."""
        return self.value is not None


class _Rejected(Exception):
    """An entry that CUDA would treat as invalid; the message says why."""


def parse_cuda_visible_devices(
    value: str | None, uuids: Sequence[str | None]
) -> CudaVisibleDevices:
    """Resolve ``CUDA_VISIBLE_DEVICES`` against the GPUs NVML enumerates.

    Args:
        value: The variable's value; ``None`` means unset (every GPU is visible).
        uuids: Each GPU's UUID in NVML index order; ``None`` for a GPU whose UUID is unknown
            (it can still be named by index).
    """
    count = len(uuids)
    if value is None:
        return CudaVisibleDevices(None, tuple(range(count)))
    if not value.strip():
        note = "CUDA_VISIBLE_DEVICES is set but empty, so CUDA shows no GPU"
        return CudaVisibleDevices(value, (), (note,))
    lowered = [uuid.lower() if uuid else None for uuid in uuids]
    indices: list[int] = []
    for position, entry in enumerate(value.split(",")):
        try:
            index = _resolve_entry(entry.strip(), lowered)
        except _Rejected as exc:
            hidden = "it and every entry after it are ignored"
            note = f"CUDA_VISIBLE_DEVICES entry {position + 1} ({entry.strip()!r}) {exc}: {hidden}"
            return CudaVisibleDevices(value, tuple(indices), (note,))
        if index in indices:
            note = (
                f"CUDA_VISIBLE_DEVICES names GPU {index} twice; CUDA rejects a repeated "
                "device and shows no GPU"
            )
            return CudaVisibleDevices(value, (), (note,))
        indices.append(index)
    return CudaVisibleDevices(value, tuple(indices))


def _resolve_entry(token: str, uuids: Sequence[str | None]) -> int:
    if not token:
        raise _Rejected("is empty")
    lowered = token.lower()
    if lowered.startswith("mig-"):
        raise _Rejected("names a MIG instance, which ollama_ready does not enumerate")
    if _DECIMAL.fullmatch(token):
        return _checked_index(int(token), len(uuids))
    if lowered.startswith("gpu-"):
        return _match_uuid_prefix(lowered, uuids)
    if _HEX_PREFIX.fullmatch(lowered):
        try:
            return _match_uuid_prefix(f"gpu-{lowered}", uuids)
        except _Rejected:
            if not _DECIMAL.match(token):
                raise
    leading = _DECIMAL.match(token)
    if leading is None:
        raise _Rejected("is neither a GPU index nor a GPU UUID")
    return _checked_index(int(leading.group()), len(uuids))


def _checked_index(index: int, count: int) -> int:
    if index >= count:
        plural = "GPU" if count == 1 else "GPUs"
        raise _Rejected(f"is index {index}, but there are only {count} {plural}")
    return index


def _match_uuid_prefix(prefix: str, uuids: Sequence[str | None]) -> int:
    matches = [index for index, uuid in enumerate(uuids) if uuid and uuid.startswith(prefix)]
    if not matches:
        raise _Rejected("matches no GPU UUID")
    if len(matches) > 1:
        raise _Rejected(f"is ambiguous: it prefixes the UUIDs of GPUs {matches}")
    return matches[0]
