"""One worker's whole life under DockerManager, replayed against the installed setuid
launcher with Storm's exact command files (support.stormreq) and the supervisor's call
order (Slot: launch, wait in the background, profile, ps/stop/rm, ps, cleanUp), on a real
dockerd. Every step's outcome is checked; all failed checks are listed at the end.
"""

import subprocess
import time
from pathlib import Path

import pytest

from support import stormreq as req
from support.dockerd import docker
from support.env import SUPERVISOR
from support.stormlife import Life, Variant, cgroup_dirs_named, forced_cleanup

VARIANTS = [
    Variant("policy-memory-seccomp", "docker", policy=True, memory=True, seccomp=True,
            cgroup_parent="wltest-storm"),
    # Without a policy the launcher knows none of storm.yaml: Storm's defaults (cgroup
    # parent /storm) are what a drop-in replacement must accept.
    Variant("no-policy-memory-seccomp", "docker", policy=False, memory=True, seccomp=True,
            cgroup_parent="/storm"),
    Variant("policy-defaults", "docker", policy=True, memory=False, seccomp=False),
    Variant("no-policy-defaults", "docker", policy=False, memory=False, seccomp=False,
            cgroup_parent="/storm"),
]


def storm_ids(user: str) -> tuple:
    """DockerManager.getUserIdInfo / getGroupIdInfo: `id --user`, `id --groups`, trimmed
    and split on " ", run by the supervisor."""
    def run(flag):
        return subprocess.run(["id", flag, user], check=True, capture_output=True, text=True,
                              user=SUPERVISOR).stdout.strip()
    return run("--user"), run("--groups").split(" ")


def write_command(life, tag: str, text: str = None) -> None:
    """OciContainerManager.writeToCommandFile: <workdir>/<tag>.sh, no newline."""
    text = text if text is not None else req.docker_command(life.worker, tag)
    path = req.command_file_path(req.java_file(life.workdir), tag)
    life.supervisor.files([req.Op("write", path, text)])


def ps(life, container_id):
    """DockerManager.areAllProcessesDead, negated: docker-ps through the launcher, exit 0
    required, the merged output's last line a prefix of the cid file's id."""
    write_command(life, "docker-ps")
    step = life.call(req.docker_cmd_call(life.conf, life.worker, "docker-ps"))
    return step.code == 0 and req.docker_alive(step.output, container_id or "")


def launch(life):
    """DockerManager.launchWorkerProcess: the script, docker-run.sh, launch-docker-container,
    then docker-wait in the background; the container id from the cid file, read by the
    supervisor (getContainerId)."""
    conf, worker, sup = life.conf, life.worker, life.supervisor
    life.write_worker_script(on_term="exit")  # the JVM's shutdown hook: exit on SIGTERM
    uid, groups = storm_ids(worker.user)
    command = req.docker_run_command(conf, worker, uid, groups)
    write_command(life, "docker-run", command)
    step = life.call(req.docker_launch_call(conf, worker))
    write_command(life, "docker-wait")
    waiter = sup.start(req.docker_cmd_call(conf, worker, "docker-wait"))
    if step.code != 0:
        return command, waiter, None
    cidfile = req.java_file(life.workdir) + "/container.cid"
    if not life.check(sup.exists(cidfile), "the cid file Storm reads exists", cidfile):
        return command, waiter, None
    cid = sup.read(cidfile).decode().split("\n")[0]
    full = docker("inspect", "--format", "{{.Id}}", worker.worker_id, check=False).stdout.strip()
    life.check(cid == full, "the cid file holds the container's id", (cid, full))
    return command, waiter, cid


def container_cgroup(conf, cid: str):
    """Where dockerd's cgroupfs driver puts the container: <--cgroup-parent>/<id> (Storm's
    getMemoryUsage assumes it). None under the systemd driver, which names it otherwise."""
    driver = docker("info", "--format", "{{.CgroupDriver}}", check=False).stdout.strip()
    return conf.cgroup_parent() + "/" + cid if driver == "cgroupfs" else None


def binds(command: str) -> list:
    """(destination, writable) of the -v options of a docker-run command line."""
    tokens = command.split(" ")
    found = []
    for index, token in enumerate(tokens):
        if token == "-v":
            parts = tokens[index + 1].split(":")
            found.append((parts[1], len(parts) == 2))
    return found


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_docker_worker_lifetime(launcher, replay_image, replay_dockerd, variant):
    life = Life(launcher, variant, replay_image, port=6710 + VARIANTS.index(variant))
    conf, worker = life.conf, life.worker
    waiter = cid = None
    try:
        life.localize_topology()
        life.container_setup()
        command, waiter, cid = launch(life)
        if cid:
            host_pid = int(docker("inspect", "--format", "{{.State.Pid}}", cid).stdout)
            seen = life.probe()
            cgroup = container_cgroup(conf, cid)
            life.check_worker(seen, host_pid, cgroup)
            if seen:
                life.check_mounts(binds(command))
            if cgroup and Path("/sys/fs/cgroup/memory").is_dir():  # v1: what Storm reads
                usage = Path(conf.memory_cgroup_root(), cid, "memory.usage_in_bytes")
                life.check(usage.exists(), "DockerManager.getMemoryUsage's path exists", usage)
            for action in ("jstack", "start"):
                life.profile(lambda: req.profile_docker_call(conf, worker), action)
            # Slot.killContainerFor: alive -> kill (stop, rm), sleep; handleKill: ps ...
            life.check(ps(life, cid), "docker-ps: the running worker is alive")
            write_command(life, "docker-stop")
            life.call(req.docker_cmd_call(conf, worker, "docker-stop"))
            write_command(life, "docker-rm")
            life.call(req.docker_cmd_call(conf, worker, "docker-rm"))
            time.sleep(conf.get("supervisor.worker.shutdown.sleep.secs"))
            if ps(life, cid):  # handleKill: forceKill while not dead
                write_command(life, "docker-force-rm")
                life.call(req.docker_cmd_call(conf, worker, "docker-force-rm"))
            life.check(not ps(life, cid), "docker-ps: the worker is dead after stop and rm")
            life.check(Path(life.artifacts, f"signals-{worker.worker_id}.txt").exists(),
                       "docker stop sent SIGTERM (the worker's trap ran)")
            wait = waiter.wait(30)
            life.check(wait.code == 0 and wait.output.strip().split("\n")[-1] == "143",
                       "docker-wait returned the worker's exit status 143 (SIGTERM)",
                       (wait.code, wait.output[-200:]))
            life.check(docker("ps", "-a", "-q", "--filter", f"name={worker.worker_id}")
                       .stdout.strip() == "", "no docker container is left")
            if cgroup:
                life.check(cgroup_dirs_named(cgroup) == [], f"the cgroup {cgroup} is gone")
        # Slot.cleanupCurrentContainer: areAllProcessesDead, then cleanUp (no launcher call)
        life.check(not ps(life, cid), "docker-ps before cleanUp: dead")
        life.cleanup_rmrs()
        life.check_nothing_left(container_cgroup(conf, cid) if cid else None)
        staging = Path(launcher.run_root, "docker")
        life.check(not staging.exists() or not list(staging.iterdir()),
                   "no docker staging left under the run root")
    finally:
        forced_cleanup(launcher.run_root, [], docker_names=[worker.worker_id], docker=docker,
                       cgroups=[container_cgroup(conf, cid)] if cid else [])
        if waiter is not None:
            waiter.kill()
        life.close()
    life.finish()


def test_docker_force_kill(launcher, replay_image, replay_dockerd):
    """Slot.handleKill's forceKill: `rm --force <wid>` on a running worker (what Storm
    sends when kill() did not finish it), then ps says dead and cleanUp removes the rest."""
    variant = Variant("policy-defaults", "docker", policy=True, memory=False, seccomp=False)
    life = Life(launcher, variant, replay_image, port=6719)
    conf, worker = life.conf, life.worker
    waiter = None
    try:
        life.localize_topology()
        life.container_setup()
        _, waiter, cid = launch(life)
        if cid:
            life.probe()
            life.check(ps(life, cid), "docker-ps: alive")
            write_command(life, "docker-force-rm")
            life.call(req.docker_cmd_call(conf, worker, "docker-force-rm"))
            life.check(not ps(life, cid), "docker-ps: dead after rm --force")
            wait = waiter.wait(30)
            life.check(wait.code is not None and wait.code != "still running",
                       "docker-wait ended with the container", wait.code)
        life.cleanup_rmrs()
        life.check_nothing_left(None)
    finally:
        forced_cleanup(launcher.run_root, [], docker_names=[worker.worker_id], docker=docker)
        if waiter is not None:
            waiter.kill()
        life.close()
    life.finish()
