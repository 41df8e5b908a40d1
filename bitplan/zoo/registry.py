"""Names to builders: each zoo model registers its options model and a function that builds it.

``build("resnet_d", {"num_classes": "100"})`` parses the string options into the model's frozen
options model (unknown options and bad values become a ``SpecError`` that lists the valid ones), calls
the builder, and returns the module with default example inputs. Nothing is ever downloaded: every
model is a random-init architecture.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from torch import nn

from bitplan.errors import SpecError
from bitplan.zoo.configs import Task, ZooConfig

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ZooEntry:
    """One registered model: its options model and the function that builds it from them."""

    name: str
    description: str
    config_type: type[ZooConfig]
    builder: Callable[[Any], nn.Module]


_REGISTRY: dict[str, ZooEntry] = {}


def register(name: str, config_type: type[ZooConfig], *, description: str) -> Callable[[Builder], Builder]:
    """Register ``builder(config) -> nn.Module`` under ``name`` (a decorator).

    Args:
        name: The zoo name users write after ``zoo:``.
        config_type: The frozen options model the builder receives.
        description: One line shown by ``bitplan zoo``.

    Returns:
        A decorator that records the builder and returns it unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"zoo model `{name}` is registered twice")
        _REGISTRY[name] = ZooEntry(name, description, config_type, builder)
        return builder

    return decorator


class ZooOption(BaseModel):
    """One option of a zoo model, with its default value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    default: JsonValue = Field(description="Default value (after preset resolution, where a model has presets).")
    description: str = ""
    choices: list[str] | None = Field(default=None, description="Allowed values, for options that are choices.")


class ZooInfo(BaseModel):
    """What ``bitplan zoo`` shows for one model: its default input, task, size and options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    task: Task
    input_shape: list[int] = Field(description="Shape of the default example input (batch 1).")
    input_dtype: str = Field(description="dtype of the default example input, e.g. float32 or int64.")
    options: list[ZooOption]
    params: int = Field(ge=0, description="Parameter count with these options (tied weights counted once).")

    def defaults(self) -> dict[str, JsonValue]:
        """Option name -> default value."""
        return {option.name: option.default for option in self.options}


def names() -> list[str]:
    """Every zoo model name, sorted (the order ``bitplan zoo`` lists them in)."""
    return sorted(_REGISTRY)


def entry(name: str) -> ZooEntry:
    """The registry entry for ``name``.

    Raises:
        SpecError: If no model has that name; the message suggests close names.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
    raise SpecError(
        f"unknown zoo model `{name}`.{hint} Available models: {', '.join(names())} "
        "(run `bitplan zoo` to see their inputs and options)."
    )


def parse_options(name: str, options: Mapping[str, Any] | None = None) -> ZooConfig:
    """Validate ``options`` (strings, as they come from a spec) into the model's options model.

    Args:
        name: A zoo model name.
        options: Option name -> value; strings are converted (``"0.5"`` -> 0.5, ``"3,15,3"`` -> (3, 15, 3)).

    Returns:
        The frozen options model for ``name``.

    Raises:
        SpecError: For an unknown model, an unknown option (the message lists the valid ones) or a
            value that does not fit its option.
    """
    zoo_entry = entry(name)
    valid = list(zoo_entry.config_type.model_fields)
    options = dict(options or {})
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise SpecError(
                f"zoo model `{name}` has no option `{key}`{hint}. Valid options: {', '.join(valid)}."
            )
    try:
        return zoo_entry.config_type(**options)
    except ValidationError as error:
        raise SpecError(_describe_invalid(name, options, error)) from error


def _describe_invalid(name: str, options: Mapping[str, Any], error: ValidationError) -> str:
    """One paragraph naming each bad option, the value given and why it was refused."""
    problems = []
    for detail in error.errors():
        option = str(detail["loc"][0]) if detail["loc"] else None
        if option is None:  # a check across several options (e.g. d_model divisible by n_heads)
            problems.append(str(detail["msg"]).removeprefix("Value error, "))
        else:
            given = options.get(option, "<default>")
            problems.append(f"option `{option}`={given!r}: {detail['msg']}")
    return f"invalid options for zoo model `{name}`: {'; '.join(problems)}. Fix the value(s) in the spec."


def build(
    name: str, options: Mapping[str, Any] | None = None, *, batch: int = 1
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build a random-init zoo model and its default example inputs.

    Tensors are created without an explicit device, so building inside ``with torch.device("meta"):``
    gives a meta model and meta inputs (no memory is allocated).

    Args:
        name: A zoo model name (see ``names()``).
        options: String options from the spec, e.g. ``{"width": "0.5"}``.
        batch: Batch size of the example inputs.

    Returns:
        ``(model, example_inputs)``; the model is in training mode, as a freshly constructed module is.

    Raises:
        SpecError: For an unknown model, an unknown option or an invalid option value.

    Example:
        >>> model, (x,) = build("resnet20", {"num_classes": "100"})
        >>> model(x).shape
        torch.Size([1, 100])
    """
    zoo_entry = entry(name)
    config = parse_options(name, options)
    return zoo_entry.builder(config), config.example_inputs(batch)


def info(name: str, options: Mapping[str, Any] | None = None) -> ZooInfo:
    """Describe a zoo model: default input, task, options and parameter count (built on meta, cheap).

    Raises:
        SpecError: As ``build``.
    """
    zoo_entry = entry(name)
    config = parse_options(name, options)
    with torch.device("meta"):
        model = zoo_entry.builder(config)
    values = config.model_dump(mode="json")
    fields = zoo_entry.config_type.model_fields
    option_list = [
        ZooOption(
            name=key,
            default=values[key],
            description=field.description or "",
            choices=_choices(field.annotation),
        )
        for key, field in fields.items()
    ]
    return ZooInfo(
        name=name,
        description=zoo_entry.description,
        task=config.task,
        input_shape=config.input_shape(),
        input_dtype=str(config.input_dtype).removeprefix("torch."),
        options=option_list,
        params=sum(parameter.numel() for parameter in model.parameters()),
    )


def catalog() -> list[ZooInfo]:
    """``info`` of every zoo model with default options, in ``names()`` order."""
    return [info(name) for name in names()]


def _choices(annotation: object) -> list[str] | None:
    """The allowed values of an Enum-typed option, else None."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(member.value) for member in annotation]
    return None
