"""Docker launches killed with SIGKILL at random points (issue 14): nothing staged outlives
the launcher, and the container id reaches the user's cid file whenever a container exists.

Every second of WL_DOCKER_KILL_TRIALS (50) Storm launches is killed at a random moment of a
launch's duration. Right after each kill (and after the docker clients it started have
ended): no mount of the launch on the host and no staging entry in the run root. Then
Storm's next call for that worker (`run-docker-cmd <wd> <wd>/docker-wait.sh`): after it,
the run root's docker directory is empty, a container that exists has its full id in
<wd>/container.cid, and a container that never ran is gone. The figures are printed.
"""

import os
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

from support.docker import docker, docker_clients, staged_mounts, wait_line
from support.env import SUPERVISOR, gid_of_group, uid_of

USER = "wlalice"
TRIALS = int(os.environ.get("WL_DOCKER_KILL_TRIALS", "50"))


def _start(launcher, verb: str, workdir: Path, command: Path) -> subprocess.Popen:
    """The launcher as Storm starts it: as the supervisor, in the worker's directory."""
    return subprocess.Popen(
        [str(launcher.binary), USER, verb, str(workdir), str(command)],
        user=uid_of(SUPERVISOR), group=gid_of_group(),
        extra_groups=os.getgrouplist(SUPERVISOR, gid_of_group()),
        env={"PATH": "/usr/bin:/bin"}, cwd=str(workdir), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} after {timeout} s")


def _host_mounts_of(base: Path) -> list:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(base) in line]


def test_docker_launches_killed_at_random_points(dstorm):
    seed = int(os.environ.get("WL_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    run_root, docker_dir = dstorm.launcher.run_root, dstorm.launcher.run_root / "docker"
    figures, durations = Counter(), []
    for trial in range(TRIALS):
        wid, workdir = dstorm.worker()
        command = dstorm.write_file(workdir / "docker-run.sh", dstorm.storm_run_line(wid))
        began = time.monotonic()
        process = _start(dstorm.launcher, "launch-docker-container", workdir, command)
        if trial % 2 == 0:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            durations.append(time.monotonic() - began)
            assert (workdir / "container.cid").read_text() == out.strip()
            assert os.listdir(docker_dir) == [] and staged_mounts(run_root) == []
            figures["completed"] += 1
        else:
            delay = rng.uniform(0, max(durations))  # anywhere in a launch, or just after
            time.sleep(delay)
            process.kill()
            process.communicate()
            figures["killed"] += 1
            _until(lambda: not docker_clients(wid), 60, "docker clients still running")
            # Nothing staged outlives the launcher: no mount, no staging entry.
            assert _host_mounts_of(dstorm.base) == [] and staged_mounts(run_root) == []
            left = os.listdir(docker_dir)
            assert all(name == wid for name in left), (delay, left)
            figures["pending record left for the next call"] += bool(left)
            state = dstorm.state(wid)
            figures[f"container {state[1] if state else 'none'} after the kill"] += 1
            cidfile = workdir / "container.cid"
            figures["container with its cid file right after the kill"] += (
                bool(state) and cidfile.exists())
            if state and state[1] != "created":  # it ran: its cid file was there first
                assert cidfile.read_text() == state[0], (delay, state)
            # Storm's next call for the worker: docker-wait (it blocks while the container runs).
            waiter = _start(dstorm.launcher, "run-docker-cmd", workdir,
                            dstorm.write_file(workdir / "docker-wait.sh", wait_line(wid)))
            try:
                _until(lambda: not os.listdir(docker_dir), 30, "a pending record stays")
                if state:
                    assert cidfile.read_text() == state[0], (delay, state)
                    figures["container with its cid file after the next call"] += 1
                if state and state[1] == "created":
                    _until(lambda: not dstorm.exists(wid), 30, "a container that never ran stays")
                    figures["container that never ran, removed by the next call"] += 1
                elif state:
                    assert dstorm.state(wid)[1] in ("running", "exited"), (delay, state)
            finally:
                docker("rm", "-f", wid, check=False)
                waiter.communicate(timeout=60)
        docker("rm", "-f", wid, check=False)
    assert os.listdir(docker_dir) == [] and staged_mounts(run_root) == []
    assert _host_mounts_of(dstorm.base) == []
    print(f"\nkill -9 trials (seed {seed}, launches {min(durations):.2f}-{max(durations):.2f} s): "
          + "; ".join(f"{key}: {value}" for key, value in sorted(figures.items())))


def test_the_next_call_waits_for_the_docker_client_of_a_killed_launch(dstorm):
    """The launcher is killed while its `docker create` is still on its way (a wrapper holds
    it back 2 s): Storm's next call does not settle the launch before that client is done
    (the client holds the record's lock), so the container it creates is found: its id goes
    to the cid file and, as it never ran, it is removed."""
    wrapper = dstorm.launcher.prefix / "bin" / "docker-slow-create"
    real = dstorm.launcher.base_config["docker.binary"]
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = create ] && sleep 2\nexec {real} "$@"\n')
    os.chmod(wrapper, 0o755)
    dstorm.launcher.write_config({"worker.launcher.policy": str(dstorm.policy),
                                  "docker.binary": str(wrapper)})
    wid, workdir = dstorm.worker()
    command = dstorm.write_file(workdir / "docker-run.sh", dstorm.storm_run_line(wid))
    process = _start(dstorm.launcher, "launch-docker-container", workdir, command)
    _until(lambda: docker_clients(wid), 10, "no docker client started")
    process.kill()
    process.wait()  # not communicate(): the docker client still holds our stderr pipe
    assert docker_clients(wid) and dstorm.state(wid) is None  # create still on its way
    waiter = _start(dstorm.launcher, "run-docker-cmd", workdir,
                    dstorm.write_file(workdir / "docker-wait.sh", wait_line(wid)))
    try:
        out, err = waiter.communicate(timeout=60)
    finally:
        docker("rm", "-f", wid, check=False)
        process.communicate(timeout=60)
    assert not docker_clients(wid)
    assert os.listdir(dstorm.launcher.run_root / "docker") == []
    assert len((workdir / "container.cid").read_text()) == 64
    assert not dstorm.exists(wid)  # it never ran: removed; docker wait found no container
    assert waiter.returncode == 1 and "No such container" in err, err
