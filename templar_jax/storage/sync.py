"""Run a storage coroutine from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def run_sync(coro: Awaitable[T]) -> T:
    """asyncio.run(coro), with the result kept out of the loop's main task: Python 3.11's
    asyncio.run formats that task (result included) through repr when it restores the SIGINT
    handler, and repr of a 100 MB bytes object took 5 s here (the download itself 0.2 s)."""
    box: list = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]
