"""Planning straight from a model spec or a saved profile: what ``bitplan plan`` calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bitplan.errors import PlanError
from bitplan.plan.grid import GridResult, make_grid
from bitplan.plan.io import format_validation_error
from bitplan.plan.planner import make_plan
from bitplan.plan.schema import BitPlan
from bitplan.profile.schema import ModelProfile


def load_profile(model: str, *, input_shape: str | None = None, batch: int | None = None) -> ModelProfile:
    """Profile a model spec, or read a profile saved with ``bitplan profile MODEL --json -o file.json``.

    Raises:
        PlanError: A ``.json`` file that is not a valid profile.
        SpecError, TraceError, OnnxError: The spec cannot be profiled.
    """
    path = Path(model)
    if path.suffix == ".json" and path.is_file():
        try:
            return ModelProfile.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as error:
            details = "; ".join(format_validation_error(error))
            raise PlanError(f"`{path}` is not a valid profile: {details}. Regenerate it with `bitplan profile`.") from None
        except (KeyError, TypeError) as error:  # a layer record missing its shape fields
            raise PlanError(f"`{path}` is not a valid profile ({error!r}). Regenerate it with `bitplan profile`.") from None
    from bitplan.spec import profile_spec

    return profile_spec(model, input_shape=input_shape, batch=batch)


def plan_model(model: str, *, input_shape: str | None = None, batch: int | None = None, **options: Any) -> BitPlan:
    """Profile ``model`` (a spec or a profile JSON file) and plan it with ``make_plan(**options)``.

    Example:
        >>> plan = plan_model("zoo:resnet20", factor="A", strategy="C-", bits=(4, 8))  # doctest: +SKIP
    """
    return make_plan(load_profile(model, input_shape=input_shape, batch=batch), **options)


def grid_model(
    model: str, *, input_shape: str | None = None, batch: int | None = None, **options: Any
) -> tuple[list[BitPlan], GridResult]:
    """Profile ``model`` once and make every factor × strategy plan (``make_grid(**options)``)."""
    return make_grid(load_profile(model, input_shape=input_shape, batch=batch), **options)
