"""runc is started with posix_spawn and waited for through a pidfd: exit codes, signals,
and the time limit (the child is killed and reaped, never left behind)."""

import os
import shutil

from worker_launcher.privileged import spawn as launch


def start(*argv) -> int:
    program = shutil.which(argv[0])
    return os.posix_spawn(program, [program, *argv[1:]], {})


def test_exit_codes_and_signals():
    assert launch.wait_exit(start("true"), 10) == 0
    assert launch.wait_exit(start("sh", "-c", "exit 7"), 10) == 7
    assert launch.wait_exit(start("sh", "-c", "kill -9 $$"), 10) == -9


def test_time_limit_kills_and_reaps_the_child():
    pid = start("sleep", "30")
    assert launch.wait_exit(pid, 0.1) is None
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # already reaped: nothing is left behind
    else:
        raise AssertionError(f"child {pid} was not reaped")


def test_kernels_without_pidfd_poll_instead(monkeypatch):
    def no_pidfd(pid):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    assert launch.wait_exit(start("sh", "-c", "exit 3"), 10) == 3
    assert launch.wait_exit(start("sleep", "30"), 0.1) is None
