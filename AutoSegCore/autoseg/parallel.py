"""Run one function over many cases, in worker processes when asked, with progress and in order.

Workers are always started with "spawn": it is the only start method on Windows and macOS's default,
and it avoids inheriting locks or thread pools from the parent (a common cause of hung pools with
fork). ``num_processes=1`` runs in-process, which is what tests and debuggers want.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from autoseg.errors import AutoSegError
from autoseg.progress import ProgressCallback, no_progress

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_cases(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    num_processes: int = 1,
    progress: ProgressCallback = no_progress,
    stage: str = "cases",
) -> list[Result]:
    """``[function(item) for item in items]``, optionally in a spawn pool; results keep input order.

    ``function`` must be a module-level function so spawned workers can import it. The first
    exception raised by a worker is re-raised here after the pool shut down; a worker that dies
    (usually killed for lack of memory) becomes an AutoSegError that says what to do.
    """
    total = len(items)
    progress(stage, 0, total)
    if num_processes <= 1 or total <= 1:
        results = []
        for done, item in enumerate(items, start=1):
            results.append(function(item))
            progress(stage, done, total)
        return results
    workers = min(num_processes, total)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures: dict[Future[Result], int] = {
            pool.submit(function, item): index for index, item in enumerate(items)
        }
        ordered: list[Result | None] = [None] * total
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                ordered[futures[future]] = future.result()
                progress(stage, done, total)
        except BrokenProcessPool:
            raise AutoSegError(
                f"a worker process of '{stage}' died, most often because memory ran out. "
                f"Fix: run again with fewer processes (-np, now {workers})."
            ) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return ordered  # type: ignore[return-value]
