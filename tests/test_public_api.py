"""The public surface: ``__all__`` sorted and complete, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ollama_ready
import ollama_ready.testing


def test_all_is_sorted_and_complete() -> None:
    for module in (ollama_ready, ollama_ready.testing):
        assert module.__all__ == sorted(module.__all__)
        assert set(module.__all__) - {"__version__"} == set(module._EXPORTS)
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="does_not_exist"):
        ollama_ready.does_not_exist  # noqa: B018


def test_import_is_light() -> None:
    code = (
        "import sys, ollama_ready; "
        "heavy = [m for m in ('pynvml', 'tqdm', 'pytest', 'requests') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_doctor_is_callable_from_the_package_even_after_importing_the_module() -> None:
    code = (
        "import ollama_ready, ollama_ready.doctor as d; "
        "r = ollama_ready.doctor(host='127.0.0.1:9', timeout=0.2, nvml=object()); "
        "print(type(r).__name__, r.ok)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["DoctorReport", "False"]
