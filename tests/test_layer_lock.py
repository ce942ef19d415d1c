"""_kernels.LayerLock, a compiled layer's ``_lock``: threading.RLock's semantics (reentrant, owned by one
thread, waiters block until the owner's last release), taken by the call in C without a Python call."""
import threading
import time

import pytest

import fastrnn
from fastrnn import _kernels


def test_compiled_layers_use_it():
    for layer in (fastrnn.RNN(3, 4), fastrnn.LSTM(3, 4), fastrnn.GRU(3, 4)):
        assert type(layer._lock) is _kernels.LayerLock


def test_reentrant_and_checked_release():
    lock = _kernels.LayerLock()
    assert lock.acquire() and lock.acquire(blocking=False)
    with lock:
        assert "3 deep" in repr(lock)
    lock.release()
    lock.release()
    assert "free" in repr(lock)
    with pytest.raises(RuntimeError, match="un-acquired"):
        lock.release()


def in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_owned_by_one_thread():
    lock = _kernels.LayerLock()
    lock.acquire()
    assert in_thread(lambda: lock.acquire(blocking=False)) is False

    def release_foreign():
        try:
            lock.release()
        except RuntimeError as e:
            return str(e)

    assert "un-acquired" in in_thread(release_foreign)
    lock.release()
    assert in_thread(lambda: lock.acquire(blocking=False)) is True  # free again: the thread takes it...
    assert lock.acquire(blocking=False) is False  # ...and keeps it (it ended without releasing)


def test_a_waiter_blocks_until_the_last_release():
    lock = _kernels.LayerLock()
    events, started = [], threading.Event()
    lock.acquire()
    lock.acquire()

    def waiter():
        started.set()
        with lock:
            events.append("waiter in")

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    time.sleep(0.2)
    lock.release()  # still held once: the waiter stays out
    time.sleep(0.2)
    events.append("owner out")
    lock.release()
    t.join()
    assert events == ["owner out", "waiter in"]
    assert lock.acquire(blocking=False)  # and the waiter let go
    lock.release()


def test_mutual_exclusion_under_contention():
    """Four threads enter the lock (nested) many times, yielding the GIL inside: never two inside at once."""
    lock = _kernels.LayerLock()
    inside, overlaps, count = [0], [], [0]

    def work():
        for _ in range(300):
            with lock, lock:  # (entered twice: reentrant)
                inside[0] += 1
                if inside[0] != 1:
                    overlaps.append(inside[0])
                time.sleep(0)  # let the other threads try
                count[0] += 1
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and count[0] == 1200
    assert lock.acquire(blocking=False)


def test_failed_try_leaves_it_consistent():
    """A non-blocking try while another thread holds the lock changes nothing: the owner's release frees it."""
    lock = _kernels.LayerLock()
    held, done = threading.Event(), threading.Event()

    def owner():
        with lock:
            held.set()
            done.wait()

    t = threading.Thread(target=owner)
    t.start()
    held.wait()
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(blocking=False) is False
    done.set()
    t.join()
    assert lock.acquire(blocking=False)
    lock.release()
