"""Reading and writing plan files, and matching a plan to the model it is applied to."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from bitplan.atomic import atomic_write_text
from bitplan.errors import PlanError
from bitplan.plan.schema import PLAN_SCHEMA_VERSION, BitPlan
from bitplan.profile.schema import ModelProfile


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per pydantic error: the dotted field path, then the message."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{path}: {item['msg']}")
    return lines


def parse_plan(text: str, source: str = "plan") -> BitPlan:
    """Validate plan JSON text.

    Args:
        text: The JSON document.
        source: Where it came from, for messages.

    Returns:
        The validated plan.

    Raises:
        PlanError: Not JSON, an unknown ``schema_version``, or a field that fails validation (the message
            names the field path, e.g. ``layers.3.bits``).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PlanError(
            f"{source} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}). "
            "Regenerate it with `bitplan plan` or fix the syntax."
        ) from None
    if not isinstance(data, dict):
        raise PlanError(f"{source} must hold a JSON object (a plan), not {type(data).__name__}.")
    version = data.get("schema_version")
    if version != PLAN_SCHEMA_VERSION:
        raise PlanError(
            f"{source} has schema_version {version!r}, but this bitplan reads version {PLAN_SCHEMA_VERSION}. "
            "Regenerate the plan with this version of `bitplan plan`."
        )
    try:
        return BitPlan.model_validate(data)
    except ValidationError as error:
        details = "; ".join(format_validation_error(error))
        raise PlanError(f"{source} is not a valid plan: {details}. Fix these fields or regenerate the plan.") from None


def read_plan_text(path: str | os.PathLike) -> str:
    """The text of a plan file, or one clear ``PlanError`` for a path that holds no readable text.

    Raises:
        PlanError: The path is missing, a directory, unreadable, or not UTF-8 text.
    """
    file = Path(path)
    if file.is_dir():
        raise PlanError(
            f"`{file}` is a directory, not a plan file; pass the plan files in it, e.g. `{file / '*.json'}`."
        )
    if not file.is_file():
        raise PlanError(f"plan file `{file}` does not exist. Make one with `bitplan plan MODEL -o {file}`.")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PlanError(
            f"plan file `{file}` is not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x}); "
            "a plan is JSON written by `bitplan plan`. Regenerate it or pass the right file."
        ) from None
    except OSError as error:
        raise PlanError(f"cannot read plan file `{file}`: {error.strerror or error}. Check its permissions.") from None


def load_plan(path: str | os.PathLike) -> BitPlan:
    """Read a plan file written by ``save_plan`` (or ``bitplan plan -o``).

    Example:
        >>> plan = load_plan("plans/resnet20_A_Cminus_4-8.json")  # doctest: +SKIP
        >>> plan.bits_by_weight()["conv1.weight"]  # doctest: +SKIP
        8

    Raises:
        PlanError: The file is missing, not UTF-8 JSON, of an unknown schema version, or malformed.
    """
    return parse_plan(read_plan_text(path), source=f"plan file `{Path(path)}`")


def as_plan(plan: BitPlan | str | os.PathLike) -> BitPlan:
    """``plan`` itself, or the plan file at that path: what every library function taking a plan accepts.

    Raises:
        PlanError: As ``load_plan``.
    """
    return plan if isinstance(plan, BitPlan) else load_plan(plan)


def plan_to_json(plan: BitPlan) -> str:
    """The canonical text of a plan file (stable, so committed plans diff cleanly)."""
    return plan.model_dump_json(indent=2) + "\n"


def save_plan(plan: BitPlan, path: str | os.PathLike) -> Path:
    """Write ``plan`` as JSON atomically and return the path."""
    return atomic_write_text(path, plan_to_json(plan))


def regenerate_hint(model: str) -> str:
    """How to make a plan for ``model``: the command when it is a spec, else how to name the model.

    ``apply`` fingerprints a module object, whose name (e.g. ``DigitsCnn``) is no spec a command
    takes; suggesting ``bitplan plan DigitsCnn`` would send the user to an error.
    """
    base = model.partition("?")[0]
    prefix, separator, rest = base.partition(":")
    if (separator and rest) or base.lower().endswith((".onnx", ".json")):
        return f"Make a plan for this model with `bitplan plan '{model}'`."
    return (
        f"Make a plan for this model with `bitplan plan SPEC`, where SPEC names it (e.g. `zoo:NAME` or "
        f"`path/to/file.py:factory` returning this `{model}`)."
    )


def verify_fingerprint(plan: BitPlan, profile: ModelProfile) -> None:
    """Refuse a plan made for another architecture.

    Raises:
        PlanError: ``plan.fingerprint`` differs from ``profile.fingerprint()``.
    """
    actual = profile.fingerprint()
    if plan.fingerprint != actual:
        raise PlanError(
            f"the plan was made for model `{plan.model}` (fingerprint {plan.fingerprint}) but this model "
            f"`{profile.model}` has fingerprint {actual}: their GEMM names or weight shapes differ. "
            f"{regenerate_hint(profile.model)}"
        )
