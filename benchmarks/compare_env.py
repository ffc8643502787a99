"""The node bench_compare.py drives both launchers on: accounts, a Storm-like layout, a
3-layer busybox squashfs image, oci-config.json requests as Storm's RuncLibContainerManager
writes them, timed calls as the supervisor account, and the leak check.

Self-contained (nothing from tests/): the accounts and uids are the ones the tests use, so
both can live on one machine.
"""

import grp
import json
import os
import pwd
import select
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

BENCH_ROOT = Path("/opt/wl-bench")
GROUP, GROUP_GID = "wltest", 1900
SUPERVISOR, SUPERVISOR_UID = "wlsuper", 1901
USER, USER_UID = "wlalice", 2001
CGROUP_PARENT = "/wl-bench-storm"       # storm.oci.cgroup.parent for the bench's containers
TOPOLOGY = "wordcount-1-1700000000"
KEEP = 100                               # reapLayerKeepCount / reap keep count, as Storm sends
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "id", "sleep", "cat", "echo", "true", "test")
STORM_HOST_FILES = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")
CALL_TIMEOUT = 120

# The worker: records who it runs as, then idles like a JVM until SIGTERM (Storm's first
# kill signal), which a process 1 only receives with a handler installed, as the JVM has.
WORKER_SCRIPT = """#!/bin/bash
trap 'exit 0' TERM
id -u > {workdir}/worker.started
while true; do sleep 1; done
"""


def runc_binary() -> str:
    return shutil.which("runc") or "/usr/sbin/runc"


# --- accounts ------------------------------------------------------------------------------

def ensure_accounts() -> None:
    """wltest (1900), the supervisor wlsuper (1901, primary group wltest), the topology user
    wlalice (2001): the tests' accounts, created when missing."""
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "-g", str(GROUP_GID), GROUP], check=True)
    for name, uid, extra in ((SUPERVISOR, SUPERVISOR_UID, ["-N", "-g", GROUP]),
                             (USER, USER_UID, ["-U"])):
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-M", "-s", "/bin/sh", "-d", "/nonexistent",
                            "-u", str(uid), *extra, name], check=True)


def uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def gid(name: str = GROUP) -> int:
    return grp.getgrnam(name).gr_gid


def as_supervisor(extra_gids) -> dict:
    """subprocess keyword arguments: run as the supervisor account, in its own groups plus
    each launcher's group, from /, with a minimal environment (as tests/conftest.py does)."""
    entry = pwd.getpwnam(SUPERVISOR)
    groups = sorted(set(os.getgrouplist(SUPERVISOR, entry.pw_gid)) | set(extra_gids))
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups, "cwd": "/",
            "env": {"PATH": "/usr/bin:/bin"}}


# --- timed calls ---------------------------------------------------------------------------

class Call:
    __slots__ = ("ms", "code", "output")

    def __init__(self, ms, code, output):
        self.ms, self.code, self.output = ms, code, output

    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line or "error" in line]
        return (errors or lines or ["(no output)"])[-1].strip()[:300]


def timed(argv, who: dict) -> Call:
    """Run argv, wall time from spawn to exit. Output goes to a file, not a pipe, so a
    process that keeps a copy of the descriptor (a container) cannot stall the wait. The
    exit is waited for on a pidfd: subprocess's own timed wait polls with sleeps growing
    to 50 ms, which would round every sample up to its next poll."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, **who)
        pidfd = os.pidfd_open(proc.pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            exited = bool(poller.poll(CALL_TIMEOUT * 1000))
        finally:
            os.close(pidfd)
        if not exited:
            proc.kill()
        code = proc.wait()
        ms = (time.perf_counter() - start) * 1000
        out.seek(0)
        text = out.read().decode(errors="replace")
    if not exited:
        return Call(ms, None, text + f"\n(killed after {CALL_TIMEOUT} s)")
    return Call(ms, code, text)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


# --- image ---------------------------------------------------------------------------------

def build_image(directory: Path, count: int = 3) -> list:
    """`count` squashfs layers, bottom first: a busybox-static root, then layers that each
    add a file of their own. Root-owned, 0644, in a root-owned 0755 directory."""
    layers = []
    for index in range(count):
        tree = directory / f"tree{index}"
        tree.mkdir(mode=0o755)
        if index == 0:
            for sub in ("bin", "dev", "etc", "proc", "sys", "tmp", "run", "sys/fs/cgroup"):
                (tree / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(tree / "tmp", 0o1777)
            shutil.copy2(BUSYBOX, tree / "bin" / "busybox")
            for applet in APPLETS:
                (tree / "bin" / applet).symlink_to("busybox")
            # Storm runs `bash <script>`: hand it to busybox sh
            (tree / "bin" / "bash").write_text('#!/bin/sh\nexec /bin/sh "$@"\n')
            os.chmod(tree / "bin" / "bash", 0o755)
            (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
            (tree / "etc" / "group").write_text("root:x:0:\n")
        (tree / "etc").mkdir(mode=0o755, exist_ok=True)
        (tree / "etc" / f"layer-{index}").write_text(f"{index}\n")
        image = directory / f"layer{index}.sqsh"
        subprocess.run(["mksquashfs", str(tree), str(image), "-quiet", "-noappend", "-all-root",
                        "-no-progress"], check=True, stdout=subprocess.DEVNULL)
        os.chmod(image, 0o644)
        shutil.rmtree(tree)
        layers.append(image)
    return layers


# --- Storm's node layout ---------------------------------------------------------------------

class Worker:
    """One worker as Storm's supervisor prepares it before `run-oci-container`."""

    def __init__(self, storm, port: int):
        self.wid = str(uuid.uuid4())
        self.port = port
        self.container_id = f"{port}-{self.wid}"
        self.workdir = storm.local / "workers" / self.wid
        self.artifacts_dir = storm.artifacts / TOPOLOGY / str(port)
        self.artifacts_link = self.workdir / "artifacts"
        self.request_path = self.workdir / "oci-config.json"
        self.pid_file = self.artifacts_link / f"container-{self.wid}.pid"
        self.launched = False
        self.pid = None


class Storm:
    """storm.home, storm.local.dir and storm.workers.artifacts.dir under `base`, laid out as
    Storm's supervisor does (Container.setup, RuncLibContainerManager)."""

    def __init__(self, base: Path, layer_count: int = 3):
        self.base = base
        self.home = base / "storm-home"
        self.local = base / "storm-local"
        self.artifacts = base / "workers-artifacts"
        self.supervisor = self.local / "supervisor"
        self.shared = self.supervisor / "stormdist" / TOPOLOGY / "shared_by_topology"
        for path in (self.home / "lib", self.local / "workers", self.local / "workers-users",
                     self.artifacts / TOPOLOGY, self.shared,
                     self.supervisor / "oci-resources" / "layers"):
            path.mkdir(parents=True, mode=0o755, exist_ok=True)
        for path in (base, *[p for p in base.rglob("*") if p.is_dir()]):
            os.chmod(path, 0o755)
        (self.home / "lib" / "storm-core.jar").write_text("not really a jar\n")
        for path in (self.local / "workers", self.local / "workers-users"):
            os.chown(path, uid(SUPERVISOR), gid())
        for path in (self.artifacts / TOPOLOGY, self.shared):  # artifacts-dir, code-dir done
            os.chown(path, uid(USER), gid())
            os.chmod(path, 0o2770)
        self.layers = build_image(self.supervisor / "oci-resources" / "layers", layer_count)
        self.workers = []

    def policy(self) -> dict:
        """Our launcher's policy: the same storm.yaml keys with the same values."""
        return {"storm.home": str(self.home), "storm.local.dir": str(self.local),
                "storm.workers.artifacts.dir": str(self.artifacts),
                "storm.oci.cgroup.parent": CGROUP_PARENT, "storm.oci.cgroup.root": "/sys/fs/cgroup"}

    def new_worker(self, port: int) -> Worker:
        worker = Worker(self, port)
        self.workers.append(worker)
        sup, group = uid(SUPERVISOR), gid()
        worker.workdir.mkdir(mode=0o755)
        os.chown(worker.workdir, sup, group)
        for sub in ("pids", "tmp", "heartbeats"):
            (worker.workdir / sub).mkdir(mode=0o755)
            os.chown(worker.workdir / sub, sup, group)
        users = self.local / "workers-users" / worker.wid
        users.write_text(USER + "\n")
        os.chown(users, sup, group)
        if not worker.artifacts_dir.exists():
            worker.artifacts_dir.mkdir(mode=0o2770)
            os.chown(worker.artifacts_dir, uid(USER), group)
            os.chmod(worker.artifacts_dir, 0o2770)
        worker.artifacts_link.symlink_to(worker.artifacts_dir)
        os.lchown(worker.artifacts_link, sup, group)
        script = worker.workdir / "storm-worker-script.sh"
        script.write_text(WORKER_SCRIPT.format(workdir=worker.workdir))
        os.chown(script, sup, group)
        worker.request_path.write_text(json.dumps(self.request(worker, script), indent=1))
        os.chown(worker.request_path, sup, group)
        return worker

    def request(self, worker: Worker, script: Path) -> dict:
        """oci-config.json as RuncLibContainerManager writes it (no seccomp profile: Storm's
        default, storm.oci.seccomp.profile unset; no nscd bind: no nscd on this host)."""
        def bind(source, destination=None, writable=False):
            return {"destination": str(destination or source), "type": "bind",
                    "source": str(source), "options": ["rw" if writable else "ro", "rbind", "rprivate"]}

        mounts = [bind(self.home)]
        mounts += [bind(path) for path in STORM_HOST_FILES if os.path.exists(path)]
        mounts += [bind("/sys/fs/cgroup"), bind(self.supervisor),
                   bind(worker.workdir, writable=True),
                   bind(worker.artifacts_dir, writable=True),
                   bind(self.local / "workers-users" / worker.wid, writable=True),
                   bind(self.shared, writable=True),
                   bind(worker.workdir / "tmp", "/tmp", writable=True)]
        return {
            "version": "0.1",
            "username": USER,
            "containerId": worker.container_id,
            "pidFile": str(worker.pid_file),
            "containerScriptPath": str(script),
            "layers": [{"mediaType": "application/vnd.squashfs", "path": str(layer)}
                       for layer in self.layers],
            "reapLayerKeepCount": KEEP,
            "ociRuntimeConfig": {
                "mounts": mounts,
                "process": {"cwd": str(worker.workdir),
                            "env": ["PATH=/bin:/usr/bin", "LANG=en_US.UTF-8"],
                            "args": ["bash", str(script)]},
                "linux": {"cgroupsPath": f"{CGROUP_PARENT}/{worker.container_id}",
                          "resources": {"cpu": {"quota": 100000, "period": 100000}}},
            },
        }


# --- worker state ----------------------------------------------------------------------------

def wait_started(worker: Worker, timeout: float = 20.0) -> str:
    """What the worker wrote (its uid) once it ran, or '' after `timeout` seconds."""
    marker = worker.workdir / "worker.started"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = marker.read_text().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    return ""


def read_pid(worker: Worker) -> int | None:
    try:
        text = worker.pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def process_gone(pid: int) -> bool:
    """Gone or a zombie: runc treats both as stopped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.002)
    return False


# --- leaks -----------------------------------------------------------------------------------

def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mounts_under(tops) -> list:
    """Mount points in /proc/self/mountinfo at or below any of `tops`, deepest last."""
    prefixes = [str(top).rstrip("/") for top in tops]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split(" ")[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return found


def loops_backed_by(files) -> list:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    names = [str(f) for f in files]
    return [line for line in out.splitlines() if any(name in line for name in names)]


def runc_containers(ids) -> list:
    out = subprocess.run([runc_binary(), "list", "-q"], capture_output=True, text=True).stdout
    return sorted(set(out.split()) & set(ids))


def cgroups_left() -> list:
    left = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / CGROUP_PARENT.lstrip("/")
        if parent.is_dir():
            left += [str(child) for child in parent.iterdir() if child.is_dir()]
    return left


def leaks(run_roots, bench_dir: Path, layers, ids) -> list:
    problems = [f"mount left: {point}" for point in mounts_under([*run_roots, bench_dir])]
    problems += [f"loop device left: {line}" for line in loops_backed_by(layers)]
    problems += [f"runc container left: {cid}" for cid in runc_containers(ids)]
    problems += [f"cgroup left: {path}" for path in cgroups_left()]
    for root in run_roots:
        root = Path(root)
        if root.is_dir():
            problems += [f"container directory left: {entry}" for entry in root.iterdir()
                         if entry.name in ids]
    return problems


def force_cleanup(run_roots, bench_dir: Path, layers, ids) -> list:
    """Remove by force whatever the launchers left; returns what had to be done."""
    done = []
    for cid in runc_containers(ids):
        subprocess.run([runc_binary(), "delete", "--force", cid], capture_output=True)
        done.append(f"runc delete --force {cid}")
    for point in reversed(mounts_under([*run_roots, bench_dir])):
        subprocess.run(["umount", "-l", point], capture_output=True)
        done.append(f"umount -l {point}")
    for line in loops_backed_by(layers):
        device = line.split(":", 1)[0]
        subprocess.run(["losetup", "-d", device], capture_output=True)
        done.append(f"losetup -d {device}")
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / CGROUP_PARENT.lstrip("/")
        if parent.is_dir():
            for child in [c for c in parent.iterdir() if c.is_dir()]:
                try:
                    child.rmdir()
                    done.append(f"rmdir {child}")
                except OSError:
                    pass
    return done


def remove_cgroup_parents() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / CGROUP_PARENT.lstrip("/")
        try:
            parent.rmdir()
        except OSError:
            pass
