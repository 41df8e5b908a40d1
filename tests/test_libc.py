"""``libc_function``: a C function with its signature where the system has it, None (never an error) elsewhere."""

from __future__ import annotations

import ctypes
import platform
import sys

import pytest

from bitplan import libc


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_a_present_function_has_its_own_signature() -> None:
    strlen = libc.libc_function("strlen", (ctypes.c_char_p,), ctypes.c_size_t)
    assert strlen(b"bitplan") == 7
    other = libc.libc_function("strlen", (ctypes.c_void_p,), ctypes.c_int)
    assert other is not strlen and strlen.argtypes == [ctypes.c_char_p]  # setting one leaves the other


def test_a_missing_function_or_system_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert libc.libc_function("bitplan_no_such_function", (), ctypes.c_int) is None
    monkeypatch.setattr(sys, "platform", "darwin")
    libc._library.cache_clear()
    try:
        assert libc.libc_function("strlen", (ctypes.c_char_p,), ctypes.c_size_t) is None
    finally:
        libc._library.cache_clear()
