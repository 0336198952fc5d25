"""Photo I/O threads: results come back in order, within their bounds, with their errors,
and ``close`` waits for writes in progress."""
from __future__ import annotations

import threading
import time

import pytest

from scgan_rt.workers import Prefetcher, Writer


def test_prefetcher_loads_ahead_in_order_within_item_and_pixel_bounds():
    started: list[int] = []
    lock = threading.Lock()
    peak = [0]
    inflight = [0]

    def load(i):
        with lock:
            started.append(i)
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
        time.sleep(0.01)
        with lock:
            inflight[0] -= 1
        if i == 5:
            raise ValueError("corrupt 5")
        return i * 10

    items = list(range(12))
    pf = Prefetcher(items, wanted=lambda i: i % 4 != 3, load=load, pixels=lambda i: 100 if i == 8 else 10,
                    threads=3, max_items=3, max_pixels=50)
    got = []
    for i in items:
        if i % 4 == 3:
            continue
        try:
            got.append(pf.get(i))
        except ValueError as e:
            got.append(str(e))
    pf.close()
    assert got == [0, 10, 20, 40, "corrupt 5", 60, 80, 90, 100]
    assert 3 not in started and 7 not in started and 11 not in started  # not wanted: never loaded
    assert sorted(started) == [0, 1, 2, 4, 5, 6, 8, 9, 10] and peak[0] <= 3


def test_writer_reports_in_submission_order_and_bounds_what_is_outstanding():
    w: Writer[str] = Writer(threads=3, max_pending=3)
    gate = threading.Event()
    w.submit("slow", lambda: gate.wait(5) and "slow done")
    w.submit("fast", lambda: "fast done")
    w.submit("bad", lambda: 1 / 0)
    assert list(w.finished()) == []  # the first is still running: nothing is reported out of order
    gate.set()
    out = list(w.finished(wait=True))
    assert [(k, r) for k, r, _ in out] == [("slow", "slow done"), ("fast", "fast done"), ("bad", None)]
    assert isinstance(out[2][2], ZeroDivisionError)
    w.close()


def test_writer_close_waits_for_the_write_in_progress():
    w: Writer[int] = Writer(threads=1, max_pending=4)
    done = []
    started = threading.Event()
    w.submit(1, lambda: (started.set(), time.sleep(0.2), done.append(1)))
    w.submit(2, lambda: done.append(2))
    assert started.wait(10)
    w.close()  # the running write finishes; the queued one is dropped
    assert done == [1]


def test_too_many_outstanding_writes_block_on_the_oldest():
    w: Writer[int] = Writer(threads=2, max_pending=1)
    last = threading.Event()
    w.submit(0, lambda: (time.sleep(0.05), 0)[1])
    w.submit(1, lambda: (time.sleep(0.05), 1)[1])
    w.submit(2, lambda: (last.wait(10), 2)[1])
    keys = [k for k, _, _ in w.finished()]  # waits until at most one is outstanding
    assert keys == [0, 1] and len(w.pending) == 1
    last.set()
    assert [k for k, _, _ in w.finished(wait=True)] == [2]
    w.close()
