"""signal, run for real as the supervisor account against real processes."""

import os
import pwd
import signal
import subprocess
import time

import pytest

from support.env import USER


def _spawn(user, script, new_session=True):
    """`sh -c script` as `user`; its first output line is read back (a pid it reports)."""
    entry = pwd.getpwnam(user)
    proc = subprocess.Popen(["/bin/sh", "-c", script], user=entry.pw_uid, group=entry.pw_gid,
                            extra_groups=[], start_new_session=new_session, cwd="/",
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def reaper():
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_signal_reaches_the_whole_process_group(launcher, reaper):
    proc, child = _spawn(USER, "sleep 1000 & echo $!; wait")
    reaper.append(proc)
    result = launcher.run(USER, "signal", proc.pid, signal.SIGTERM)
    assert result.returncode == 0, result.stderr
    assert proc.wait(timeout=5) == -signal.SIGTERM
    assert _wait_gone(int(child))  # the group member too


def test_signal_to_a_lone_process(launcher, reaper):
    # the sleep is not a group leader: only it gets the signal, its shell keeps waiting
    proc, child = _spawn(USER, "sleep 1000 & echo $!; sleep 1001 & wait")
    reaper.append(proc)
    result = launcher.run(USER, "signal", child, signal.SIGKILL)
    assert result.returncode == 0, result.stderr
    assert _wait_gone(int(child))
    assert proc.poll() is None and _alive(proc.pid)


def test_signal_zero_probes_liveness(launcher, reaper):
    proc, _ = _spawn(USER, "echo; exec sleep 1000")
    reaper.append(proc)
    assert launcher.run(USER, "signal", proc.pid, 0).returncode == 0
    assert proc.poll() is None
    proc.kill()
    proc.wait()
    assert launcher.run(USER, "signal", proc.pid, 0).returncode == 9


def test_dead_pid_exits_9(launcher):
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    result = launcher.run(USER, "signal", proc.pid, signal.SIGTERM)
    assert result.returncode == 9, result.stderr


@pytest.mark.parametrize("owner", ["wlbob", "root"])
def test_other_users_process_is_refused_by_the_kernel(launcher, reaper, owner):
    proc, child = _spawn(owner, "sleep 1000 & echo $!; wait")
    reaper.append(proc)
    for target in (proc.pid, child):
        result = launcher.run(USER, "signal", target, signal.SIGKILL)
        assert result.returncode == 8, result.stderr
        assert result.stderr.startswith("worker-launcher: cannot signal")
        assert "Operation not permitted" in result.stderr
    assert proc.poll() is None and _alive(int(child))


@pytest.mark.parametrize("pid", ["0", "-1", "-12345", "99999999999"])
def test_pid_not_positive_exits_9(launcher, pid):
    assert launcher.run(USER, "signal", pid, 0).returncode == 9


@pytest.mark.parametrize("pid, sig", [("abc", "15"), ("1_000", "15"), ("12x", "15"), ("", "15"),
                                      ("1", "TERM"), ("1", ""), ("1", "1.5")])
def test_non_numeric_arguments_exit_1(launcher, pid, sig):
    result = launcher.run(USER, "signal", pid, sig)
    assert result.returncode == 1, result.stderr
    assert "illegal argument" in result.stderr


def test_invalid_signal_number_exits_8(launcher, reaper):
    proc, _ = _spawn(USER, "echo; sleep 1000")
    reaper.append(proc)
    assert launcher.run(USER, "signal", proc.pid, 999).returncode == 8
    assert proc.poll() is None
