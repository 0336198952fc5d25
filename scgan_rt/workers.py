"""Photo I/O off the main thread: decoding runs ahead of inference, encoding behind it.

Pillow's decoders and encoders, tifffile and numpy release the GIL, so a few threads keep
the network busy while photos are read and written. Results are handed back in job
order, so journals, reports and progress read exactly as in a serial run. Both sides
are bounded (items and decoded pixels ahead, writes behind), and ``close`` waits for the
writes in progress: an interrupted run leaves finished files or none, never partial ones.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# ``--io-threads 0``: this many threads decode and encode photos, or one per core on
# smaller machines.
IO_THREADS = 4


def io_threads(setting: int = 0) -> int:
    """Threads for photo I/O: ``setting`` when positive, else min(IO_THREADS, usable cores)."""
    if setting > 0:
        return setting
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(IO_THREADS, cores))


class Prefetcher(Generic[T, R]):
    """``load(item)`` for the next wanted items, in threads, within ``max_items`` and
    ``max_pixels`` (``pixels(item)`` is read from the file header; one item always fits)."""

    def __init__(self, items: Sequence[T], wanted: Callable[[T], bool], load: Callable[[T], R],
                 pixels: Callable[[T], int], threads: int, max_items: int, max_pixels: int) -> None:
        self.items, self.wanted, self.load, self.pixels = items, wanted, load, pixels
        self.max_items, self.max_pixels = max_items, max_pixels
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="scgan-load")
        self.ahead: dict[int, tuple[Future[R], int]] = {}
        self.next = 0

    def get(self, index: int) -> R:
        """The loaded item ``index`` (its exception re-raised); items are asked for in order."""
        self._fill(index)
        got = self.ahead.pop(index, None)
        result = got[0].result() if got is not None else self.load(self.items[index])
        self._fill(index + 1)
        return result

    def _fill(self, start: int) -> None:
        self.next = max(self.next, start)
        while self.next < len(self.items) and len(self.ahead) < self.max_items:
            px = sum(p for _, p in self.ahead.values())
            item = self.items[self.next]
            if not self.wanted(item):
                self.next += 1
                continue
            n = self.pixels(item)
            if self.ahead and px + n > self.max_pixels:
                return
            self.ahead[self.next] = (self.pool.submit(self.load, item), n)
            self.next += 1

    def close(self) -> None:
        _shutdown(self.pool)


class Writer(Generic[T]):
    """``submit(key, fn)`` runs ``fn`` in a thread; ``finished()`` yields ``(key, result,
    error)`` in submission order; at most ``max_pending`` writes are outstanding."""

    def __init__(self, threads: int, max_pending: int) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="scgan-write")
        self.pending: deque[tuple[T, Future[Any]]] = deque()
        self.max_pending = max_pending

    def submit(self, key: T, fn: Callable[[], Any]) -> None:
        self.pending.append((key, self.pool.submit(fn)))

    def finished(self, wait: bool = False) -> Iterator[tuple[T, Any, BaseException | None]]:
        """Completed writes from the front; with ``wait`` all of them, else as many as keeps
        the outstanding writes within ``max_pending``."""
        while self.pending and (wait or self.pending[0][1].done() or len(self.pending) > self.max_pending):
            key, fut = self.pending.popleft()
            error = fut.exception()
            yield key, (None if error is not None else fut.result()), error

    def close(self) -> None:
        """Wait for writes in progress (each finishes or removes its temp file); drop the rest."""
        _shutdown(self.pool)


def _shutdown(pool: ThreadPoolExecutor) -> None:
    """Cancel what has not started and wait for the rest, through further signals."""
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            continue
