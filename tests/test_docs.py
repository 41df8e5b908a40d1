"""Generated documentation stays true to the code."""

from __future__ import annotations

from layer_tables import DOC, render


def test_model_layer_tables_are_current() -> None:
    document = DOC.read_text()
    assert render(document) == document, "run `python scripts/layer_tables.py` to refresh docs/models.md"


def test_cli_reference_is_current() -> None:
    from cli_docs import DOC as CLI_DOC
    from cli_docs import render as render_cli

    assert CLI_DOC.read_text() == render_cli(), "run `python scripts/cli_docs.py` to refresh docs/cli.md"


def test_no_help_panel_holds_more_than_twelve_options() -> None:
    from collections import Counter

    from cli_docs import visible_commands, visible_params

    for name, command in visible_commands().items():
        panels = Counter(getattr(param, "rich_help_panel", None) for param in visible_params(command))
        crowded = {panel: count for panel, count in panels.items() if count > 12}
        assert not crowded, f"`bitplan {name} --help` has crowded panels {crowded}"
