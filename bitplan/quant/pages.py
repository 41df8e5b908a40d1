"""Large quantizer outputs on transparent huge pages, so allocating them costs less than filling them.

glibc serves allocations above its largest mmap threshold (32 MiB) straight from the kernel and
returns them on free, so every call that allocates such an output pays a page fault per 4 KiB page
on its first write: for a 64 MiB ``clone`` on a 2-core VM that is 11 of its 17 ms, more than the
copy itself. With ``madvise(MADV_HUGEPAGE)`` on the fresh buffer before anything touches it, the
kernel maps 2 MiB pages where Transparent Huge Pages are enabled (``always`` or ``madvise``): 512×
fewer faults. Where they are not (other systems, ``never``), the advice is refused and nothing
changes. PyTorch offers the same for every allocation (``THP_MEM_ALLOC_ENABLE=1``); this applies it
to the quantizers' own outputs only.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor

from bitplan.libc import libc_function

HUGE_PAGE_BYTES = 2 << 20
MADV_HUGEPAGE = 14  # linux/mman.h


@cache
def _madvise() -> Callable[..., int] | None:
    return libc_function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int)


def empty_on_huge_pages(like: Tensor) -> Tensor:
    """An uninitialised contiguous tensor shaped like ``like``, its whole 2 MiB pages advised huge.

    Only useful before the first write; the advice covers the 2 MiB-aligned part of the buffer.
    On CUDA, off Linux, or where the advice is refused, it is ``torch.empty_like``.
    """
    out = torch.empty_like(like, memory_format=torch.contiguous_format)
    madvise = _madvise()
    if madvise is None or out.device.type != "cpu":
        return out
    begin = out.data_ptr()
    start = -(-begin // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    end = (begin + out.numel() * out.element_size()) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
    if end > start:
        madvise(start, end - start, MADV_HUGEPAGE)  # refused (THP off): ordinary pages, same results
    return out
