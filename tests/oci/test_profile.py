"""profile-oci-container (our verb nsenter) for real: Storm's command-file bytes, a worker
launched by run-oci-container from squashfs layers, and the profiler seen from the host.

The profiler must get exactly the worker's confinement; the launcher must never run in the
container (a planted module, a hostile /etc/passwd, a worker that leaves its namespaces, a
worker process that ptraces the profiler) and must profile only the user's own container.
"""

import json
import os
import time
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.hostile import assert_one_line, assert_refused
from support.oci import runc_binary
from support.profiling import (STORM_ACTIONS, confinement, find_process, hostile_tree,
                               install_profiler, open_files, processes_in_mount_namespace,
                               run_background, run_logged, seccomp_denying, storm_command, table,
                               wait_for, write_command)
from support.rootfs import make_rootfs
from support.syslog import SyslogReceiver, fields, parse

WORKER = "umask 0027\necho up > $WORKDIR/up.out\nexec sleep 600\n"
VERBS = ("profile-oci-container", "nsenter")


@pytest.fixture(scope="session")
def profile_layer(installed, image):
    """A fourth layer for the test image: see support.profiling.hostile_tree."""
    directory = image[0].parent
    tree = directory / "profile-tree"
    tree.mkdir(mode=0o755)
    planted = hostile_tree(tree, installed.prefix, directory)
    layer = directory / "profile.sqsh"
    subprocess.run(["mksquashfs", str(tree), str(layer), "-quiet", "-noappend", "-all-root"],
                   check=True, capture_output=True)
    os.chmod(layer, 0o644)
    shutil.rmtree(tree)
    return layer, planted


class Profiling:
    """Storm's OCI layout plus storm.home (read-only in every worker) with the profiler."""

    def __init__(self, oci, layer):
        self.oci, self.launcher = oci, oci.launcher
        self.layer = oci.localise(layer)  # into Storm's layer store
        self.home = oci.storm_home  # storm.home of the policy, bound read-only by Storm
        self.profiler = install_profiler(self.home)
        self.launcher.write_config({"worker.launcher.policy": str(oci.policy),
                                    "worker.profiler.script.path": str(self.profiler)})

    def worker(self, script: str = WORKER, port: int = 6700, seccomp=None, launch=True,
               user: str = USER):
        worker = self.oci.new_worker(script, port=port, user=user)
        worker.request["layers"].append(
            {"mediaType": "application/vnd.squashfs", "path": str(self.layer)})
        if seccomp is not None:
            worker.request["ociRuntimeConfig"]["linux"]["seccomp"] = seccomp
        if launch:
            result = worker.launch()
            assert result.returncode == 0, result.stderr
            worker.wait_for("up.out")
            worker.pid = int((worker.artifacts / f"container-{worker.container_id[5:]}.pid")
                             .read_text())
        return worker

    def profile(self, worker, data: bytes, verb: str = "profile-oci-container", pid=None):
        command = write_command(worker.artifacts, data)
        return self.launcher.run(USER, verb, worker.pid if pid is None else pid, command)


@pytest.fixture
def prof(oci, profile_layer):
    return Profiling(oci, profile_layer[0])


def report(path):
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)


# --- Storm's requests -----------------------------------------------------------------------
@pytest.mark.parametrize("verb", VERBS)
def test_storms_requests_run_the_profiler_in_the_worker(prof, verb):
    worker = prof.worker()
    for action in STORM_ACTIONS:
        with_dir = action not in ("start", "kill")
        data = storm_command(action, worker.artifacts if with_dir else None)
        assert data.startswith(b" 1 ") and not data.endswith(b"\n")
        result = prof.profile(worker, data, verb)
        assert result.returncode == 0, (action, result.stderr)
        where = worker.artifacts if with_dir else worker.workdir / "tmp"  # /tmp in the worker
        out = where / f"profile-{action}.out"
        seen = report(out)
        assert seen["args"] == f"1 {action}" + (f" {worker.artifacts}" if with_dir else "")
        uid = uid_of(USER)
        assert seen["uid"] == f"{uid} {uid}" and seen["umask"] == "0027" and seen["cwd"] == "/"
        assert sorted(map(int, seen["gids"].split())) == sorted(set(os.getgrouplist(USER, uid)))
        assert out.stat().st_uid == uid and stat.S_IMODE(out.stat().st_mode) == 0o640
        env = dict(line.split("=", 1) for line in
                   (where / f"profile-{action}.env").read_text().splitlines())
        assert env.pop("PATH") == "/usr/sbin:/usr/bin:/sbin:/bin" and env.pop("HOME") == "/"
        assert set(env) <= {"PWD", "SHLVL"}, env  # what the profiler's shell adds itself


def test_the_profilers_exit_status_is_ours(prof):
    worker = prof.worker()
    for code in (3, 255, 0):
        result = prof.profile(worker, storm_command(f"exit{code}", worker.artifacts))
        assert result.returncode == code, result.stderr


def test_the_command_file_is_read_with_the_users_rights(prof):
    worker = prof.worker()
    data = storm_command("jstack", worker.artifacts)
    command = write_command(worker.artifacts, data)
    os.chmod(command, 0o600)  # the supervisor's alone: the user cannot read it
    result = prof.launcher.run(USER, "profile-oci-container", worker.pid, command)
    assert_refused(result, {30})
    assert not (worker.artifacts / "profile-jstack.out").exists()
    os.chown(command, uid_of(USER), uid_of(USER))  # the user's alone: read as the user
    result = prof.launcher.run(USER, "profile-oci-container", worker.pid, command)
    assert result.returncode == 0, result.stderr
    assert (worker.artifacts / "profile-jstack.out").exists()


@pytest.mark.parametrize("data", [b"", b"   ", b" 1 jstack $(id)", b" 1 jstack /x;id",
                                  b" 1 jstack\n/x", b" 1 `id`"])
def test_what_storm_never_writes_runs_nothing(prof, data):
    worker = prof.worker()
    result = prof.profile(worker, data)
    assert_refused(result, {31})
    assert not list(worker.artifacts.glob("profile-*.out"))


def test_the_profiler_must_be_configured_and_root_owned(prof):
    worker = prof.worker()
    data = storm_command("jstack", worker.artifacts)
    os.chown(prof.profiler, uid_of(SUPERVISOR), gid_of_group())
    result = prof.profile(worker, data)
    assert_refused(result, {7})
    assert "unsafe profiler script" in result.stderr
    os.chown(prof.profiler, 0, 0)
    prof.launcher.write_config({"worker.launcher.policy": str(prof.launcher.conf.parent /
                                                              "policy.yaml")})
    assert_refused(prof.profile(worker, data), {7})
    assert not (worker.artifacts / "profile-jstack.out").exists()


# --- the confinement ------------------------------------------------------------------------
def test_the_profiler_has_exactly_the_workers_confinement(prof, capsys):
    """Inspected from the host while it runs: the same status (uids, groups, umask,
    no_new_privs, seccomp, every capability set), the same namespaces, the same cgroups as
    the worker; a seccomp rule of the worker's (mkdir refused) applies to it too."""
    script = ("umask 0027\nif mkdir $WORKDIR/made-by-worker 2> /dev/null; then echo ok > "
              "$WORKDIR/mkdir.out; else echo refused > $WORKDIR/mkdir.out; fi\n" + WORKER)
    worker = prof.worker(script, seccomp=seccomp_denying("mkdir", "mkdirat"))
    assert worker.wait_for("mkdir.out") == "refused\n"
    command = write_command(worker.artifacts, storm_command("hold", worker.artifacts))
    launcher = run_background(prof.launcher, USER, "profile-oci-container", worker.pid, command)
    try:
        profiler = find_process(str(prof.profiler), "hold", str(worker.artifacts))
        seen_worker, seen_profiler = confinement(worker.pid), confinement(profiler)
        inside = processes_in_mount_namespace(seen_worker["ns"]["mnt"])
        launcher_mnt = os.readlink(f"/proc/{launcher.pid}/ns/mnt")
        fds = open_files(profiler)
    finally:
        (worker.artifacts / "release").touch()
        out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, err
    with capsys.disabled():
        print(f"\nOCI worker {worker.container_id}, seen from the host:\n"
              + table({"worker (init)": seen_worker, "profiler": seen_profiler}))
    assert seen_profiler == seen_worker
    uid, groups = uid_of(USER), sorted(set(os.getgrouplist(USER, uid_of(USER))) - {uid_of(USER)})
    assert seen_profiler["Uid"] == seen_profiler["Gid"] == f"{uid} {uid} {uid} {uid}"
    assert seen_profiler["Groups"] == " ".join(map(str, groups))
    assert seen_profiler["Umask"] == "0027" and seen_profiler["NoNewPrivs"] == "1"
    assert (seen_profiler["Seccomp"], seen_profiler["Seccomp_filters"]) == ("2", "1")
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert seen_profiler[capabilities] == "0000000000000000"
    host = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in seen_worker["ns"]}
    for kind in ("mnt", "pid", "ipc", "uts"):
        assert seen_profiler["ns"][kind] != host[kind]
    assert f"/wltest-storm/{worker.container_id}" in seen_profiler["cgroup"]
    # Nothing but the user runs in the container; the launcher stayed on the host and
    # handed the profiler no descriptor of its own.
    assert inside and all(uids == (uid,) * 4 for _, uids in inside), inside
    assert launcher_mnt == host["mnt"]
    assert not [fd for fd in fds if fd.startswith("memfd:") or str(prof.oci.run_root) in fd], fds
    result = prof.profile(worker, storm_command("mkdir", worker.artifacts))
    assert result.returncode == 0, result.stderr
    assert report(worker.artifacts / "profile-mkdir.out")["mkdir"] == "refused"
    assert not (worker.artifacts / "made-by-profiler").exists()


# --- only the user's own container -----------------------------------------------------------
GRABBER = r"""umask 0027
echo up > $WORKDIR/up.out
while :; do
  for d in /proc/[0-9]*; do
    if grep -q hold $d/cmdline 2>/dev/null; then
      exec 3>>$d/fd/1 4>>$d/fd/2
      echo "worker-launcher: FORGED line from the worker" >&3
      printf 'worker-launcher: FORGED\nsecond line\033[2J' >&4
      echo got > $WORKDIR/got.out
      exec sleep 600
    fi
  done
  sleep 0.05
done
"""


def test_a_worker_holding_the_profilers_output_forges_and_stalls_nothing(prof):
    """A process of the container reopens the profiler's stdout and stderr through
    /proc/<profiler>/fd, writes would-be launcher lines and keeps them open. Nothing of the
    caller's reaches the container (runc writes into memfds, relayed as `profiler: ` lines,
    escaped), and the launcher stops runc a few seconds after the profiler is gone."""
    worker = prof.worker(GRABBER)
    command = write_command(worker.artifacts, storm_command("hold", worker.artifacts))
    launcher = run_background(prof.launcher, USER, "profile-oci-container", worker.pid, command)
    try:
        worker.wait_for("got.out", timeout=30)
    finally:
        (worker.artifacts / "release").touch()
    started = time.monotonic()
    out, err = launcher.communicate(timeout=60)
    assert time.monotonic() - started < 15
    lines = (out + err).splitlines()
    assert not [line for line in lines if line.startswith("worker-launcher: FORGED")], lines
    assert "profiler: worker-launcher: FORGED line from the worker" in lines
    assert "\x1b" not in out + err
    assert launcher.returncode == 7 and "held its output open" in err, (out, err)


def _user_process(user=USER, *prefix):
    uid = str(uid_of(user))
    return subprocess.Popen([*prefix, "setpriv", "--reuid", uid, "--regid", uid, "--clear-groups",
                             "sleep", "300"])


def test_pids_that_are_not_a_containers_init_are_refused(prof):
    worker = prof.worker("umask 0027\nsleep 600 &\n" + WORKER)
    child = int(open(f"/proc/{worker.pid}/task/{worker.pid}/children").read().split()[0])
    host = _user_process()
    unshared = _user_process(USER, "unshare", "--mount")
    data = storm_command("jstack", worker.artifacts)
    try:
        for pid, why in ((child, "not the init of a container this launcher started"),
                         (host.pid, "not the init of a container this launcher started"),
                         (unshared.pid, "not the init of a container this launcher started"),
                         (1, "not a container's init"), (999999999, "No such process")):
            result = prof.profile(worker, data, pid=pid)
            assert_refused(result, {9})
            assert why in result.stderr, result.stderr
        for text in ("0", "-5", "12abc", "0012", " 1", "1e3"):
            assert_refused(prof.profile(worker, data, pid=text), {9})
    finally:
        for process in (host, unshared):
            process.kill()
            process.wait()
    assert not (worker.artifacts / "profile-jstack.out").exists()


def test_another_users_container_is_refused(prof):
    bob = prof.worker(launch=False, port=6701, user="wlbob")
    launched = bob.launch()
    assert launched.returncode == 0, launched.stderr
    bob.wait_for("up.out")
    bob.pid = int((bob.artifacts / f"container-{bob.container_id[5:]}.pid").read_text())
    os.chmod(bob.artifacts.parent, 0o2755)  # so that only the pid decides
    os.chown(bob.artifacts, uid_of(USER), gid_of_group())
    result = prof.profile(bob, storm_command("jstack", bob.artifacts))
    assert_refused(result, {9})
    assert f"runs as uid:gid {uid_of('wlbob')}:{uid_of('wlbob')}, not as {USER}" in result.stderr
    assert not (bob.artifacts / "profile-jstack.out").exists()


def test_a_runc_container_the_launcher_did_not_start_is_refused(prof, tmp_path):
    """The user's uid, runc's own state, a container cgroup: still not one of ours."""
    cid = f"6799-{uuid.uuid4()}"
    bundle = tmp_path / "bundle"
    make_rootfs(bundle / "rootfs")
    subprocess.run([runc_binary(), "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(terminal=False, args=["sleep", "600"],
                           user={"uid": uid_of(USER), "gid": uid_of(USER)})
    spec["root"] = {"path": "rootfs", "readonly": True}
    spec["linux"]["cgroupsPath"] = f"/wltest-storm/{cid}"
    (bundle / "config.json").write_text(json.dumps(spec))
    pid_file = tmp_path / "pid"
    try:
        with open(tmp_path / "runc.err", "w") as err:
            started = subprocess.run([runc_binary(), "run", "-d", "--pid-file", str(pid_file), cid],
                                     cwd=bundle, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        assert started.returncode == 0, (tmp_path / "runc.err").read_text()
        worker = prof.worker()
        result = prof.profile(worker, storm_command("jstack", worker.artifacts),
                              pid=int(pid_file.read_text()))
        assert_refused(result, {9})
        assert "not the init of a container this launcher started" in result.stderr
        assert not (worker.artifacts / "profile-jstack.out").exists()
    finally:
        subprocess.run([runc_binary(), "delete", "-f", cid], capture_output=True)


def test_paused_or_reaped_containers_are_refused(prof):
    worker = prof.worker()
    data = storm_command("jstack", worker.artifacts)
    subprocess.run([runc_binary(), "pause", worker.container_id], check=True)
    try:
        result = prof.profile(worker, data)
        assert_refused(result, {9})
        assert "'paused', not running" in result.stderr
    finally:
        subprocess.run([runc_binary(), "resume", worker.container_id], check=True)
    assert worker.reap(keep=100).returncode == 0
    result = prof.profile(worker, data)
    assert_refused(result, {9})
    assert not (worker.artifacts / "profile-jstack.out").exists()


# --- attacks --------------------------------------------------------------------------------
def test_modules_planted_in_a_layer_never_run(prof, profile_layer):
    """A layer holds a module wherever the launcher's Python could look for one (its own
    package path, the standard library, syslog, _socket, encodings); profiling, failing and
    being refused import none of them."""
    worker = prof.worker()
    planted = profile_layer[1]
    root = f"/proc/{worker.pid}/root"
    for path in planted:
        if path.endswith(("/syslog.py", "/core/audit.py", "/encodings/unicode_escape.py")):
            assert os.path.exists(root + path), path  # really there for a root process to find
    assert prof.profile(worker, storm_command("jstack", worker.artifacts)).returncode == 0
    assert prof.profile(worker, storm_command("exit4", worker.artifacts)).returncode == 4
    assert_refused(prof.profile(worker, b" 1 jstack $(id)"), {31})
    os.chmod(prof.profiler, 0o775)
    assert_refused(prof.profile(worker, storm_command("jstack", worker.artifacts)), {7})
    os.chmod(prof.profiler, 0o755)
    assert not (worker.workdir / "tmp" / "planted-ran").exists()


def test_an_init_in_namespaces_of_its_own_is_refused(prof):
    """The worker's init makes its own user and mount namespaces, where it is root and mounts
    a profiler of its own over storm.home/bin: nothing runs there, the launcher refuses."""
    script = (f"umask 0027\necho up > $WORKDIR/up.out\n"
              f"exec unshare -Urm sh -c \"mount -t tmpfs none {prof.home}/bin && "
              f"echo echo fake ran > {prof.home}/bin/profiler.sh && "
              f"chmod 755 {prof.home}/bin/profiler.sh && echo in > $WORKDIR/unshared.out && "
              f"exec sleep 600\"\n")
    worker = prof.worker(script)
    assert worker.wait_for("unshared.out") == "in\n"
    result = prof.profile(worker, storm_command("jstack", worker.artifacts))
    assert_refused(result, {9})
    assert "left the container's user namespace" in result.stderr
    assert not (worker.artifacts / "profile-jstack.out").exists()


def test_a_worker_process_in_namespaces_of_its_own_changes_nothing(prof):
    """Another process of the worker unshares: the profiler still joins the init's."""
    script = ("umask 0027\nunshare -Urm sleep 600 &\necho $! > $WORKDIR/child.out\n" + WORKER)
    worker = prof.worker(script)
    command = write_command(worker.artifacts, storm_command("hold", worker.artifacts))
    launcher = run_background(prof.launcher, USER, "profile-oci-container", worker.pid, command)
    try:
        profiler = find_process(str(prof.profiler), "hold", str(worker.artifacts))
        assert confinement(profiler)["ns"] == confinement(worker.pid)["ns"]
    finally:
        (worker.artifacts / "release").touch()
        launcher.communicate(timeout=60)
    assert launcher.returncode == 0


def test_a_worker_process_that_ptraces_the_profiler_gains_nothing(prof):
    """The worker attaches to the profiler and makes it exec a setuid-root program: the
    profiler has the worker's no_new_privs and no capability, so the program runs as the
    user. (Without no_new_privs it would run as root: the control below.)"""
    script = ("umask 0027\necho up > $WORKDIR/up.out\n"
              "while [ ! -e $WORKDIR/go ]; do sleep 0.1; done\n"
              "wl-tracer hold /dev/shm/escalated.out > $WORKDIR/trace.out 2>&1\n"
              "exec sleep 600\n")
    worker = prof.worker(script)
    shm = f"/proc/{worker.pid}/root/dev/shm"  # the worker's /dev/shm, seen from the host
    process = {"terminal": False, "user": {"uid": uid_of(USER), "gid": uid_of(USER)},
               "args": ["/bin/wl-suid", "/dev/shm/control.out"], "env": ["PATH=/bin"],
               "cwd": "/", "noNewPrivileges": False}
    spec = worker.workdir / "control.json"
    spec.write_text(json.dumps(process))
    ran = subprocess.run([runc_binary(), "exec", "--process", str(spec), worker.container_id],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert report_status(Path(shm, "control.out"))["Uid"] == f"{uid_of(USER)} 0 0 0"  # setuid works

    command = write_command(worker.artifacts, storm_command("hold", worker.artifacts))
    launcher = run_background(prof.launcher, USER, "profile-oci-container", worker.pid, command)
    try:
        find_process(str(prof.profiler), "hold", str(worker.artifacts))
        (worker.workdir / "go").touch()
        assert wait_for(worker.workdir / "trace.out").startswith("attached")
        escalated = report_status(Path(shm, "escalated.out"))
    finally:
        (worker.artifacts / "release").touch()
        launcher.communicate(timeout=60)
    uid = uid_of(USER)
    assert escalated["Uid"] == f"{uid} {uid} {uid} {uid}", escalated
    assert escalated["NoNewPrivs"] == "1" and escalated["CapEff"] == escalated["CapBnd"] == "0" * 16


def report_status(path) -> dict:
    text = wait_for(path)
    return {key: " ".join(value.split()) for key, value in
            (line.split(":", 1) for line in text.splitlines())}


def test_the_audit_line_reaches_the_hosts_log(prof, tmp_path):
    """The container's /etc/passwd and /etc/group hold control characters and other names
    for the supervisor and the user: the audit line (on the host's syslog) has the host's."""
    worker = prof.worker()
    receiver = SyslogReceiver(tmp_path)
    try:
        command = write_command(worker.artifacts, storm_command("jstack", worker.artifacts))
        result = run_logged(prof.launcher, receiver, USER, "profile-oci-container", worker.pid,
                            command)
        assert result.returncode == 0, result.stderr
        logged = receiver.lines(f"ARGS={worker.pid} {command}")
        refused = run_logged(prof.launcher, receiver, USER, "profile-oci-container", 1, command)
        assert_one_line(refused.stderr)
        refusal = receiver.lines(f"ARGS=1 {command}")
    finally:
        receiver.close()
    assert len(logged) == 1, logged
    _, text = parse(logged[0])
    found = fields(logged[0])
    assert {key: found.get(key) for key in ("CALLER", "UID", "USER", "COMMAND", "VERB",
                                            "OUTCOME", "EXIT", "CHILD", "ARGS")} == {
        "CALLER": SUPERVISOR, "UID": "1901", "USER": USER, "COMMAND": "profile-oci-container",
        "VERB": "nsenter", "OUTCOME": "ok", "EXIT": "0", "CHILD": "runc exec:0",
        "ARGS": f"{worker.pid} {command}"}
    assert "\x1b" not in text and "\x07" not in text
    assert len(refusal) == 1 and "EXIT=9" in refusal[0] and "pid 1" in refusal[0]
