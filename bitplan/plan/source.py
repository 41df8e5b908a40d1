"""Where a plan's profile comes from: a model spec, traced now, or a profile saved as JSON."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from bitplan.errors import PlanError
from bitplan.plan.io import format_validation_error
from bitplan.profile.schema import ModelProfile
from bitplan.spec import profile_spec


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
    return profile_spec(model, input_shape=input_shape, batch=batch)
