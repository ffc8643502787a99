"""Docker staging in the run root, as on kernels before Linux 6.15: the launcher runs under a
seccomp filter that fails fsopen(2) with ENOSYS, so it cannot build its detached tree. The
bind sources are then pinned by bind mounts in <run root>/docker/<id>.staging, detached
once the container started; a launch killed meanwhile has them released by its guard
process the moment it dies (and the next docker call completes the launch)."""

import os
import random
import subprocess
import time

from support import nosyscall
from support.docker import docker, docker_clients, lines, staged_mounts, wait_line

USER = "wlalice"
KILLS = int(os.environ.get("WL_DOCKER_FALLBACK_KILLS", "6"))


def _start(dstorm, verb, workdir, command) -> subprocess.Popen:
    return subprocess.Popen(
        nosyscall.argv(nosyscall.FSOPEN, dstorm.launcher.binary, USER, verb, workdir, command),
        env={"PATH": "/usr/bin:/bin"}, cwd=str(workdir), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def test_staging_in_the_run_root_without_detached_mounts(dstorm):
    wid, workdir = dstorm.worker()
    command = dstorm.write_file(workdir / "docker-run.sh", dstorm.storm_run_line(wid))
    out, err = _start(dstorm, "launch-docker-container", workdir, command).communicate(timeout=120)
    assert out.strip() and (workdir / "container.cid").read_text() == out.strip(), err
    assert lines(dstorm.wait_for(workdir / "probe.out"))["mkdir"] == "denied"
    sources = docker("inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}", wid).stdout
    staging = f"{dstorm.launcher.run_root}/docker/{wid}.staging/"
    assert sources.split() and all(s.startswith(staging) for s in sources.split()), sources
    assert staged_mounts(dstorm.launcher.run_root) == []
    assert os.listdir(dstorm.launcher.run_root / "docker") == []


def test_killed_launches_staged_in_the_run_root_leave_nothing(dstorm):
    rng, docker_dir = random.Random(), dstorm.launcher.run_root / "docker"
    left_after_kill = 0
    for _ in range(KILLS):
        wid, workdir = dstorm.worker()
        command = dstorm.write_file(workdir / "docker-run.sh", dstorm.storm_run_line(wid))
        process = _start(dstorm, "launch-docker-container", workdir, command)
        time.sleep(rng.uniform(0.05, 0.4))
        process.kill()
        process.communicate()
        deadline = time.monotonic() + 60
        while docker_clients(wid) and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 10  # the guard releases the staging once we died
        while staged_mounts(dstorm.launcher.run_root) and time.monotonic() < deadline:
            time.sleep(0.05)
        left_after_kill += bool(staged_mounts(dstorm.launcher.run_root))
        state = dstorm.state(wid)
        waiter = _start(dstorm, "run-docker-cmd", workdir,
                        dstorm.write_file(workdir / "docker-wait.sh", wait_line(wid)))
        try:
            deadline = time.monotonic() + 30
            while os.listdir(docker_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert os.listdir(docker_dir) == [] and staged_mounts(dstorm.launcher.run_root) == []
            if state:
                assert (workdir / "container.cid").read_text() == state[0]
        finally:
            docker("rm", "-f", wid, check=False)
            waiter.communicate(timeout=60)
    assert left_after_kill == 0, f"{left_after_kill} of {KILLS} killed launches left mounts"
