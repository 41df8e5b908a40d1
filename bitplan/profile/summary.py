"""Shorter views of a profile for people: GEMMs grouped by module prefix, and the largest GEMMs.

``group_by_prefix(profile, depth)`` collapses repeated blocks the way torchinfo's ``depth`` does:
every GEMM is counted under the first ``depth`` components of its module path (``layer1.0.conv1``
at depth 1 is ``layer1``, at depth 2 ``layer1.0``). ``largest(profile, top)`` keeps the ``top``
GEMMs with the most MACs. Both keep each GEMM's index, its 0-based position in ``profile.layers``,
so their rows can be found in the full table, the JSON and the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitplan.errors import SpecError
from bitplan.profile.schema import GemmLayer, ModelProfile


@dataclass(frozen=True)
class GemmGroup:
    """The GEMMs under one module prefix, aggregated.

    ``params`` counts each weight once (a weight shared by two GEMMs of the group adds once);
    ``k_range`` and ``m_range`` are the (smallest, largest) accumulation K and usage frequency M.
    """

    prefix: str
    indices: tuple[int, ...]
    params: int
    macs: int
    k_range: tuple[int, int]
    m_range: tuple[int, int]

    @property
    def count(self) -> int:
        return len(self.indices)


def prefix_of(name: str, depth: int) -> str:
    """The first ``depth`` dot-separated components of a module path: ``prefix_of("a.0.b", 2) == "a.0"``."""
    return ".".join(name.split(".")[:depth])


def group_by_prefix(profile: ModelProfile, depth: int) -> list[GemmGroup]:
    """Aggregate the profile's GEMMs under the first ``depth`` components of their module path.

    Args:
        profile: A model profile.
        depth: How many leading components of the module path name a group (1 = top-level modules).

    Returns:
        One group per prefix, in the order each prefix first appears in the profile.

    Raises:
        SpecError: ``depth`` is below 1.

    Example:
        >>> groups = group_by_prefix(profile_spec("zoo:resnet20"), 1)  # doctest: +SKIP
        >>> [(g.prefix, g.count) for g in groups]  # doctest: +SKIP
        [('conv1', 1), ('layer1', 6), ('layer2', 6), ('layer3', 6), ('fc', 1)]
    """
    if depth < 1:
        raise SpecError(f"`--depth {depth}` must be at least 1 (1 groups GEMMs by top-level module)")
    members: dict[str, list[int]] = {}
    for index, layer in enumerate(profile.layers):
        members.setdefault(prefix_of(layer.name, depth), []).append(index)
    return [_aggregate(prefix, indices, profile.layers) for prefix, indices in members.items()]


def largest(groups: list[GemmGroup], top: int) -> list[GemmGroup]:
    """The ``top`` groups with the most MACs, largest first (ties keep profile order).

    Raises:
        SpecError: ``top`` is below 1.
    """
    if top < 1:
        raise SpecError(f"`--top {top}` must be at least 1 (the number of largest GEMMs to show)")
    return sorted(groups, key=lambda group: -group.macs)[:top]


def single_groups(profile: ModelProfile) -> list[GemmGroup]:
    """Every GEMM as a group of its own (what ``largest`` ranks when no ``--depth`` is given)."""
    return [_aggregate(layer.name, [index], profile.layers) for index, layer in enumerate(profile.layers)]


def summarize(profile: ModelProfile, *, depth: int | None = None, top: int | None = None) -> tuple[list[GemmGroup], str]:
    """The view ``bitplan profile --depth N --top T`` prints: groups by prefix, then the largest.

    Args:
        profile: A model profile.
        depth: Group by the first ``depth`` module-path components (None: every GEMM on its own).
        top: Keep only the ``top`` groups with the most MACs, largest first (None: all, profile order).

    Returns:
        The groups, and one phrase saying how they were chosen (for a table caption).

    Raises:
        SpecError: ``depth`` or ``top`` is below 1.
    """
    groups = single_groups(profile) if depth is None else group_by_prefix(profile, depth)
    unit = "GEMMs" if depth is None else f"module prefixes of depth {depth}"
    how = f"{len(groups)} {unit}"
    if top is not None:
        groups = largest(groups, top)
        share = sum(group.macs for group in groups) / max(profile.total_macs, 1)
        how = f"{len(groups)} largest of {how} by MACs ({share:.1%} of all MACs)"
    return groups, how


def index_ranges(indices: tuple[int, ...]) -> str:
    """Compact GEMM indices: ``(0, 1, 2, 5)`` -> ``"0-2, 5"``."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def _aggregate(prefix: str, indices: list[int], layers: list[GemmLayer]) -> GemmGroup:
    chosen = [layers[index] for index in indices]
    weights = {layer.weight: layer.params for layer in chosen if layer.weight is not None}
    gemms = [layer for layer in chosen if not layer.op.lookup] or chosen  # a lookup has no K or M (0)
    ks = [layer.accumulation for layer in gemms]
    ms = [layer.weight_frequency for layer in gemms]
    return GemmGroup(
        prefix=prefix,
        indices=tuple(indices),
        params=sum(weights.values()),
        macs=sum(layer.macs for layer in chosen),
        k_range=(min(ks), max(ks)),
        m_range=(min(ms), max(ms)),
    )
