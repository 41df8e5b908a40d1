"""PEP 562 lazy exports: a package lists its public names and imports their modules on first access.

Why: ``import bitplan`` and ``bitplan --help`` must not pay for torch (issue 13); a curated
``__init__`` that imports eagerly would pull the whole library in for one name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, tuple[str, str]], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a package's module-level ``__getattr__`` and ``__dir__``.

    Args:
        package: The package's ``__name__`` (for the error message).
        exports: Public name -> (module to import, attribute of that module).
        namespace: The package's ``globals()``; a resolved name is cached there.

    Returns:
        ``(__getattr__, __dir__)`` to assign at module level.

    Example:
        >>> import bitplan.plan
        >>> "make_plan" in dir(bitplan.plan)
        True
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, attribute = exports[name]
        value = getattr(importlib.import_module(module_name), attribute)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace.get("__all__", ()), *exports})

    return __getattr__, __dir__
