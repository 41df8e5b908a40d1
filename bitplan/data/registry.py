"""Spec kinds to loaders: each source module registers itself with ``@register_source``.

``load_data("cifar10:~/data/cifar-10-batches-py?augment=false", seed=3)`` parses the spec, refuses
unknown kinds (suggesting the closest name) and unknown options (listing the valid ones), and calls the
registered loader with a ``DataRequest``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from bitplan.data.bundle import DataBundle, DataRequest
from bitplan.errors import DataError

__all__ = ["SourceInfo", "load_data", "parse_spec", "register_source", "sources"]

Loader = Callable[[DataRequest], DataBundle]

# kind, then an optional `:PATH`, then an optional `?query`; a path may itself contain `:` (C:\data).
_SPEC = re.compile(r"^(?P<kind>[A-Za-z][\w-]*)(?::(?P<path>[^?]*))?(?:\?(?P<query>.*))?$")


@dataclass(frozen=True)
class SourceInfo:
    """One registered data source.

    Attributes:
        kind: The name users write before ``:``, e.g. ``"cifar10"``.
        summary: One line describing the data and its layout.
        takes_path: Whether the spec needs ``:PATH``.
        options: Option name -> one-line description (with its default).
        loader: The function that builds the bundle.
    """

    kind: str
    summary: str
    takes_path: bool
    options: Mapping[str, str]
    loader: Loader


_SOURCES: dict[str, SourceInfo] = {}


def register_source(
    kind: str, *, summary: str, takes_path: bool, options: Mapping[str, str] | None = None
) -> Callable[[Loader], Loader]:
    """Register ``loader(request) -> DataBundle`` for the spec kind ``kind`` (a decorator).

    Args:
        kind: The spec kind, lower case.
        summary: One line for docs and help.
        takes_path: Whether the spec must (True) or must not (False) carry ``:PATH``.
        options: The accepted ``?k=v`` options, name -> description.

    Returns:
        A decorator that records the loader and returns it unchanged.

    Raises:
        ValueError: If ``kind`` is already registered.
    """

    def decorator(loader: Loader) -> Loader:
        if kind in _SOURCES:
            raise ValueError(f"data source `{kind}` is registered twice")
        _SOURCES[kind] = SourceInfo(kind, summary, takes_path, MappingProxyType(dict(options or {})), loader)
        return loader

    return decorator


def sources() -> list[SourceInfo]:
    """Every registered data source, sorted by kind."""
    return [_SOURCES[kind] for kind in sorted(_SOURCES)]


def parse_spec(spec: str) -> tuple[str, Path | None, dict[str, str]]:
    """Split ``kind[:PATH][?k=v&k2=v2]`` into its kind (lower case), path and options.

    Raises:
        DataError: If the spec is malformed or repeats an option.

    Example:
        >>> parse_spec("text:/data/ptb?level=char")
        ('text', PosixPath('/data/ptb'), {'level': 'char'})
    """
    match = _SPEC.match(spec.strip())
    if match is None:
        raise DataError(
            f"data spec `{spec}` is malformed; write it as `KIND`, `KIND:PATH` or `KIND:PATH?option=value`, "
            f"e.g. `digits`, `cifar10:~/data/cifar-10-batches-py` or `synthetic?n=512`."
        )
    raw_path = match["path"]
    path = Path(raw_path).expanduser() if raw_path else None
    options: dict[str, str] = {}
    for pair in (match["query"] or "").split("&"):
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise DataError(f"option `{pair}` in data spec `{spec}` is not `name=value`; e.g. `?level=char`.")
        if name in options:
            raise DataError(f"option `{name}` appears twice in data spec `{spec}`; keep one.")
        options[name] = value
    return match["kind"].lower(), path, options


def _source(kind: str, spec: str) -> SourceInfo:
    """The registered source for ``kind``, or a DataError suggesting the closest kind."""
    if kind in _SOURCES:
        return _SOURCES[kind]
    close = difflib.get_close_matches(kind, list(_SOURCES), n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    raise DataError(
        f"unknown data kind `{kind}` in spec `{spec}`; {hint}known kinds: {', '.join(sorted(_SOURCES))} "
        f"(see docs/data.md)."
    )


def load_data(
    spec: str,
    *,
    seed: int = 0,
    seq_len: int | None = None,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
) -> DataBundle:
    """Load the train and test splits a data spec names; nothing is ever downloaded.

    Args:
        spec: ``digits``, ``cifar10:PATH``, ``cifar100:PATH``, ``imagefolder:PATH[?size=224]``,
            ``text:PATH[?level=word|char]`` or ``synthetic[?n=512&classes=10]`` (docs/data.md).
        seed: Seed of the run: drives training augmentation and synthetic data (never the digits split).
        seq_len: Window length for language modelling (defaults to the example input's last dimension).
        example_inputs: The model's example inputs; shape synthetic data and default ``seq_len``.

    Returns:
        The ``DataBundle`` with both splits and the task's sizes.

    Raises:
        DataError: If the spec is malformed or unknown, an option is unknown or bad, or the files are
            missing or unreadable.

    Example:
        >>> bundle = load_data("digits")
        >>> len(bundle.train), len(bundle.test), bundle.num_classes
        (1437, 360, 10)
    """
    kind, path, options = parse_spec(spec)
    source = _source(kind, spec)
    if source.takes_path and path is None:
        raise DataError(f"data kind `{kind}` needs a path: write `{kind}:PATH` (see docs/data.md).")
    if not source.takes_path and path is not None:
        raise DataError(f"data kind `{kind}` takes no path, but spec `{spec}` gives `{path}`; write `{kind}`.")
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        valid = ", ".join(f"`{name}`" for name in source.options) or "none"
        raise DataError(f"unknown option `{unknown[0]}` in data spec `{spec}`; `{kind}` accepts: {valid}.")
    request = DataRequest(spec, kind, path, options, seed, seq_len, example_inputs)
    return source.loader(request)
