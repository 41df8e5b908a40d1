"""Every benchmark script still imports against the library: a renamed or moved call breaks it here,
not when someone next runs the benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=[path.name for path in BENCHMARKS])
def test_benchmark_imports(path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(path.parent))  # benchmarks import their sibling helper modules
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)  # runs the module body only: each script's work sits behind __main__
    assert callable(getattr(module, "main", None)) or path.stem == "planning_models"
