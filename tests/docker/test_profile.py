"""profile-docker-container (our verb nsenter) for real: Storm's command-file bytes, a worker
started by launch-docker-container on a real dockerd, and the profiler seen from the host.

The profiler runs with runc exec against docker's own runc state: it must get exactly the
worker's confinement (with umask 0027, which `docker exec` cannot give); the launcher must
never run in the container and must profile only the user's own running worker.
"""

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from support.docker import TOPOLOGY, DockerStorm, seccomp_profile
from support.dockerd import docker, import_tree
from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.hostile import assert_one_line, assert_refused, run_as_supervisor
from support.profiling import (EXTRA_APPLETS, STORM_ACTIONS, confinement, find_process,
                               hostile_tree, install_profiler, open_files,
                               processes_in_mount_namespace, run_background, run_logged,
                               storm_command, table, wait_for, write_command)
from support.rootfs import APPLETS, make_rootfs
from support.syslog import SyslogReceiver, fields, parse

WORKER = "#!/bin/bash\numask 0027\n{extra}echo up > {workdir}/up.out\nexec sleep 600\n"
VERBS = ("profile-docker-container", "nsenter")
MKDIR_DENIED = seccomp_profile(denied=("mkdir", "mkdirat"))  # docker-run refuses an allowing default


@pytest.fixture(scope="session")
def profile_image(installed, dockerd):
    """The test image plus support.profiling.hostile_tree, imported for this session."""
    root = Path(tempfile.mkdtemp(prefix="wl-profile-image-"))
    tools = Path(tempfile.mkdtemp(prefix="wl-profile-tools-"))
    tag = f"wl-tests/profile:{uuid.uuid4().hex[:12]}"
    try:
        make_rootfs(root, tuple(APPLETS) + EXTRA_APPLETS)
        planted = hostile_tree(root, installed.prefix, tools)
        import_tree(root, tag)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(tools, ignore_errors=True)
    yield tag, planted
    docker("rmi", "-f", tag, check=False)


class Profiling(DockerStorm):
    """Storm's docker layout with the stand-in profiler in storm.home/bin."""

    def __init__(self, launcher, base, image):
        super().__init__(launcher, base, image)
        install_profiler(self.home)
        self.port_dir = self.artifacts / TOPOLOGY / "6703"

    def launch(self, user: str = USER, extra: str = ""):
        """A running worker of `user`: (worker id, workdir, its artifacts dir, init pid)."""
        wid, workdir = self.worker(user)
        script = workdir / "storm-worker-script.sh"
        script.write_text(WORKER.format(extra=extra.format(workdir=workdir), workdir=workdir))
        for path in (self.port_dir.parent, self.port_dir):  # as artifacts-dir leaves them
            os.chown(path, uid_of(user), gid_of_group())
            os.chmod(path, 0o2770)
        result = self.run(user, "launch-docker-container", workdir,
                          self.run_tokens(wid, workdir, user))
        assert result.returncode == 0, result.stderr
        self.wait_for(workdir / "up.out")
        return wid, workdir, self.port_dir, self.pid_of(wid)

    def profile(self, target, data: bytes, verb: str = "profile-docker-container"):
        command = write_command(self.port_dir, data)
        return self.launcher.run(USER, verb, target, command)


@pytest.fixture
def prof(launcher, dockerd, profile_image):
    base = Path(tempfile.mkdtemp(prefix="dstorm-", dir=launcher.prefix))
    os.chmod(base, 0o755)
    env = Profiling(launcher, base, profile_image[0])
    try:
        yield env
    finally:
        env.cleanup()
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def report(path):
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)


# --- Storm's requests -----------------------------------------------------------------------
@pytest.mark.parametrize("verb", VERBS)
def test_storms_requests_run_the_profiler_in_the_worker(prof, verb):
    wid, workdir, artifacts, _ = prof.launch()
    for action in STORM_ACTIONS:
        with_dir = action not in ("start", "kill")
        result = prof.profile(wid, storm_command(action, artifacts if with_dir else None), verb)
        assert result.returncode == 0, (action, result.stderr)
        where = artifacts if with_dir else workdir / "tmp"  # /tmp in the worker
        out = where / f"profile-{action}.out"
        seen = report(out)
        assert seen["args"] == f"1 {action}" + (f" {artifacts}" if with_dir else "")
        uid = uid_of(USER)
        assert seen["uid"] == f"{uid} {uid}" and seen["umask"] == "0027" and seen["cwd"] == "/"
        assert sorted(map(int, seen["gids"].split())) == sorted(set(os.getgrouplist(USER, uid)))
        assert out.stat().st_uid == uid and out.stat().st_mode & 0o777 == 0o640
        env = dict(line.split("=", 1) for line in
                   (where / f"profile-{action}.env").read_text().splitlines())
        assert env.pop("PATH") == "/usr/sbin:/usr/bin:/sbin:/bin" and env.pop("HOME") == "/"
        assert set(env) <= {"PWD", "SHLVL"}, env


def test_the_profilers_exit_status_is_ours(prof):
    wid, _, artifacts, _ = prof.launch()
    for code in (3, 255, 0):
        result = prof.profile(wid, storm_command(f"exit{code}", artifacts))
        assert result.returncode == code, result.stderr


def test_the_profiler_gets_the_callers_limits_and_default_signals(prof):
    wid, _, artifacts, _ = prof.launch()
    prof.profiler.write_text("#!/bin/sh\n{ grep -E '^Sig(Ign|Blk):' /proc/self/status; "
                             "ulimit -S -n; ulimit -S -f; } > \"$3/limits.out\"\n")
    command = write_command(artifacts, storm_command("limits", artifacts))
    prelude = ("resource.setrlimit(resource.RLIMIT_NOFILE, (77, resource.getrlimit("
               "resource.RLIMIT_NOFILE)[1]))\n"
               "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))\n"
               "signal.signal(signal.SIGPIPE, signal.SIG_IGN)\n")
    result = run_as_supervisor(prof.launcher, [USER, "profile-docker-container", wid, command],
                               prelude)
    assert result.returncode == 0, result.stderr
    sig_blk, sig_ign, nofile, fsize = (artifacts / "limits.out").read_text().split("\n")[:4]
    assert sig_blk.startswith("SigBlk:") and int(sig_blk.split()[1], 16) == 0
    # Every standard signal at its default (CPython ignores SIGPIPE and SIGXFSZ, which the
    # caller's own process here ignores too). Beyond them only glibc's internal 32 and 33
    # may be ignored: glibc's posix_spawn sets them so in every child (Storm's JVM starts
    # the launcher that way too), and glibc programs install their handlers when they use
    # them.
    ignored = int(sig_ign.split()[1], 16)
    assert sig_ign.startswith("SigIgn:") and ignored & ~(3 << 31) == 0, hex(ignored)
    assert (nofile, fsize) == ("77", str((1 << 20) // 512))


# --- the confinement ------------------------------------------------------------------------
def test_the_profiler_has_exactly_the_workers_confinement(prof, capsys):
    """Inspected from the host while it runs: the same status (uids, groups, umask,
    no_new_privs, seccomp, every capability set), the same namespaces and cgroups as the
    worker; the worker's seccomp rule (mkdir refused) applies to it too. `docker exec` is
    measured beside it: the same, but umask 0022 (why the launcher uses runc exec)."""
    prof.seccomp.write_text(MKDIR_DENIED)
    wid, workdir, artifacts, pid = prof.launch(
        extra="if mkdir {workdir}/made-by-worker 2> /dev/null; then echo ok; else echo refused; "
              "fi > {workdir}/mkdir.out\n")
    assert (workdir / "mkdir.out").read_text() == "refused\n"
    command = write_command(artifacts, storm_command("hold", artifacts))
    launcher = run_background(prof.launcher, USER, "profile-docker-container", wid, command)
    exec_probe = subprocess.Popen(["docker", "exec", "--user", f"{uid_of(USER)}:{uid_of(USER)}",
                                   wid, "sleep", "31"])
    try:
        profiler = find_process(str(prof.profiler), "hold", str(artifacts))
        seen_worker, seen_profiler = confinement(pid), confinement(profiler)
        seen_exec = confinement(find_process("sleep", "31", mnt=seen_worker["ns"]["mnt"]))
        inside = processes_in_mount_namespace(seen_worker["ns"]["mnt"])
        launcher_mnt = os.readlink(f"/proc/{launcher.pid}/ns/mnt")
        fds = open_files(profiler)
    finally:
        (artifacts / "release").touch()
        exec_probe.kill()
        exec_probe.wait()
        out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, err
    with capsys.disabled():
        print(f"\ndocker worker {wid}, seen from the host:\n"
              + table({"worker (init)": seen_worker, "profiler": seen_profiler,
                       "docker exec (not used)": seen_exec}))
    assert seen_profiler == seen_worker
    uid = uid_of(USER)
    assert seen_profiler["Uid"] == seen_profiler["Gid"] == f"{uid} {uid} {uid} {uid}"
    assert seen_profiler["Groups"] == " ".join(map(str, sorted(set(os.getgrouplist(USER, uid)))))
    assert seen_profiler["Umask"] == "0027" and seen_profiler["NoNewPrivs"] == "1"
    assert (seen_profiler["Seccomp"], seen_profiler["Seccomp_filters"]) == ("2", "1")
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert seen_profiler[capabilities] == "0000000000000000"
    host = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in seen_worker["ns"]}
    for kind in ("mnt", "pid", "ipc", "uts"):
        assert seen_profiler["ns"][kind] != host[kind]
    container_id = docker("inspect", "--format", "{{.Id}}", wid).stdout.strip()
    assert container_id in seen_profiler["cgroup"]
    assert inside and all(uids == (uid,) * 4 for _, uids in inside), inside
    assert launcher_mnt == host["mnt"]
    assert not [fd for fd in fds if fd.startswith("memfd:")], fds
    result = prof.profile(wid, storm_command("mkdir", artifacts))
    assert result.returncode == 0, result.stderr
    assert report(artifacts / "profile-mkdir.out")["mkdir"] == "refused"


# --- only the user's own running worker ------------------------------------------------------
def test_another_users_worker_is_refused(prof):
    wid, _, artifacts, pid = prof.launch(user="wlbob")
    os.chmod(artifacts.parent, 0o2755)  # so that only the worker id decides
    os.chown(artifacts, uid_of(USER), gid_of_group())
    result = prof.profile(wid, storm_command("jstack", artifacts))
    assert_refused(result, {9})
    assert f"runs as '{uid_of('wlbob')}:{uid_of('wlbob')}', not as {USER}" in result.stderr
    result = prof.profile(pid, storm_command("jstack", artifacts), "profile-oci-container")
    assert_refused(result, {9})
    assert not (artifacts / "profile-jstack.out").exists()


def test_containers_that_are_not_the_users_running_worker_are_refused(prof):
    wid, workdir, artifacts, pid = prof.launch()
    data = storm_command("jstack", artifacts)
    result = prof.profile(pid, data, "profile-oci-container")  # a docker worker is no runc one
    assert_refused(result, {9})
    assert "not the init of a container this launcher started" in result.stderr
    rooted = str(uuid.uuid4())  # a worker id, but started without --user
    docker("run", "-d", "--name", rooted, prof.image, "sleep", "300")
    try:
        result = prof.profile(rooted, data)
        assert_refused(result, {9})
        assert "runs as '', not as wlalice" in result.stderr
    finally:
        docker("rm", "-f", rooted, check=False)
    docker("stop", "-t", "1", wid)
    result = prof.profile(wid, data)
    assert_refused(result, {9})
    assert "'exited', not running" in result.stderr
    result = prof.profile(str(uuid.uuid4()), data)
    assert_refused(result, {9})
    assert "no running docker container" in result.stderr
    for name in ("--format=x", wid.upper(), wid + "x", "../" + wid[3:]):
        assert_refused(prof.profile(name, data), {41})
    assert not (artifacts / "profile-jstack.out").exists()


# --- attacks --------------------------------------------------------------------------------
def test_modules_planted_in_the_image_never_run(prof, profile_image):
    wid, workdir, artifacts, pid = prof.launch()
    for path in profile_image[1]:
        if path.endswith(("/syslog.py", "/core/audit.py", "/encodings/unicode_escape.py")):
            assert os.path.exists(f"/proc/{pid}/root{path}"), path
    assert prof.profile(wid, storm_command("jstack", artifacts)).returncode == 0
    assert prof.profile(wid, storm_command("exit4", artifacts)).returncode == 4
    assert_refused(prof.profile(wid, b" 1 jstack $(id)"), {31})
    assert not (workdir / "tmp" / "planted-ran").exists()


def test_an_init_in_namespaces_of_its_own_is_refused(prof):
    home_bin = prof.home / "bin"
    wid, workdir, artifacts, _ = prof.launch(
        extra=f"echo up > {{workdir}}/up.out\nexec unshare -Urm sh -c \"mount -t tmpfs none "
              f"{home_bin} && echo echo fake > {home_bin}/profiler.sh && chmod 755 "
              f"{home_bin}/profiler.sh && echo in > {{workdir}}/unshared.out && exec sleep 600\"\n")
    assert wait_for(workdir / "unshared.out") == "in\n"
    result = prof.profile(wid, storm_command("jstack", artifacts))
    assert_refused(result, {9})
    assert "left the container's user namespace" in result.stderr
    assert not (artifacts / "profile-jstack.out").exists()


def test_a_worker_process_that_ptraces_the_profiler_gains_nothing(prof):
    wid, workdir, artifacts, pid = prof.launch(
        extra="echo up > {workdir}/up.out\nwhile [ ! -e {workdir}/go ]; do sleep 0.1; done\n"
              "wl-tracer hold /dev/shm/escalated.out > {workdir}/trace.out 2>&1\n")
    command = write_command(artifacts, storm_command("hold", artifacts))
    launcher = run_background(prof.launcher, USER, "profile-docker-container", wid, command)
    try:
        find_process(str(prof.profiler), "hold", str(artifacts))
        (workdir / "go").touch()
        assert wait_for(workdir / "trace.out").startswith("attached")
        text = wait_for(Path(f"/proc/{pid}/root/dev/shm/escalated.out"))
    finally:
        (artifacts / "release").touch()
        launcher.communicate(timeout=60)
    escalated = {key: " ".join(value.split()) for key, value in
                 (line.split(":", 1) for line in text.splitlines())}
    uid = uid_of(USER)
    assert escalated["Uid"] == f"{uid} {uid} {uid} {uid}", escalated
    assert escalated["NoNewPrivs"] == "1" and escalated["CapEff"] == escalated["CapBnd"] == "0" * 16


def test_the_audit_line_reaches_the_hosts_log(prof, tmp_path):
    """The image's /etc/passwd and /etc/group hold control characters and other names: the
    audit line, on the host's syslog, has the host's."""
    wid, _, artifacts, _ = prof.launch()
    receiver = SyslogReceiver(tmp_path)
    try:
        command = write_command(artifacts, storm_command("jstack", artifacts))
        result = run_logged(prof.launcher, receiver, USER, "profile-docker-container", wid, command)
        assert result.returncode == 0, result.stderr
        logged = receiver.lines(f"ARGS={wid} {command}")
        missing = str(uuid.uuid4())
        refused = run_logged(prof.launcher, receiver, USER, "profile-docker-container", missing,
                             command)
        assert_one_line(refused.stderr)
        refusal = receiver.lines(f"ARGS={missing} {command}")
    finally:
        receiver.close()
    assert len(logged) == 1, logged
    _, text = parse(logged[0])
    found = fields(logged[0])
    assert {key: found.get(key) for key in ("CALLER", "UID", "USER", "COMMAND", "VERB",
                                            "OUTCOME", "EXIT", "ARGS")} == {
        "CALLER": SUPERVISOR, "UID": "1901", "USER": USER, "COMMAND": "profile-docker-container",
        "VERB": "nsenter", "OUTCOME": "ok", "EXIT": "0", "ARGS": f"{wid} {command}"}
    assert "\x1b" not in text and "\x07" not in text
    assert len(refusal) == 1 and "EXIT=9" in refusal[0]
