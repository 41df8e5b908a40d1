"""Package-level promises: a lean import and published schemas that match the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bitplan.schemas import SCHEMAS, schema_of

DOCS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def test_import_is_lean() -> None:
    code = "import bitplan, sys; print(sorted(m for m in ('onnx', 'matplotlib', 'sklearn', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_published_schema_matches_model(name: str) -> None:
    published = json.loads((DOCS / f"{name}.schema.json").read_text())
    assert published == schema_of(name), f"run `python -m bitplan.schemas` to refresh docs/schemas/{name}.schema.json"
