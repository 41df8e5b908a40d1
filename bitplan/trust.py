"""Files never run code: which model specs read from a file may be resolved without the user's say.

A plan, a checkpoint, a run's config.json or a grid's results.json records the model spec it was
made for. ``bitplan check plan.json`` runs in CI on pull requests, so such a file is untrusted
input: resolving ``evil.py:build`` from it would execute whatever the file's author wrote. A spec
that names data — a ``zoo:`` model, a ``torchvision:`` or ``hf:`` architecture (built from a local
config, never downloaded), or an ``.onnx`` file (parsed, not executed) — resolves by itself. A code
spec (``file.py:factory``, ``package.module:factory``) read from a file resolves only when the user
names the model on the command line (``--model``, or the ``MODEL`` argument) or passes
``--trust-model-spec``. The rule is in docs/ci.md.
"""

from __future__ import annotations

from bitplan.errors import SpecError

DATA_SPEC_PREFIXES = ("zoo", "torchvision", "hf")
"""Prefixes whose specs build a model from bitplan's or a library's own code and plain options."""


def names_data(spec: str) -> bool:
    """Whether ``spec`` names data only (resolving it runs no code chosen by the spec's author).

    Example:
        >>> names_data("zoo:resnet20?width=0.5"), names_data("model.onnx"), names_data("evil.py:build")
        (True, True, False)
    """
    base = spec.partition("?")[0].strip()
    if base.lower().endswith(".onnx"):
        return True
    prefix, separator, rest = base.partition(":")
    return bool(separator and rest) and prefix in DATA_SPEC_PREFIXES


def spec_from_file(spec: str, source: str, *, trusted: bool = False, remedy: str | None = None) -> str:
    """Return ``spec``, read from ``source``, when it may be resolved; refuse a code spec otherwise.

    Args:
        spec: The model spec recorded in the file.
        source: What the spec was read from, for the message (e.g. ``plan file `p.json```).
        trusted: The user passed ``--trust-model-spec`` (or the library equivalent).
        remedy: What the user can do instead (default: name the model with ``--model`` or pass
            ``--trust-model-spec``).

    Returns:
        ``spec`` unchanged.

    Raises:
        SpecError: ``spec`` names code (a ``.py`` file or a module) and ``trusted`` is False.
    """
    if trusted or names_data(spec):
        return spec
    raise SpecError(
        f"{source} names the model `{spec}`, which is code (a Python file or module); bitplan never runs "
        f"code named by a file it reads, so a plan or checkpoint from someone else cannot execute anything. "
        + (remedy or f"Name the model yourself (`--model {spec}` if you trust it) or pass `--trust-model-spec`.")
    )
