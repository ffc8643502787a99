"""Storm's docker set-up for the docker and nsenter tests: Storm's directory layout, a policy
with storm.yaml's keys, the profiler, and the command files Storm's DockerManager writes,
byte for byte.

The line generators follow Storm's Java (apache/storm, storm-server/src/main/java/org/apache/
storm/container/docker/; storm-facts.md section 4 and examples E1, E2): tokens are joined
with single spaces (DockerCommand.getCommandWithArguments, commons-lang StringUtils.join) and
OciContainerManager.writeToCommandFile writes the line with no trailing newline.
"""

import os
import subprocess
import time
import uuid
from pathlib import Path

from support.dockerd import docker
from support.env import SUPERVISOR, gid_of_group, uid_of

CGROUP_PARENT = "/wltest-storm"
CGROUP_ROOT = "/sys/fs/cgroup"
TOPOLOGY = "word-count-1-1591895933"
PORT = 6703
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
# The worker: what it sees, then it waits. `mkdir` is what the test seccomp profile denies.
WORKER_COMMAND = ("m=denied; mkdir /tmp/seccomp-probe 2>/dev/null && m=allowed; "
                  "echo \"uid $(id -u)\ngids $(id -G)\nmkdir $m\" > {workdir}/probe.out; "
                  "exec sleep 600")  # one write: a reader never sees half of it
DENIED_SYSCALLS = ("mkdir", "mkdirat")
UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


# --- Storm's bytes -----------------------------------------------------------------------
def shell_cmd(command: list) -> str:
    """ServerUtils.shellCmd: each element single-quoted, ' as '"'"', joined by spaces."""
    return " ".join("'" + part.replace("'", "'\"'\"'") + "'" for part in command)


def worker_script(command: list, env: dict, umask: str | None = "0027") -> str:
    """ServerUtils.writeScript(dir, command, env, umask): the docker worker script."""
    text = "#!/bin/bash\n"
    for key, value in env.items():
        text += shell_cmd(["export", f"{key}={value}"]) + ";\n"
    text += "\n"
    if umask is not None:
        text += f"umask {umask}\n"
    return text + "exec " + shell_cmd(command) + ";"


def java_double(value: float) -> str:
    """Double.toString for the values DockerManager passes to setCpus (cpu / 100.0)."""
    text = repr(float(value))
    return text if "e" not in text else text.replace("e", "E")


def run_line(*, wid: str, uid: int, groups: list, image: str, cgroup_root: str,
             storm_home: str, local_dir: str, artifacts: str, nscd: str, shared: str,
             cgroup_parent: str, readonly=(), readwrite=(), cores=(), memory_zone=None,
             seccomp=None, cpu=None, memory_mb=None) -> str:
    """DockerManager.launchWorkerProcess: the DockerRunCommand calls in their order, then
    DockerRunCommand.getCommandWithArguments. `groups` is `id --groups <user>` (its first
    entry is the --user gid); `cpu` is workerToCpu (percent), `memory_mb` workerToMemoryMb."""
    worker_root = f"{local_dir}/workers/{wid}"  # ConfigUtils.workerRoot
    tokens = ["run", f"--name={wid}", f"--user={uid}:{groups[0]}"]  # constructor
    tokens += ["-d", "--net=host", "--read-only"]  # detachOnRun, setNetworkType, setReadonly
    binds = [(cgroup_root, cgroup_root, True), (storm_home, storm_home, True),
             (f"{local_dir}/supervisor", f"{local_dir}/supervisor", True),  # supervisorLocalDir
             (worker_root, worker_root, False), (artifacts, artifacts, False),
             (f"{local_dir}/workers-users/{wid}", f"{local_dir}/workers-users/{wid}", False),
             (nscd, nscd, False), (shared, shared, False),
             (f"{worker_root}/tmp", "/tmp", False)]  # workerTmpRoot -> TMP_DIR
    binds += [(path, path, True) for path in readonly]  # addAllReadOnlyMountLocations
    binds += [(path, path, False) for path in readwrite]  # addAllReadWriteMountLocations
    for source, destination, read_only in binds:
        tokens += ["-v", f"{source}:{destination}" + (":ro" if read_only else "")]
    if cores:  # addCpuSetBindings
        tokens.append("--cpuset-cpus=" + ",".join(cores))
    if memory_zone is not None:
        tokens.append(f"--cpuset-mems={memory_zone}")
    tokens.append(f"--cgroup-parent={cgroup_parent}")
    tokens += [f"--group-add {gid}" for gid in groups]  # groupAdd: one token with a space
    tokens += [f"--workdir={worker_root}", f"--cidfile={worker_root}/container.cid",
               "--cap-drop=ALL", "--security-opt no-new-privileges"]
    if seccomp is not None:
        tokens.append(f"--security-opt seccomp={seccomp}")
    if cpu is not None:
        tokens.append(f"--cpus={java_double(cpu / 100.0)}")
    if memory_mb is not None:
        tokens.append(f"--memory={memory_mb}m")
    tokens += [image, "bash", f"{worker_root}/storm-worker-script.sh"]
    return " ".join(tokens)


def wait_line(wid: str) -> str:
    return f"wait {wid}"  # DockerWaitCommand (DockerManager.launchWorkerProcess)


def ps_line(wid: str) -> str:
    # DockerManager.areAllProcessesDead: withNameFilter, then withQuietOption
    return f"ps --filter=name={wid} --quiet=true"


def stop_line(wid: str) -> str:
    return f"stop {wid}"  # DockerManager.kill: setGracePeriod is never called


def rm_line(wid: str, force: bool = False) -> str:
    # DockerManager.kill (rm) and forceKill (withForce)
    return f"rm --force {wid}" if force else f"rm {wid}"


STORM_FILES = {"docker-wait": wait_line, "docker-ps": ps_line, "docker-stop": stop_line,
               "docker-rm": rm_line, "docker-force-rm": lambda wid: rm_line(wid, force=True)}


def id_groups(user: str) -> list:
    """DockerManager.getGroupIdInfo: `id --groups <user>`, split on spaces."""
    return subprocess.run(["id", "--groups", user], capture_output=True, text=True,
                          check=True).stdout.strip().split(" ")


def seccomp_profile(denied=DENIED_SYSCALLS) -> str:
    """A docker seccomp profile that allows every system call of this machine but `denied`
    (default action: errno), in the operator's pretty-printed style."""
    names = sorted(line.split()[1][len("__NR_"):] for line in UNISTD.read_text().splitlines()
                   if line.startswith("#define __NR_"))
    allowed = ", ".join(f'"{name}"' for name in names if name not in denied)
    return ('{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [\n'
            f'    {{"names": [{allowed}], "action": "SCMP_ACT_ALLOW"}}\n  ]\n}}\n')


def chown_supervisor(path: Path) -> None:
    os.chown(path, uid_of(SUPERVISOR), gid_of_group(), follow_symlinks=False)


class DockerStorm:
    """storm.home, storm.local.dir, the artifacts root, nscd and an extra read-only directory
    named by a policy (storm.yaml keys), laid out as Storm's supervisor leaves them."""

    def __init__(self, launcher, base: Path, image: str, seccomp: bool = True):
        self.launcher, self.base, self.image = launcher, base, image
        self.home = base / "home"  # storm.home: root's
        self.local = base / "local"  # storm.local.dir: the supervisor's
        self.logs = base / "logs"
        self.artifacts = self.logs / "workers-artifacts"
        self.nscd = base / "nscd"
        self.etc = base / "etc-storm"  # storm.oci.readonly.bindmounts
        self.commands = base / "commands"  # command files of tests that are not Storm's
        for path in (self.home, self.home / "bin", self.home / "conf", self.nscd, self.etc,
                     self.logs):
            path.mkdir(mode=0o755, parents=True)
        for path in (self.local, self.local / "supervisor", self.local / "workers",
                     self.local / "workers-users", self.artifacts, self.commands):
            path.mkdir(mode=0o755, parents=True)
            chown_supervisor(path)
        self.shared = self.local / "supervisor" / "stormdist" / TOPOLOGY / "shared_by_topology"
        for path in reversed(self.shared.parents[:3]):
            path.mkdir(mode=0o755, exist_ok=True)
            chown_supervisor(path)
        self.shared.mkdir(mode=0o755)
        chown_supervisor(self.shared)
        self.seccomp = self.home / "conf" / "seccomp.json"
        self.seccomp.write_text(seccomp_profile())
        self.profiler = self.home / "bin" / "profiler.sh"
        self.profiler.write_text(PROFILER)
        os.chmod(self.profiler, 0o755)
        self.policy = launcher.conf.parent / "policy.yaml"
        self.write_policy(seccomp=seccomp)
        launcher.write_config({"worker.launcher.policy": str(self.policy),
                               "worker.profiler.script.path": str(self.profiler)})
        self.names = []

    def write_policy(self, seccomp: bool = True, images=(), extra: str = "") -> None:
        self.with_seccomp = seccomp
        self.policy.write_text(
            f"storm.home: {self.home}\nstorm.local.dir: {self.local}\n"
            f"storm.log.dir: {self.logs}\nstorm.oci.nscd.dir: {self.nscd}\n"
            f"storm.oci.cgroup.parent: {CGROUP_PARENT}\n"
            f"storm.oci.allowed.images: [{', '.join([self.image, *images])}]\n"
            f"storm.oci.readonly.bindmounts: [{self.etc}]\n"
            + (f"storm.oci.seccomp.profile: {self.seccomp}\n" if seccomp else "") + extra)
        os.chmod(self.policy, 0o644)

    def make_port_dir(self, port: int = PORT) -> Path:
        """<artifacts root>/<topology>/<port>, made by Container.setup, then artifacts-dir."""
        path = self.artifacts / TOPOLOGY / str(port)
        if not path.exists():
            path.parent.mkdir(mode=0o755, exist_ok=True)
            chown_supervisor(path.parent)
            path.mkdir(mode=0o755)
            chown_supervisor(path)
        return path

    def worker(self, user: str = "wlalice", command: str = WORKER_COMMAND) -> tuple:
        """A new worker id and its directory as Container.setup and BasicContainer.launch
        leave them: pids, tmp, heartbeats, workers-users/<id> (the user name, no newline),
        the artifacts link and storm-worker-script.sh, all the supervisor's."""
        wid = str(uuid.uuid4())
        self.names.append(wid)
        workdir = self.local / "workers" / wid
        for path in (workdir, workdir / "pids", workdir / "tmp", workdir / "heartbeats"):
            path.mkdir(mode=0o755)
            chown_supervisor(path)
        user_file = self.local / "workers-users" / wid
        user_file.write_text(user)
        chown_supervisor(user_file)
        (workdir / "artifacts").symlink_to(self.make_port_dir())
        chown_supervisor(workdir / "artifacts")
        self.write_file(workdir / "storm-worker-script.sh", worker_script(
            ["/bin/sh", "-c", command.format(workdir=workdir)],
            {"LD_LIBRARY_PATH": f"{self.shared.parent}/resources:/usr/local/lib"}))
        return wid, workdir

    def storm_run_line(self, wid: str, user: str = "wlalice", **options) -> str:
        """The line DockerManager writes to docker-run.sh for this worker (seccomp as the
        policy has it, 150% cpu, 256 MB with memory enforcement, unless told otherwise)."""
        values = dict(
            wid=wid, uid=uid_of(user), groups=id_groups(user), image=self.image,
            cgroup_root=CGROUP_ROOT, storm_home=str(self.home), local_dir=str(self.local),
            artifacts=str(self.make_port_dir()), nscd=str(self.nscd), shared=str(self.shared),
            cgroup_parent=CGROUP_PARENT, readonly=[str(self.etc)],
            seccomp=str(self.seccomp) if self.with_seccomp else None, cpu=150, memory_mb=256)
        values.update(options)
        return run_line(**values)

    def run_tokens(self, wid: str, workdir: Path = None, user: str = "wlalice",
                   **options) -> list:
        """Storm's run line as tokens (split on spaces), for tests that edit it."""
        return self.storm_run_line(wid, user, **options).split(" ")

    def write_file(self, path: Path, text: str) -> Path:
        """A file the supervisor writes (FileWriter: no newline added)."""
        path.write_text(text)
        chown_supervisor(path)
        return path

    def storm_call(self, user: str, wid: str, tag: str, line: str | None = None, **kwargs):
        """What DockerManager does for `tag` (docker-run, docker-wait, docker-ps, ...): write
        <workdir>/<tag>.sh and call the launcher as Storm does."""
        workdir = self.local / "workers" / wid
        if line is None:
            line = self.storm_run_line(wid, user) if tag == "docker-run" else STORM_FILES[tag](wid)
        command = self.write_file(workdir / f"{tag}.sh", line)
        verb = "launch-docker-container" if tag == "docker-run" else "run-docker-cmd"
        return self.launcher.run(user, verb, workdir, command, **kwargs)

    def command_file(self, text: str, name: str | None = None) -> Path:
        return self.write_file(self.commands / (name or f"cmd-{uuid.uuid4().hex[:8]}.sh"), text)

    def run(self, user: str, verb: str, first, tokens, **kwargs):
        text = tokens if isinstance(tokens, str) else " ".join(tokens)
        return self.launcher.run(user, verb, first, self.command_file(text), **kwargs)

    def exists(self, wid: str) -> bool:
        return bool(docker("ps", "-a", "-q", "--filter", f"name={wid}").stdout.strip())

    def state(self, wid: str):
        """(full id, status) of container `wid`, or None."""
        result = docker("inspect", "--type", "container", "--format",
                        "{{.Id}} {{.State.Status}}", wid, check=False)
        return tuple(result.stdout.split()) if result.returncode == 0 else None

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


def docker_clients(wid: str) -> list:
    """Pids of processes still working on container `wid` other than launchers and their
    interpreter: the docker clients a killed launcher started (or a wrapper of docker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(wid.encode() in a for a in argv) and b"python" not in argv[0] \
                    and not argv[0].endswith(b"worker-launcher"):
                found.append(int(entry))
    return found


def staged_mounts(run_root: Path) -> list:
    """Mounts of this mount namespace that come from the launcher's docker staging."""
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if f"{run_root}/docker" in line]
