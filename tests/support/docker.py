"""Storm's docker set-up for the docker and nsenter tests: directories, policy, profiler,
and the command lines Storm's DockerRunCommand and friends write."""

import os
import time
import uuid
from pathlib import Path

from support.env import SUPERVISOR
from support.dockerd import docker
from support.env import gid_of_group, uid_of

CGROUP_PARENT = "/wltest-storm"
TOPOLOGY = "word-count-1-1591895933"
PROFILER = """#!/bin/sh
# The profiler, run by nsenter inside the container: say where it runs.
out="$1"
{
  echo "mnt $(readlink /proc/self/ns/mnt)"
  echo "pid $(readlink /proc/self/ns/pid)"
  echo "uid $(id -u) $(id -ru)"
  echo "gids $(id -G)"
  echo "umask $(umask)"
  echo "cwd $(pwd)"
  echo "args $*"
} > "$out"
"""
WORKER_SCRIPT = """#!/bin/bash
{{
  echo "uid $(id -u)"
  echo "gids $(id -G)"
}} > {workdir}/probe.out
exec sleep 600
"""


def chown_supervisor(path: Path) -> None:
    os.chown(path, uid_of(SUPERVISOR), gid_of_group())


class DockerStorm:
    """storm.home, storm.local.dir, artifacts, nscd and conf dirs named by a policy."""

    def __init__(self, launcher, base: Path, image: str):
        self.launcher, self.base, self.image = launcher, base, image
        self.home = base / "home"
        self.local = base / "local"
        self.artifacts = base / "artifacts"
        self.nscd = base / "nscd"
        self.etc = base / "etc-storm"
        self.commands = base / "commands"  # where the supervisor writes command files
        for path in (self.home, self.home / "bin", self.local, self.local / "supervisor",
                     self.local / "workers", self.local / "workers-users", self.artifacts,
                     self.nscd, self.etc, self.commands):
            path.mkdir(mode=0o755, parents=True)
        for path in (self.local / "workers", self.local / "workers-users", self.commands):
            chown_supervisor(path)
        self.seccomp = self.home / "seccomp.json"
        self.seccomp.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}\n')
        self.profiler = self.home / "bin" / "profiler.sh"
        self.profiler.write_text(PROFILER)
        os.chmod(self.profiler, 0o755)
        self.policy = launcher.conf.parent / "policy.yaml"
        self.policy.write_text(
            f"storm.home: {self.home}\nstorm.local.dir: {self.local}\n"
            f"storm.workers.artifacts.dir: {self.artifacts}\nstorm.oci.nscd.dir: {self.nscd}\n"
            f"storm.oci.cgroup.parent: {CGROUP_PARENT}\n"
            f"storm.oci.allowed.images: [{image}]\n"
            f"storm.oci.readonly.bindmounts: [{self.etc}]\n")
        os.chmod(self.policy, 0o644)
        launcher.write_config({"worker.launcher.policy": str(self.policy),
                               "worker.profiler.script.path": str(self.profiler)})
        self.names = []

    def worker(self, user: str = "wlalice") -> tuple:
        """A new worker id and its directory, set up as Storm's supervisor leaves them."""
        wid = str(uuid.uuid4())
        self.names.append(wid)
        workdir = self.local / "workers" / wid
        workdir.mkdir(mode=0o755)
        chown_supervisor(workdir)
        script = workdir / "storm-worker-script.sh"
        script.write_text(WORKER_SCRIPT.format(workdir=workdir))
        chown_supervisor(script)
        user_file = self.local / "workers-users" / wid
        user_file.write_text(user + "\n")
        chown_supervisor(user_file)
        port_dir = self.artifacts / TOPOLOGY / "6703"
        port_dir.mkdir(parents=True, exist_ok=True)
        shared = self.local / "supervisor" / "stormdist" / TOPOLOGY / "shared_by_topology"
        shared.mkdir(parents=True, exist_ok=True)
        return wid, workdir

    def run_tokens(self, wid: str, workdir: Path, user: str = "wlalice") -> list:
        """The seed's example command line, with this machine's paths and the user's ids."""
        uid = uid_of(user)
        gids = sorted(set(os.getgrouplist(user, uid)))
        local, shared = self.local, self.local / "supervisor/stormdist" / TOPOLOGY
        tokens = ["run", f"--name={wid}", f"--user={uid}:{uid}", "-d", "--net=host",
                  "--read-only"]
        binds = [("/sys/fs/cgroup", "/sys/fs/cgroup:ro"), (self.home, f"{self.home}:ro"),
                 (local / "supervisor", f"{local / 'supervisor'}:ro"), (workdir, workdir),
                 (self.artifacts / TOPOLOGY / "6703", self.artifacts / TOPOLOGY / "6703"),
                 (local / "workers-users" / wid, local / "workers-users" / wid),
                 (self.nscd, self.nscd), (shared / "shared_by_topology",
                                          shared / "shared_by_topology"),
                 (workdir / "tmp", "/tmp"), (self.etc, f"{self.etc}:ro")]
        for source, destination in binds:
            tokens += ["-v", f"{source}:{destination}"]
        tokens.append(f"--cgroup-parent={CGROUP_PARENT}")
        for gid in gids:
            tokens += [f"--group-add {gid}"]
        tokens += [f"--workdir={workdir}", f"--cidfile={workdir}/container.cid", "--cap-drop=ALL",
                   "--security-opt no-new-privileges", f"--security-opt seccomp={self.seccomp}",
                   "--cpus=1.5", "--memory=256m", self.image, "bash",
                   f"{workdir}/storm-worker-script.sh"]
        return " ".join(str(t) for t in tokens).split(" ")

    def command_file(self, text: str, name: str | None = None) -> Path:
        path = self.commands / (name or f"cmd-{uuid.uuid4().hex[:8]}.sh")
        path.write_text(text)
        chown_supervisor(path)
        return path

    def run(self, user: str, verb: str, first, tokens, **kwargs):
        text = tokens if isinstance(tokens, str) else " ".join(tokens)
        return self.launcher.run(user, verb, first, self.command_file(text), **kwargs)

    def exists(self, wid: str) -> bool:
        return bool(docker("ps", "-a", "-q", "--filter", f"name={wid}").stdout.strip())

    def pid_of(self, wid: str) -> int:
        return int(docker("inspect", "--format", "{{.State.Pid}}", wid).stdout.strip())

    def wait_for(self, path: Path, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().endswith("\n"):
                return path.read_text()
            time.sleep(0.2)
        raise AssertionError(f"{path} did not appear")

    def cleanup(self) -> None:
        for wid in self.names:
            docker("rm", "-f", wid, check=False)
        self.policy.unlink(missing_ok=True)


def lines(text: str) -> dict:
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
