"""The worker threads that run an event loop's blocking calls.

The asyncio and trio servers hand every backend and authenticator call that
may block (a password hash, opening and committing a maildrop) to a thread,
so that the loop keeps serving the other sessions.  A session makes such a
call once or twice, so what the hop itself costs shows in sessions per
second.  Measured on CPython 3.11 with 20,000 sequential calls of a function
that returns at once (CPU per call):

* ``ThreadPoolExecutor.submit`` + :func:`asyncio.wrap_future`: 52-61 us;
* ``trio.to_thread.run_sync``: 60-64 us;
* this pool: 38-39 us (asyncio), 44-54 us (trio).

The difference is what is *not* done: no :class:`concurrent.futures.Future`
with its condition variable, no second future chained to it, no capacity
limiter, no context copy.  A job is put on a :class:`queue.SimpleQueue`;
the thread that takes it runs it and calls the job's *report* callback with
the outcome, and that callback wakes the loop in its own thread-safe way
(``loop.call_soon_threadsafe``, a trio token's ``run_sync_soon``).

Threads start on demand, up to *size*, and stay for the pool's lifetime
(most servers make such calls all day).  They are daemon threads, so an
idle pool never holds up the interpreter's exit; but a call that is running
then (a commit half done, say) is waited for, by an :mod:`atexit` hook, as
:class:`~concurrent.futures.ThreadPoolExecutor` would.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["Report", "ThreadPool"]

log = logging.getLogger("pop3proto.server")

#: Called in the worker thread with ``(value, None)`` or ``(None, error)``.
Report = Callable[[Any, "BaseException | None"], None]

_Job = tuple[Callable[..., Any], tuple[Any, ...], Report]

# Pools with threads, for the exit hook (a pool that is collected leaves).
_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()


class ThreadPool:
    """Up to *size* threads named ``<name>-N`` running submitted calls."""

    def __init__(self, size: int, name: str = "pop3proto-worker") -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # _threads, _idle and _busy (jobs queued or running) change under
        # _lock, which also serves the condition the exit hook waits on.
        self._lock = threading.Condition(threading.Lock())
        self._threads = 0
        self._idle = 0
        self._busy = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], report: Report) -> None:
        """Run ``fn(*args)`` in a worker thread, then call *report* there
        with its value or the exception it raised."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is shut down")
            # A thread more only if none is idle: an idle one takes the job.
            # (With every thread started, a job may queue without taking
            # one from _idle, which then counts high; it only ever decides
            # whether to start a thread, and none can start any more.)
            start = self._idle == 0 and self._threads < self.size
            if start:
                self._threads += 1
                number = self._threads
            elif self._idle:
                self._idle -= 1
            # Counted from now, not from when a thread takes it: the exit
            # hook waits for a job still queued (a commit waiting for a
            # free thread) as for one running.
            self._busy += 1
        self._jobs.put((fn, args, report))
        if start:
            if number == 1:
                _pools.add(self)
            threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True).start()

    def shutdown(self) -> None:
        """Let the threads leave once the calls submitted so far are done
        (no waiting here).  Idempotent; no call may be submitted after."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no call is running or waiting for a thread; whether
        that happened in time."""
        with self._lock:
            return self._lock.wait_for(lambda: self._busy == 0, timeout)

    def _work(self) -> None:
        jobs = self._jobs
        lock = self._lock
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, report = job
            try:
                try:
                    value = fn(*args)
                except BaseException as exc:
                    report(None, exc)
                else:
                    report(value, None)
            except BaseException:
                # A report must not fail (each runtime's does not); if one
                # does, the thread lives on for the next job.
                log.exception("error while reporting a worker thread's result")
            finally:
                del job, fn, args, report
                with lock:
                    self._busy -= 1
                    # Ready for the next job: submit() counts on this thread.
                    self._idle += 1
                    if self._busy == 0:
                        lock.notify_all()


#: How long the interpreter's exit waits for calls still running.
EXIT_WAIT = 30.0


@atexit.register
def _wait_for_running_calls() -> None:
    """At exit, let calls already running finish (their threads are daemon
    threads: without this they would stop wherever they are)."""
    for pool in list(_pools):
        if not pool.wait_idle(EXIT_WAIT):  # pragma: no cover - a call stuck at exit
            log.warning("%s: calls still running at exit", pool.name)
