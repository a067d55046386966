"""glibc's mmap threshold, set from the run config (`validator.mmap_threshold_bytes`).

glibc raises its mmap threshold each time a large block is freed (up to 32 MB on 64-bit), so
after the first payload-sized buffers are freed later ones come from the heap and the freed
memory stays with the process: a validator's RSS then grows with the number of miners it has
decoded. A fixed threshold makes every buffer above it an mmap that goes back to the system on
free (measured in docs/results.md, "The validator's window"). Same effect as starting the
process with MALLOC_MMAP_THRESHOLD_, without relying on the launcher to set it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # <malloc.h>
GLIBC_MAX_THRESHOLD = 32 << 20  # HEAP_MAX / 2 on 64-bit: mallopt refuses larger values


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix the threshold at `nbytes` (0: leave glibc's dynamic default). True when applied;
    False (logged) where the C library has no mallopt (not glibc) or refuses the value."""
    if nbytes <= 0:
        return False
    if nbytes > GLIBC_MAX_THRESHOLD:
        raise ValueError(f"mmap threshold {nbytes} B is above glibc's maximum {GLIBC_MAX_THRESHOLD} B")
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name) if name else None, "mallopt", None)
    if mallopt is None:
        log.warning("this C library has no mallopt: mmap threshold left as it is")
        return False
    if mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(nbytes)) != 1:
        log.warning("mallopt refused an mmap threshold of %d B", nbytes)
        return False
    return True
