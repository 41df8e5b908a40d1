"""C library functions by name, where the process has them.

bitplan calls three glibc functions: ``madvise`` (huge pages for large quantizer outputs),
``mallopt`` (keep freed heap memory) and ``mallinfo2`` (bytes allocated). Each is an optimisation or
a measurement that must come to nothing, not to an error, off Linux or where the C library lacks it
(musl has no ``mallopt``, glibc before 2.33 no ``mallinfo2``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any


@cache
def _library() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def libc_function(name: str, argtypes: Sequence[Any], restype: Any) -> Callable[..., Any] | None:
    """The C library's ``name`` with the given signature, or None where there is none.

    Args:
        name: The C function's name.
        argtypes: Its ctypes argument types.
        restype: Its ctypes return type.

    Returns:
        A fresh ctypes function object (its signature is its own), or None off Linux, where the
        C library does not load, or where it has no ``name``.
    """
    library = _library()
    if library is None:
        return None
    try:
        function = library[name]  # a new function object, unlike attribute access (cached, shared)
    except AttributeError:
        return None
    function.argtypes, function.restype = list(argtypes), restype
    return function
