"""Every file format bitplan reads or writes, by name, so docs/schemas/ can be regenerated and checked.

Run ``python -m bitplan.schemas`` to rewrite docs/schemas/*.json; a test fails when they drift.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

# name -> "module:ClassName"; imported lazily so this module stays cheap.
SCHEMAS: dict[str, str] = {
    "profile": "bitplan.profile.schema:ModelProfile",
    "sensitivity": "bitplan.sensitivity_analysis.schema:SensitivityReport",
    "zoo_info": "bitplan.zoo.registry:ZooInfo",
    "plan": "bitplan.plan.schema:BitPlan", "plan_grid": "bitplan.plan.grid:GridResult", "plan_check": "bitplan.plan.check:CheckReport",
    "plan_diff": "bitplan.plan.diff:PlanDiff",
    "study": "bitplan.study.result:StudyResult",
    "train_config": "bitplan.train.records:RunConfigFile", "train_metrics_line": "bitplan.train.records:MetricsLine", "train_final": "bitplan.train.records:RunResult", "train_summary": "bitplan.train.records:SeedsSummary", "export_report": "bitplan.export.run:ExportReport", "packed_header": "bitplan.export.packed:PackedHeader",
    "compare_result": "bitplan.compare.result:GridResult",
    "eval": "bitplan.train.evaluate:EvalResult",
    "pareto": "bitplan.pareto.result:ParetoResult",
}


def schema_of(name: str) -> dict:
    """The JSON Schema of the pydantic model registered under ``name``."""
    module_name, class_name = SCHEMAS[name].split(":")
    model = getattr(importlib.import_module(module_name), class_name)
    return model.model_json_schema()


def write_all(directory: Path) -> list[Path]:
    """Write one ``<name>.schema.json`` per registered model into ``directory``."""
    from bitplan.atomic import atomic_write_text

    written = []
    for name in sorted(SCHEMAS):
        path = directory / f"{name}.schema.json"
        atomic_write_text(path, json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(__file__).resolve().parent.parent / "docs" / "schemas"):
        print(path)
