"""The ``bitplan`` command: one sub-command per module in this package, each a thin wrapper."""

from __future__ import annotations

import importlib

import typer

from bitplan.cli.common import DebugState
from bitplan.cli.options import Debug

app = typer.Typer(
    name="bitplan",
    help="Plan per-layer bit-widths for low-precision training from the structure of a model's GEMMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines ``register(app)``; importing them is cheap because they import the library lazily.
COMMAND_MODULES = [
    "profile_cmd",
    "zoo_cmd",
    "study_cmd",
    "plan_cmd", "check_cmd",
    "train_cmd", "export_cmd",
    "sensitivity_cmd",
    "compare_cmd", "report_cmd",
    "eval_cmd", "pareto_cmd",
    "diff_cmd",
]


@app.callback()
def root(debug: Debug = False) -> None:
    """bitplan: which layer gets how many bits."""
    DebugState.enabled = debug


for module_name in COMMAND_MODULES:
    importlib.import_module(f"bitplan.cli.{module_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()
