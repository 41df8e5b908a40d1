"""Weights that hold NaN or Inf: found once, named with their counts, refused by ``apply(strict=True)`` and every export.

A min/max quantizer has no grid for a range that is NaN or infinite (its scale is NaN), so a model
that diverged in training gives codes that mean nothing; exporting it silently hands a broken
model to a server. Refusing names each tensor and how many of its elements are NaN and Inf.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from bitplan.errors import NonFiniteWeightsError

SHOWN = 8
"""Tensors named in a message; the rest are counted."""


def nonfinite_tensors(tensors: Mapping[str, Tensor]) -> dict[str, tuple[int, int]]:
    """Name -> (NaN count, Inf count) of each floating-point tensor holding either, in the mapping's order."""
    found = {}
    for name, tensor in tensors.items():
        if not torch.is_floating_point(tensor) or tensor.device.type == "meta":
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(tensor).sum())
        found[name] = (nan, int((~finite).sum()) - nan)
    return found


def nonfinite_weights(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``nonfinite_tensors`` of the model's state_dict (parameters and buffers, a tied tensor under its first name)."""
    seen: set[tuple[int, int]] = set()
    unique = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.device.type != "meta" else (id(tensor), 0)
        if identity not in seen:
            seen.add(identity)
            unique[name] = tensor.detach()
    return nonfinite_tensors(unique)


def describe_nonfinite(found: Mapping[str, tuple[int, int]]) -> str:
    """```a.weight` (3 NaN, 0 Inf), `b.bias` (0 NaN, 1 Inf)``, the first ``SHOWN`` and how many more."""
    shown = [f"`{name}` ({nan:,} NaN, {inf:,} Inf)" for name, (nan, inf) in list(found.items())[:SHOWN]]
    more = f" and {len(found) - SHOWN} more tensors" if len(found) > SHOWN else ""
    return ", ".join(shown) + more


def refuse_nonfinite(model: nn.Module, what: str, remedy: str) -> None:
    """Raise naming every non-finite tensor of ``model`` (nothing when all are finite).

    Raises:
        NonFiniteWeightsError: Some tensor holds NaN or Inf.
    """
    found = nonfinite_weights(model)
    if found:
        raise NonFiniteWeightsError(
            f"{what}: the model's weights hold non-finite values: {describe_nonfinite(found)}. Training diverged or "
            f"the checkpoint is damaged; retrain (a lower learning rate, gradient clipping) or {remedy}."
        )
