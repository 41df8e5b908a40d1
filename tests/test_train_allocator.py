"""``keep_freed_memory``: freed activation-sized blocks stay in the process instead of being
returned to the system and faulted back in (measured as resident memory, in fresh processes)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc malloc's; other C libraries keep their own policy",
)

# Allocates 64 MB in 256 KiB blocks (a small activation each), touches them, frees them all, and
# prints how much resident memory the frees gave back to the system.
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    if sys.argv[1] == "retain":
        from bitplan.train.allocator import keep_freed_memory
        assert keep_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def resident():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096
    count, size = 256, 256 * 1024 - 64
    blocks = (ctypes.c_void_p * count)()
    for i in range(count):
        blocks[i] = libc.malloc(size)
        ctypes.memset(blocks[i], 1, size)
    before = resident()
    for i in reversed(range(count)):
        libc.free(blocks[i])
    print((before - resident()) / 2**20)
    """
)


def returned_mib(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=120)
    return float(done.stdout.strip())


def test_freed_blocks_stay_resident_once_retained() -> None:
    assert returned_mib("default") > 32  # glibc's default: the 64 MB go back to the system
    assert returned_mib("retain") < 4


def test_setting_is_idempotent() -> None:
    from bitplan.train.allocator import keep_freed_memory

    assert keep_freed_memory() is keep_freed_memory() is True
