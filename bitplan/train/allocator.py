"""Keep freed heap memory in a training process, so every step does not fault it back in.

Each training step allocates the tensors its backward needs and frees them after backward. When
they are large, freeing leaves a large free block at the top of glibc's heap, which glibc returns
to the system (its trim threshold is a few MB at most), and the next step faults the same pages
back in. Before quantized layers kept their operands as codes (``bitplan.quant.kept``), a
fake-quantized ResNet-20 step at batch 128 kept +92 MB of float copies and took 16–36 K page faults
per step, 3–7 % of the step. Raising the trim and mmap thresholds, as ``MALLOC_TRIM_THRESHOLD_`` /
``MALLOC_MMAP_THRESHOLD_`` do, keeps the pages; the process then holds its peak heap until it
exits, which is what a training process wants anyway. ``bitplan train`` calls it; in your own loop:

    >>> import bitplan.train
    >>> bitplan.train.keep_freed_memory()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import functools

from bitplan.libc import libc_function

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD_BYTES = 2**31 - 1
"""Return free heap top to the system only beyond 2 GiB (mallopt takes a C int)."""
MMAP_THRESHOLD_BYTES = 32 << 20
"""Serve blocks up to 32 MiB (glibc's largest allowed threshold on 64-bit) from the heap, not fresh mmaps."""


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse (once per process).

    Returns:
        Whether both thresholds were set: False off Linux/glibc (other allocators keep their own
        policy) or when the C library refuses them.
    """
    mallopt = libc_function("mallopt", (ctypes.c_int, ctypes.c_int), ctypes.c_int)
    if mallopt is None:  # not Linux, or a C library without mallopt (musl)
        return False
    trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return bool(trim and mmap)
