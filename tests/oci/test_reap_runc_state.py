"""reap-oci-container without starting runc when runc's own state shows the container
stopped (oci/runc_state.py), and with `runc delete --force` in every other case. runc is
the real one behind a wrapper that records each call."""

import os
import subprocess
import time
from pathlib import Path

from support.oci import assert_nothing_left, cgroup_dirs, runc_binary, runc_ids

UP = "echo up > $WORKDIR/up.out\nsleep 300\n"
STATE_ROOT = Path("/run/runc")


def recording_runc(oci) -> Path:
    """runc that appends its arguments to a log, then is the real runc."""
    log = oci.launcher.prefix / "runc-calls.log"
    log.write_text("")
    path = oci.launcher.prefix / "bin" / "recording-runc"
    path.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {runc_binary()} "$@"\n')
    os.chmod(path, 0o755)
    oci.launcher.write_config({
        "worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml"),
        "worker.launcher.oci.runc": str(path)})
    return log


def calls(log: Path, verb: str) -> list:
    return [line for line in log.read_text().splitlines() if line.split()[:1] == [verb]]


def launched(oci, log):
    worker = oci.new_worker(UP)
    result = worker.launch()
    assert result.returncode == 0, result.stderr
    worker.wait_for("up.out")
    assert len(calls(log, "run")) == 1
    return worker, int(worker.pid_file.read_text())


def stop(pid: int) -> None:
    """SIGKILL the worker's init (its pid namespace dies with it) and wait until it is gone
    or a zombie (runc's "stopped")."""
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not exit")


def test_a_stopped_worker_is_reaped_without_runc(oci):
    log = recording_runc(oci)
    worker, pid = launched(oci, log)
    stop(pid)
    assert (STATE_ROOT / worker.container_id / "state.json").exists()  # runc still has it
    result = worker.reap(keep=0)
    assert result.returncode == 0, result.stderr
    assert calls(log, "delete") == []
    assert not (STATE_ROOT / worker.container_id).exists()
    assert worker.container_id not in runc_ids()
    assert_nothing_left(oci, worker)
    assert worker.reap(keep=0).returncode == 0  # runc has no state for it now: no runc either
    assert calls(log, "delete") == []


def test_a_running_worker_is_reaped_by_runc(oci):
    log = recording_runc(oci)
    worker, pid = launched(oci, log)
    result = worker.reap(keep=0)
    assert result.returncode == 0, result.stderr
    assert calls(log, "delete") == [f"delete --force {worker.container_id}"]
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert_nothing_left(oci, worker)


def test_a_process_left_in_the_cgroup_is_left_to_runc(oci):
    """A process in the container's cgroup (one the container did not start: put there by
    root) means the container is not simply stopped: runc is asked, and the reap reports the
    cgroup it could not remove instead of forgetting the container."""
    log = recording_runc(oci)
    worker, pid = launched(oci, log)
    stop(pid)
    (memory,) = [path for path in cgroup_dirs(worker.container_id) if "/memory/" in str(path)]
    stray = subprocess.Popen(["sleep", "300"])
    try:
        (Path(memory) / "cgroup.procs").write_text(str(stray.pid))
        result = worker.reap(keep=0)
        assert calls(log, "delete") == [f"delete --force {worker.container_id}"]
        assert result.returncode == 45 and "cgroup" in result.stderr, result.stderr
    finally:
        stray.kill()
        stray.wait()
    assert worker.reap(keep=0).returncode == 0
    assert_nothing_left(oci, worker)


def test_a_state_directory_without_state_is_left_to_runc(oci):
    """What an aborted runc start leaves (a directory, no state.json): runc delete removes it."""
    log = recording_runc(oci)
    worker = oci.new_worker(UP)
    directory = STATE_ROOT / worker.container_id
    directory.mkdir(mode=0o711, parents=True)
    try:
        result = worker.reap(keep=0)
        assert result.returncode == 0, result.stderr
        assert calls(log, "delete") == [f"delete --force {worker.container_id}"]
        assert not directory.exists()
    finally:
        if directory.exists():
            directory.rmdir()
