"""Run a per-row-block function over [rows] in cache-sized blocks, inline or on a thread pool.

The fast decoders work block by block so that every intermediate array stays in cache (a pass
over a whole 72B tensor would stream it through memory a dozen times). NumPy releases the GIL
inside its array loops, so blocks handed to a ThreadPoolExecutor decode in parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

# 4096 rows of 64-byte index codes: ~0.3 MB in, ~1 MB of int32 out; every temporary fits L2.
BLOCK_ROWS = 4096
# Work with no block-sized temporaries (the compiled Elias-Fano rows, the 2-bit code lookups) in
# larger blocks: each block handed to a thread costs ~10-20 us (bench/wire.py's layer: 14.5 ->
# 14.1 ms on one thread, 16.3 -> 15.1 ms CPU on two, with 16384 instead of 4096 rows).
STREAM_BLOCK_ROWS = 16384


def block_bounds(rows: int, block_rows: int = BLOCK_ROWS) -> list[tuple[int, int]]:
    """[(start, stop)] covering range(rows) in order."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    return [(s, min(s + block_rows, rows)) for s in range(0, rows, block_rows)]


def all_blocks_ok(
    fn: Callable[[int, int], bool], rows: int, pool: Executor | None = None, block_rows: int = BLOCK_ROWS
) -> bool:
    """fn(start, stop) on the blocks (on `pool` when given and there is more than one block);
    True when every call returned True. After a call returns False the blocks not yet started
    are skipped: the caller then discards the output (a bad payload goes to the reference
    decoder), so decoding the rest would be work done twice."""
    bounds = block_bounds(rows, block_rows)
    if pool is None or len(bounds) < 2:
        return all(fn(s, e) for s, e in bounds)
    failed = False  # set by any worker; a stale read only runs one more block

    def run(block: tuple[int, int]) -> bool:
        nonlocal failed
        if failed:
            return False
        ok = fn(*block)
        if not ok:
            failed = True
        return ok

    return all(list(pool.map(run, bounds)))
