"""The worker threads that run the asyncio and trio servers' blocking calls."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

import pytest

from pop3proto.adapters._seam import Call
from pop3proto.adapters.server._threads import ThreadPool

Outcome = tuple[Any, "BaseException | None", str]


def reporter() -> tuple[queue.SimpleQueue[Outcome], Any]:
    """A report that records (value, error, thread name)."""
    got: queue.SimpleQueue[Outcome] = queue.SimpleQueue()

    def report(value: Any, error: BaseException | None) -> None:
        got.put((value, error, threading.current_thread().name))

    return got, report


def test_a_call_runs_in_a_named_worker_thread_and_reports_its_value() -> None:
    pool = ThreadPool(2, name="tw")
    got, report = reporter()
    pool.submit(pow, (2, 10), report)
    value, error, thread = got.get(timeout=10)
    assert (value, error) == (1024, None)
    assert thread == "tw-1" != threading.current_thread().name
    pool.shutdown()


def test_an_exception_is_reported_not_raised() -> None:
    pool = ThreadPool(1)
    got, report = reporter()
    pool.submit(int, ("x",), report)
    value, error, _ = got.get(timeout=10)
    assert value is None and isinstance(error, ValueError)
    # The thread survives it.
    pool.submit(int, ("7",), report)
    assert got.get(timeout=10)[0] == 7
    pool.shutdown()


def test_sequential_calls_reuse_one_thread() -> None:
    pool = ThreadPool(4)
    got, report = reporter()
    names = set()
    for i in range(20):
        pool.submit(abs, (-i,), report)
        value, _, name = got.get(timeout=10)
        assert value == i
        names.add(name)
        assert pool.wait_idle(10)
    assert len(names) == 1
    pool.shutdown()


def test_no_more_than_size_calls_run_at_once_and_all_of_them_run() -> None:
    size = 3
    pool = ThreadPool(size)
    got, report = reporter()
    gate = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, most

    def blocked(i: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        gate.wait(10)
        with lock:
            running[0] -= 1
        return i

    for i in range(10):
        pool.submit(blocked, (i,), report)
    # Wait until every thread holds a call, then let them all go.
    for _ in range(1000):
        with lock:
            if running[0] == size:
                break
        threading.Event().wait(0.01)
    gate.set()
    values = sorted(got.get(timeout=10)[0] for _ in range(10))
    assert values == list(range(10))
    assert running[1] == size
    names = {t.name for t in threading.enumerate() if t.name.startswith("pop3proto-worker-")}
    assert len(names) >= size
    pool.shutdown()


def test_shutdown_lets_queued_calls_finish_then_refuses_more() -> None:
    pool = ThreadPool(1, name="shut")
    got, report = reporter()
    gate = threading.Event()
    pool.submit(gate.wait, (10,), report)
    pool.submit(abs, (-5,), report)
    pool.shutdown()
    pool.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(abs, (1,), report)
    gate.set()
    assert got.get(timeout=10)[0] is True
    assert got.get(timeout=10)[0] == 5
    for thread in threading.enumerate():
        if thread.name.startswith("shut-"):
            thread.join(10)
            assert not thread.is_alive()


def test_a_report_that_raises_is_logged_and_the_thread_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = ThreadPool(1)

    def broken(value: Any, error: BaseException | None) -> None:
        raise RuntimeError("report failed")

    with caplog.at_level(logging.ERROR, logger="pop3proto.server"):
        pool.submit(abs, (1,), broken)
        got, report = reporter()
        pool.submit(abs, (-2,), report)
        assert got.get(timeout=10)[0] == 2
    assert "error while reporting a worker thread's result" in caplog.text
    pool.shutdown()


def test_wait_idle_waits_for_the_running_call() -> None:
    pool = ThreadPool(1)
    _, report = reporter()
    gate = threading.Event()
    pool.submit(gate.wait, (10,), report)
    assert not pool.wait_idle(0.05)
    gate.set()
    assert pool.wait_idle(10)
    pool.shutdown()


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ThreadPool(0)


class Released:
    def __init__(self) -> None:
        self.values: list[Any] = []
        self.done = threading.Event()

    def __call__(self, value: Any) -> None:
        self.values.append((value, threading.current_thread().name))
        self.done.set()


@pytest.mark.parametrize("shut", [False, True])
def test_asyncio_an_abandoned_calls_value_is_discarded(shut: bool) -> None:
    """asyncio: a value that comes back for a cancelled session is released,
    in a worker thread while the pool runs, on the loop once it is shut down."""
    from pop3proto.adapters.server._asyncio import _settle

    pool = ThreadPool(1, name="discard")
    if shut:
        pool.shutdown()
    discard = Released()

    async def main() -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        _settle(future, Call(abs, (1,), discard), pool, "maildrop", None)
        # An error has nothing to release.
        _settle(future, Call(abs, (1,), discard), pool, None, OSError("x"))

    asyncio.run(main())
    assert discard.done.wait(10)
    pool.wait_idle(10)
    [(value, thread)] = discard.values
    assert value == "maildrop"
    assert thread.startswith("discard-") is not shut
    pool.shutdown()


def test_asyncio_a_value_that_comes_back_to_a_closed_loop_is_discarded() -> None:
    """The worker's report finds the loop closed: it releases the value itself."""
    from pop3proto.adapters.mailstore._memory import MemoryBackend
    from pop3proto.adapters.mailstore._users import DictAuthenticator
    from pop3proto.adapters.server._asyncio import Server

    discard = Released()
    gate = threading.Event()
    server = Server(MemoryBackend(), DictAuthenticator({}))

    async def main() -> None:
        task = asyncio.ensure_future(server._perform(Call(gate.wait, (10,), discard)))
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(main())  # closes the loop while the call still runs
    gate.set()
    assert discard.done.wait(10)
    assert discard.values[0][0] is True
    assert server._pool is not None
    server._pool.shutdown()


def test_the_interpreter_exit_waits_for_a_running_call(tmp_path: Any) -> None:
    """Worker threads are daemon threads, yet a call running at exit (a
    commit half done) finishes before the process ends."""
    import subprocess
    import sys
    import textwrap

    done = tmp_path / "done"
    script = textwrap.dedent(
        f"""
        import threading, time
        from pop3proto.adapters.server._threads import ThreadPool
        started = threading.Event()
        def commit():
            started.set()
            time.sleep(0.3)
            open({str(done)!r}, "w").close()
        pool = ThreadPool(1)
        pool.submit(commit, (), lambda value, error: None)
        started.wait(10)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert done.exists()


def test_the_exit_hook_returns_at_once_when_nothing_runs() -> None:
    from pop3proto.adapters.server import _threads

    pool = ThreadPool(1)
    got, report = reporter()
    pool.submit(abs, (1,), report)
    got.get(timeout=10)
    assert pool in set(_threads._pools)
    _threads._wait_for_running_calls()  # (would hang EXIT_WAIT if it waited)
    pool.shutdown()


def test_the_interpreter_exit_waits_for_a_queued_call_too(tmp_path: Any) -> None:
    """A call still waiting for a free thread at exit (a commit behind a
    slow password check) runs before the process ends."""
    import subprocess
    import sys
    import textwrap

    done = tmp_path / "done"
    script = textwrap.dedent(
        f"""
        import threading, time
        from pop3proto.adapters.server._threads import ThreadPool
        started = threading.Event()
        def slow():
            started.set()
            time.sleep(0.3)
        def commit():
            time.sleep(0.3)
            open({str(done)!r}, "w").close()
        pool = ThreadPool(1)
        pool.submit(slow, (), lambda value, error: None)
        pool.submit(commit, (), lambda value, error: None)
        started.wait(10)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert done.exists()
