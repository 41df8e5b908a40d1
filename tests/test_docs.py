"""Generated documentation stays true to the code."""

from __future__ import annotations

from layer_tables import DOC, render


def test_model_layer_tables_are_current() -> None:
    document = DOC.read_text()
    assert render(document) == document, "run `python scripts/layer_tables.py` to refresh docs/models.md"
