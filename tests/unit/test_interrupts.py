"""core.interrupts in-process: a cancel signal raises only inside a wait (or at the next
one), once, and never during an undo; a wait with a time limit ends with TimedOut, and its
timer never outlives it."""

import fcntl
import os
import signal
import time

import pytest

from worker_launcher.core import interrupts


@pytest.fixture(autouse=True)
def fresh_state():
    saved = {number: signal.getsignal(number)
             for number in interrupts.CANCEL_SIGNALS + (signal.SIGALRM,)}
    interrupts._state.update(pending=0, done=False, waiting=0, alarm=False)
    interrupts.install()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for number, handler in saved.items():
        signal.signal(number, handler)
    interrupts._state.update(pending=0, done=False, waiting=0, alarm=False)


def test_outside_a_wait_a_signal_is_only_recorded_until_the_next_checkpoint():
    os.kill(os.getpid(), signal.SIGTERM)
    assert interrupts.pending() == signal.SIGTERM  # no exception here
    with pytest.raises(interrupts.Cancelled) as caught:
        interrupts.checkpoint()
    assert caught.value.code == 128 + signal.SIGTERM and caught.value.outcome == "failed"
    assert caught.value.message == "cancelled by SIGTERM"
    interrupts.checkpoint()  # raised once only


def test_a_signal_ends_a_wait_at_once():
    read_end, write_end = os.pipe()
    signal.setitimer(signal.ITIMER_REAL, 0)
    start = time.monotonic()
    try:
        pid = os.fork()
        if pid == 0:
            time.sleep(0.2)
            os.kill(os.getppid(), signal.SIGHUP)
            os._exit(0)
        with pytest.raises(interrupts.Cancelled) as caught:
            with interrupts.waiting():
                os.read(read_end, 1)  # blocks until the signal
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert caught.value.number == signal.SIGHUP
    assert time.monotonic() - start < 5
    assert interrupts._state["waiting"] == 0


def test_a_wait_entered_with_a_pending_signal_does_not_start():
    os.kill(os.getpid(), signal.SIGINT)
    entered = []
    with pytest.raises(interrupts.Cancelled):
        with interrupts.waiting():
            entered.append(True)
    assert not entered


def test_during_an_undo_signals_are_only_recorded():
    interrupts.undoing()
    os.kill(os.getpid(), signal.SIGTERM)
    with interrupts.waiting(timeout=0.05):
        time.sleep(0.01)
    interrupts.checkpoint()
    assert interrupts.pending() == signal.SIGTERM


def test_a_wait_times_out_and_leaves_no_timer(tmp_path):
    lock = tmp_path / "lock"
    holder = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.lockf(holder, fcntl.LOCK_EX)
    pid = os.fork()
    if pid == 0:  # another process: POSIX locks of one process never conflict
        fd = os.open(lock, os.O_RDWR)
        try:
            interrupts.install()
            with interrupts.waiting(timeout=0.3):
                fcntl.lockf(fd, fcntl.LOCK_EX)
            os._exit(1)
        except interrupts.TimedOut:
            os._exit(0 if signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) else 2)
        except BaseException:
            os._exit(3)
    start = time.monotonic()
    _, status = os.waitpid(pid, 0)
    os.close(holder)
    assert os.waitstatus_to_exitcode(status) == 0
    assert 0.25 < time.monotonic() - start < 5


def test_a_wait_that_ends_in_time_disarms_its_timer():
    with interrupts.waiting(timeout=0.2):
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    time.sleep(0.3)  # no SIGALRM, or if one were pending it would be a no-op
    assert interrupts._state == {"pending": 0, "done": False, "waiting": 0, "alarm": False}
