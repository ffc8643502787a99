"""A launch stopped or cancelled at the worst moments, for real (runc, squashfs layers):

- stopped while it holds the layer lock (as ^Z once could): another user's call waits at
  most the lock timeout, failing with one line naming the holder, or goes on as soon as the
  holder continues; the stopped launch, once continued, finishes, or undoes what it did;
- SIGTERM while it waits for the lock, while runc runs, or passed on by the stub parent
  the caller started: the launch is undone, nothing is left (mount, loop device, runc
  container, run-root entry) and runc and its helpers are killed and reaped."""

import os
import signal
import subprocess
import time

import pytest

from support.env import SUPERVISOR, USER
from support.hostile import assert_one_line, start_as_supervisor
from support.layerlock import LayerLock
from support.oci import loops_backed_by, mounted_under, runc_binary, runc_ids
from support.ptrace import state, stop_after_lock

UP = "echo up > $WORKDIR/up.out\nsleep 300\n"
LEADER = "os.setpgid(0, 0)\n"


def configure(oci, lock_timeout: int = 30, runc: str = None) -> None:
    """The storm fixture's config (its policy), a lock timeout and maybe another runc."""
    values = {"worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml"),
              "worker.launcher.oci.lock-timeout": str(lock_timeout)}
    if runc:
        values["worker.launcher.oci.runc"] = runc
    oci.launcher.write_config(values)


def start_launch(oci, worker, prelude: str = ""):
    """Storm's call: [L, user, run-oci-container, W, W/oci-config.json, W/artifacts]."""
    return start_as_supervisor(oci.launcher, [USER, "run-oci-container", worker.workdir,
                                              worker.write(), worker.workdir / "artifacts"],
                               prelude)


def assert_clean(oci, *workers) -> None:
    assert mounted_under(oci.run_root) == []
    assert loops_backed_by(oci.layers) == []
    assert not {w.container_id for w in workers} & runc_ids()
    for worker in workers:  # (the run root is the session's: other tests' entries may be there)
        assert not os.path.lexists(oci.run_root / worker.container_id)
    layers = oci.run_root / "layers"
    assert not layers.exists() or [name for name in os.listdir(layers) if len(name) == 64] == []


@pytest.fixture
def stopped_launch(oci):
    """A launch left stopped (SIGSTOP) right after it took the layer lock: the test holds
    the lock until the launch waits for it, then steps it (ptrace) to that point. Its own
    lock timeout (3 s) runs out while it is stopped. Yields (worker, Popen); the launch is
    continued and reaped afterwards whatever happened."""
    yield from _stopped_launch(oci)


@pytest.fixture
def stopped_launch_on_unused_layers(oci):
    """As stopped_launch, with the layers already mounted and used by nothing (an earlier
    worker reaped with keep 100): a reap with keep 0 then has layers to unmount, which needs
    the lock exclusive (the stopped launch holds it shared, to stand on them)."""
    configure(oci, lock_timeout=3)
    earlier = oci.new_worker(UP, port=6703)
    assert earlier.launch().returncode == 0
    assert earlier.reap(keep=100).returncode == 0
    assert len(loops_backed_by(oci.layers)) == len(oci.layers)
    yield from _stopped_launch(oci)


def _stopped_launch(oci):
    configure(oci, lock_timeout=3)
    worker = oci.new_worker(UP)
    lock = LayerLock(oci.run_root).hold()
    launch = start_launch(oci, worker)
    try:
        assert lock.wait_for_waiter() == launch.pid
        stop_after_lock(launch.pid, release=lock.release)
        assert state(launch.pid) == "T" and lock.holders() == {launch.pid}
        yield worker, launch
    finally:
        lock.close()
        if launch.poll() is None:
            os.kill(launch.pid, signal.SIGCONT)
            launch.communicate(timeout=120)
        worker.reap(keep=0)


def test_a_stopped_holder_blocks_another_users_call_only_until_the_timeout(
        oci, stopped_launch_on_unused_layers):
    worker, launch = stopped_launch_on_unused_layers
    started = time.monotonic()
    waiter = oci.launcher.run("wlbob", "reap-oci-container", f"6701-{worker.container_id[5:]}", 0)
    took = time.monotonic() - started
    assert waiter.returncode == 45, waiter.stderr
    assert_one_line(waiter.stderr)
    assert (f"timed out after 3 s waiting for the layer lock {oci.run_root}/layers/lock "
            f"(held by pid {launch.pid})") in waiter.stderr
    assert 3 <= took < 8
    os.kill(launch.pid, signal.SIGCONT)  # after its own lock timeout: but it holds the lock
    _, err = launch.communicate(timeout=120)
    assert launch.returncode == 0, err
    assert worker.wait_for("up.out") == "up\n"
    assert oci.launcher.run("wlbob", "reap-oci-container", f"6701-{worker.container_id[5:]}",
                            0).returncode == 0
    assert worker.reap(keep=0).returncode == 0
    assert_clean(oci, worker)


def test_a_waiter_goes_on_once_the_stopped_holder_continues(oci, stopped_launch):
    configure(oci, lock_timeout=60)
    worker, launch = stopped_launch
    other = oci.new_worker(UP, port=6702)
    waiting = start_launch(oci, other)
    deadline = time.monotonic() + 20
    while waiting.pid not in LayerLock(oci.run_root).waiters() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1)
    assert waiting.poll() is None  # still waiting, not refused
    os.kill(launch.pid, signal.SIGCONT)
    for process in (launch, waiting):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    for each in (worker, other):
        assert each.wait_for("up.out") == "up\n"
        assert each.reap(keep=0).returncode == 0
    assert_clean(oci, worker, other)


def test_a_stopped_holder_cancelled_undoes_what_it_did(oci, stopped_launch):
    """SIGTERM to the stopped launch, then SIGCONT: it is half-way through mounting its
    layers; the signal is acted on at its next wait (before runc starts) and every layer
    it mounted is unmounted again."""
    worker, launch = stopped_launch
    os.kill(launch.pid, signal.SIGTERM)
    os.kill(launch.pid, signal.SIGCONT)
    _, err = launch.communicate(timeout=120)
    assert launch.returncode == 128 + signal.SIGTERM
    assert_one_line(err)
    assert "cancelled by SIGTERM" in err
    assert not (worker.workdir / "up.out").exists()
    assert_clean(oci, worker)


def test_sigterm_while_waiting_for_the_lock(oci):
    worker = oci.new_worker(UP)
    lock = LayerLock(oci.run_root).hold()
    try:
        launch = start_launch(oci, worker)
        assert lock.wait_for_waiter() == launch.pid
        started = time.monotonic()
        os.kill(launch.pid, signal.SIGTERM)
        _, err = launch.communicate(timeout=30)
        assert time.monotonic() - started < 5
    finally:
        lock.close()
    assert launch.returncode == 128 + signal.SIGTERM, err
    assert_one_line(err)
    assert_clean(oci, worker)


def slow_runc(oci) -> str:
    """runc whose `run` really starts the container, then hangs: the launcher is left
    waiting for it with a running container, mounts and loop devices behind it."""
    path = oci.launcher.prefix / "bin" / "slow-runc"
    path.write_text("#!/bin/sh\n"
                    f'{runc_binary()} "$@" || exit $?\n'
                    'case "$1" in run) sleep 300 & wait;; esac\n')
    os.chmod(path, 0o755)
    return str(path)


def helpers_of(pid: int) -> list:
    """The pids whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


@pytest.mark.parametrize("sender", ["root", "caller-through-stub"])
def test_sigterm_during_runc_run_undoes_the_launch(oci, sender):
    """`root` signals the launcher itself (after it took root, nobody else can); the caller
    that made the launcher a group leader signals the stub parent it started, which passes
    the signal on: Storm's Process.destroy() then cancels the launch."""
    configure(oci, runc=slow_runc(oci))
    worker = oci.new_worker(UP)
    launch = start_launch(oci, worker, LEADER if sender != "root" else "")
    try:
        assert worker.wait_for("up.out", timeout=60) == "up\n"  # runc started it; still waits
        assert worker.container_id in runc_ids()
        core = launch.pid if sender == "root" else helpers_of(launch.pid)[0]
        runc_wrapper = helpers_of(core)
        assert len(runc_wrapper) == 1
        sleeper = helpers_of(runc_wrapper[0])
        if sender == "root":
            os.kill(core, signal.SIGTERM)
        else:  # as the caller: the stub parent still has the caller's real uid
            subprocess.run(["kill", "-TERM", str(launch.pid)], user=SUPERVISOR, check=True)
        _, err = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    assert launch.returncode == 128 + signal.SIGTERM, err
    assert_one_line(err)
    assert "cancelled by SIGTERM" in err
    assert not os.path.exists(f"/proc/{runc_wrapper[0]}")  # killed and reaped
    for pid in sleeper:  # what runc left in its process group: killed (init reaps it)
        assert not os.path.exists(f"/proc/{pid}") or state(pid) == "Z"
    assert_clean(oci, worker)
