"""Attacker: the supervisor account, through job control. The root launcher must not be
stopped by keys on the caller's terminal (^Z), nor by SIGTSTP/SIGTTIN/SIGTTOU at all: it runs
in a session of its own with no controlling terminal. A caller that makes it a
process-group leader (as a job-control shell does) gets a stub that forks once; that
stub parent waits, passes on SIGTERM/SIGINT/SIGHUP/SIGQUIT and exits as the core did.

The launcher under test waits for the layer lock, which the test holds: a reap of an unknown
container does nothing else (no image needed)."""

import os
import signal
import subprocess
import time
import uuid

import pytest

from support.env import PYTHON, SUPERVISOR, USER
from support.hostile import start_as_supervisor, supervisor_file
from support.layerlock import LayerLock
from support.ptrace import state

LEADER = "os.setpgid(0, 0)\n"  # what a job-control shell makes of every command


def reap_args() -> list:
    return [USER, "reap-oci-container", f"6700-{uuid.uuid4()}", "1"]


def wait_for_state(pid: int, wanted: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = state(pid)
        if now in wanted:
            return now
        time.sleep(0.01)
    return state(pid)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def lock(launcher):
    held = LayerLock(launcher.run_root).hold()
    yield held
    held.close()


def probe_script(storm):
    """A worker script that prints its /proc stat line (pid, ppid, pgrp, session, tty) and
    exits 7: the exec'd worker is the process the launcher became."""
    return supervisor_file(storm.base / "session-probe.sh",
                           "#!/bin/sh\ncat /proc/$$/stat\nexit 7\n")


@pytest.mark.parametrize("leader", [False, True], ids=["member", "group-leader"])
def test_the_worker_runs_in_a_session_of_its_own(launcher, storm, leader):
    """Storm's JVM never makes the launcher a group leader: then the pid Storm holds is the
    worker's. A group leader gets a forked core; the stub waits and relays the exit code."""
    workdir = storm.workdir()
    started = start_as_supervisor(launcher, [USER, "worker", workdir, probe_script(storm)],
                                  LEADER if leader else "")
    out, err = started.communicate(timeout=60)
    assert started.returncode == 7, err
    fields = out.split(")")[-1].split()
    ppid, pgrp, session, tty = (int(value) for value in fields[1:5])
    pid = int(out.split()[0])
    assert (session, pgrp, tty) == (pid, pid, 0)  # a session leader without a terminal
    if leader:
        assert pid != started.pid and ppid == started.pid
    else:
        assert pid == started.pid


@pytest.mark.parametrize("leader", [False, True], ids=["member", "group-leader"])
def test_job_control_signals_are_ignored(launcher, lock, leader):
    started = start_as_supervisor(launcher, reap_args(), LEADER if leader else "")
    try:
        core = lock.wait_for_waiter()
        assert (parent_of(core) == started.pid) if leader else (core == started.pid)
        for number in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            for pid in {core, started.pid}:
                os.kill(pid, number)  # as root: the caller's own kill() cannot reach the core
        time.sleep(0.3)
        assert state(core) != "T" and state(started.pid) != "T"
        assert core in lock.waiters()
        lock.release()
        _, err = started.communicate(timeout=30)
        assert started.returncode == 0, err
    finally:
        if started.poll() is None:
            started.kill()
            started.wait()


def test_the_stub_parent_relays_death_by_signal(launcher, lock):
    started = start_as_supervisor(launcher, reap_args(), LEADER)
    core = lock.wait_for_waiter()
    os.kill(core, signal.SIGKILL)
    started.wait(timeout=10)
    assert started.returncode == -signal.SIGKILL


# The caller's terminal: a session led by `session` (root) on a pty; the launcher (as the
# supervisor) and `sleep` (the witness that shows the key arrived) form its foreground
# process group, which the launcher leads (group-leader) or only belongs to (member).
TERMINAL_SESSION = r"""
import fcntl, os, pwd, sys, termios
binary, mode, report, *args = sys.argv[1:]
report = int(report)
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
gate_read, gate_write = os.pipe()
supervisor = pwd.getpwnam(%r)
children = []
for role in ("launcher", "witness"):
    pid = os.fork()
    if pid == 0:
        os.close(gate_write)
        os.read(gate_read, 1)
        if role == "witness":
            os.execv("/bin/sleep", ["sleep", "60"])
        os.setgroups(os.getgrouplist(supervisor.pw_name, supervisor.pw_gid))
        os.setgid(supervisor.pw_gid)
        os.setuid(supervisor.pw_uid)
        os.execv(binary, [binary, *args])
    children.append(pid)
launcher, witness = children
group = launcher if mode == "group-leader" else witness
os.setpgid(group, group)
os.setpgid(launcher if group == witness else witness, group)
os.tcsetpgrp(0, group)
os.write(gate_write, b"go")
os.write(report, f"{launcher} {witness}\n".encode())
_, status = os.waitpid(launcher, 0)
os.write(report, f"{os.waitstatus_to_exitcode(status)}\n".encode())
""" % SUPERVISOR


class Terminal:
    def __init__(self, launcher, args, mode):
        self.master, slave = os.openpty()
        report_read, report_write = os.pipe()
        self.session = subprocess.Popen(
            [PYTHON, "-I", "-c", TERMINAL_SESSION, str(launcher.binary), mode,
             str(report_write), *args], stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, pass_fds=(report_write,))
        os.close(slave)
        os.close(report_write)
        self.report = os.fdopen(report_read)
        self.launcher, self.witness = map(int, self.report.readline().split())

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def exit_code(self) -> int:
        return int(self.report.readline())

    def output(self) -> str:
        os.set_blocking(self.master, False)
        try:
            return os.read(self.master, 65536).decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        for pid in (self.witness, self.launcher):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.session.wait(timeout=30)
        self.report.close()
        os.close(self.master)


@pytest.mark.parametrize("mode", ["member", "group-leader"])
def test_the_suspend_key_stops_nothing(launcher, lock, mode):
    terminal = Terminal(launcher, reap_args(), mode)
    try:
        core = lock.wait_for_waiter()
        terminal.press(b"\x1a")  # ^Z
        assert wait_for_state(terminal.witness, "T") == "T"  # the key reached the group
        assert state(core) != "T" and state(terminal.launcher) != "T"
        time.sleep(0.3)
        assert state(core) != "T" and core in lock.waiters()
        lock.release()
        assert terminal.exit_code() == 0, terminal.output()
    finally:
        terminal.close()


@pytest.mark.parametrize("mode", ["member", "group-leader"])
def test_the_interrupt_key_cancels_only_through_the_stub(launcher, lock, mode):
    """^C reaches the foreground group: the stub parent of a group leader passes it on and
    the call is cancelled (exit 130); a core that left the caller's session never sees it."""
    terminal = Terminal(launcher, reap_args(), mode)
    try:
        core = lock.wait_for_waiter()
        terminal.press(b"\x03")  # ^C
        assert wait_for_state(terminal.witness, "Z") == "Z"  # sleep died of it
        if mode == "group-leader":
            assert terminal.exit_code() == 130
            assert "worker-launcher: cancelled by SIGINT\r\n" in terminal.output()
        else:
            time.sleep(0.3)
            assert core in lock.waiters()
            lock.release()
            assert terminal.exit_code() == 0, terminal.output()
    finally:
        terminal.close()
