"""Attacker: the supervisor account, through `signal`: pids of other users, of root, of the
supervisor itself, pid 1, and process groups that mix users. Only what the target user may
signal is ever signalled."""

import os
import pwd
import subprocess
import time

import pytest

from support.env import SUPERVISOR
from support.hostile import assert_refused
from support.env import USER


def _spawn(user: str, new_session: bool = True, preexec_fn=None):
    """`sleep` as `user`, in its own session (so its own process group) unless told not to."""
    entry = pwd.getpwnam(user)
    return subprocess.Popen(["sleep", "1000"], user=entry.pw_uid, group=entry.pw_gid,
                            extra_groups=[], start_new_session=new_session, cwd="/",
                            preexec_fn=preexec_fn)


@pytest.fixture
def procs():
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _still_running(*victims) -> bool:
    time.sleep(0.1)
    return all(proc.poll() is None for proc in victims)


@pytest.mark.parametrize("sig", ["9", "15", "0", "19"])
def test_pid_1_is_never_a_broadcast(launcher, procs, sig):
    """kill(-1, sig) would signal every process of the user: `signal 1` must mean pid 1."""
    own = _spawn(USER)
    procs.append(own)
    result = launcher.run(USER, "signal", "1", sig)
    assert_refused(result, {8})
    assert "process 1" in result.stderr
    assert _still_running(own)


@pytest.mark.parametrize("owner", ["root", SUPERVISOR, "wlbob"])
def test_other_owners_processes_and_groups(launcher, procs, owner):
    victim = _spawn(owner)
    procs.append(victim)
    for sig in ("9", "0"):
        assert_refused(launcher.run(USER, "signal", victim.pid, sig), {8})
    assert _still_running(victim)


def test_a_group_led_by_root_loses_only_the_users_members(launcher, procs):
    """A process group of root's with one of the user's processes in it: the user's member
    goes, root's leader stays (the kernel checks each member against the user)."""
    entry = pwd.getpwnam(USER)
    leader = subprocess.Popen(["python3", "-I", "-c", f"""
import os, time
pid = os.fork()
if pid == 0:
    os.setgroups([]); os.setgid({entry.pw_gid}); os.setuid({entry.pw_uid})
    print(os.getpid(), flush=True)
    time.sleep(1000)
time.sleep(1000)
"""], start_new_session=True, stdout=subprocess.PIPE, text=True)
    procs.append(leader)
    member = int(leader.stdout.readline())
    assert os.getpgid(member) == leader.pid and f"\t{entry.pw_uid}\t" in _status(member)["Uid"]
    result = launcher.run(USER, "signal", leader.pid, "9")
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 5
    while _status(member).get("State", "Z").split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)  # a zombie until its parent, root's leader, reaps it
    assert _status(member).get("State", "Z").split()[0] == "Z"
    assert _still_running(leader)


def _status(pid: int) -> dict:
    try:
        with open(f"/proc/{pid}/status") as status:
            return dict(line.split(":", 1) for line in status if ":" in line)
    except FileNotFoundError:
        return {}


def test_the_launchers_own_pid_range_and_kernel_threads(launcher):
    for pid in ("2", str(os.getpid()), "4194304", "2147483647"):
        result = launcher.run(USER, "signal", pid, "9")
        assert_refused(result, {8, 9})
    assert os.getpid()  # still here
