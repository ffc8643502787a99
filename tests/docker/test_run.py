"""launch-docker-container / run-docker-cmd / docker-run for real, against dockerd."""

import os
import stat
import subprocess

from support.docker import docker, lines, staged_mounts
from support.env import gid_of_group, uid_of
from support.stormlife import container_mounts

USER = "wlalice"


def _status_fields(pid: int) -> dict:
    text = open(f"/proc/{pid}/status").read()
    return {k: v.split() for k, v in (line.split(":", 1) for line in text.splitlines())}


def _launch(dstorm, verb="launch-docker-container", user=USER):
    wid, workdir = dstorm.worker(user)
    result = dstorm.run(user, verb, workdir, dstorm.run_tokens(wid, workdir, user))
    assert result.returncode == 0, result.stderr
    return wid, workdir, result


def _same_object(a, b) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_storm_command_line_runs_as_the_user(dstorm):
    wid, workdir = dstorm.worker(USER)
    result = dstorm.storm_call(USER, wid, "docker-run")
    assert result.returncode == 0, result.stderr
    cid = result.stdout.strip()
    probe = lines(dstorm.wait_for(workdir / "probe.out"))
    uid = uid_of(USER)
    assert probe["uid"] == str(uid)
    assert sorted(map(int, probe["gids"].split())) == sorted(set(os.getgrouplist(USER, uid)))
    assert probe["mkdir"] == "denied"  # the policy's seccomp profile is applied
    pid = dstorm.pid_of(wid)
    status = _status_fields(pid)
    assert status["Uid"] == [str(uid)] * 4
    assert int(status["CapEff"][0], 16) == 0 and int(status["CapBnd"][0], 16) == 0
    assert status["NoNewPrivs"] == ["1"] and status["Seccomp"] == ["2"]
    # The cid file Storm reads: written by the user, readable by the supervisor's group.
    cidfile = workdir / "container.cid"
    st = cidfile.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == uid and st.st_gid == gid_of_group()
    full_id = docker("inspect", "--format", "{{.Id}}", wid).stdout.strip()
    assert cidfile.read_text() == cid == full_id
    # The workdir was set up as the classic verbs do, tmp without setgid.
    assert workdir.stat().st_uid == uid and (workdir / "tmp").stat().st_uid == uid
    assert not (workdir / "tmp").stat().st_mode & stat.S_ISGID
    host_config = ("{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CgroupParent}} "
                   "{{.HostConfig.Privileged}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}")
    info = docker("inspect", "--format", host_config, wid).stdout.split()
    assert info == ["true", "/wltest-storm", "false", str(256 << 20), "1500000000"]
    # docker got the pinned objects through the launcher's detached tree; nothing of it is
    # mounted on the host or left in the run root.
    mounts = docker("inspect", "--format",
                    "{{range .Mounts}}{{.Source}} {{.Destination}} {{.RW}};{{end}}", wid).stdout
    mounts = [m.split() for m in mounts.strip().strip(";").split(";")]
    assert len(mounts) == 10 and all(s.startswith("/proc/") and "/fd/" in s for s, _, _ in mounts)
    for _, destination, rw in mounts:
        source = "/".join(["", *str(workdir).split("/")[1:], "tmp"]) if destination == "/tmp" \
            else destination
        if source.startswith("/sys"):
            continue
        assert _same_object(os.stat(f"/proc/{pid}/root{destination}"), os.stat(source)), destination
    assert staged_mounts(dstorm.launcher.run_root) == []
    assert os.listdir(dstorm.launcher.run_root / "docker") == []


def test_storm_lifecycle_wait_ps_stop_rm(dstorm):
    """DockerManager's calls after the launch: the wait thread, then kill (ps, stop, rm),
    then ps until dead; each through the launcher with Storm's own command files."""
    wid, workdir = dstorm.worker(USER)
    assert dstorm.storm_call(USER, wid, "docker-run").returncode == 0
    dstorm.wait_for(workdir / "probe.out")
    workdir_cmd = workdir / "docker-wait.sh"
    dstorm.write_file(workdir_cmd, f"wait {wid}")
    waiter = subprocess.Popen(
        [str(dstorm.launcher.binary), USER, "run-docker-cmd", str(workdir), str(workdir_cmd)],
        user=uid_of("wlsuper"), group=gid_of_group(), extra_groups=[gid_of_group()],
        env={"PATH": "/usr/bin:/bin"}, cwd=str(workdir), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        result = dstorm.storm_call(USER, wid, "docker-ps")
        cid = (workdir / "container.cid").read_text()
        assert result.returncode == 0 and result.stdout.strip() == cid[:12], result.stderr
        assert cid.startswith(result.stdout.strip().split("\n")[-1])  # areAllProcessesDead
        assert dstorm.storm_call(USER, wid, "docker-stop").returncode == 0
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0 and out.strip() == "137", err  # sleep got SIGKILL
        assert dstorm.state(wid)[1] == "exited"
        assert dstorm.storm_call(USER, wid, "docker-rm").returncode == 0
        assert not dstorm.exists(wid)
        result = dstorm.storm_call(USER, wid, "docker-ps")
        assert result.returncode == 0 and result.stdout == ""  # Storm: all processes dead
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def test_docker_run_verb(dstorm):
    wid, workdir, result = _launch(dstorm, verb="docker-run")
    assert (workdir / "container.cid").read_text() == result.stdout.strip()
    assert dstorm.state(wid)[1] == "running"


def test_rm_force_removes_a_running_container(dstorm):
    wid, workdir, _ = _launch(dstorm)
    result = dstorm.storm_call(USER, wid, "docker-force-rm")
    assert result.returncode == 0, result.stderr
    assert not dstorm.exists(wid)


def test_a_start_that_fails_leaves_no_container(dstorm):
    """docker create succeeds, docker start fails (the image has no bash): the container that
    never ran is removed, nothing is left in the run root; docker's status is ours."""
    import io
    import tarfile

    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    docker("import", "-", "wl-tests/empty:1", input=empty.getvalue(), text=False)
    dstorm.write_policy(images=["wl-tests/empty:1"])
    wid, workdir = dstorm.worker()
    result = dstorm.storm_call(USER, wid, "docker-run",
                               dstorm.storm_run_line(wid, image="wl-tests/empty:1"))
    assert result.returncode not in (0, 39, 40), result.stderr
    assert "bash" in result.stderr
    assert not dstorm.exists(wid)
    assert not (workdir / "container.cid").exists() or \
        len((workdir / "container.cid").read_text()) == 64
    assert os.listdir(dstorm.launcher.run_root / "docker") == []


def test_planted_cidfile_symlink_is_not_followed(dstorm):
    """The user plants container.cid -> a root file; docker (root) must not write through it."""
    wid, workdir = dstorm.worker()
    victim = dstorm.base / "victim"
    victim.write_text("root's\n")
    os.chmod(victim, 0o644)
    (workdir / "container.cid").symlink_to(victim)
    os.lchown(workdir / "container.cid", uid_of(USER), uid_of(USER))
    result = dstorm.storm_call(USER, wid, "docker-run")
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "root's\n"
    assert not (workdir / "container.cid").is_symlink()
    assert (workdir / "container.cid").read_text() == result.stdout.strip()


def test_host_staging_left_by_a_killed_launch_is_cleared_by_the_next_call(dstorm, tmp_path):
    """Before Linux 6.15 docker's sources are staged in the run root; a launch killed -9
    there leaves <worker id>.staging with a bind mounted and no record (and a launcher of the
    previous version left <worker id>.<pid>.<random>): the next docker call detaches and
    removes them, and is not put off by an entry it does not know."""
    staging = dstorm.launcher.run_root / "docker"
    staging.mkdir(mode=0o700, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = [staging / "8198e1f0-f323-4b9d-8625-e4fd640cd058.staging",
                 staging / f"9198e1f0-f323-4b9d-8625-e4fd640cd058.{dead.pid}.0badf00d"]
    source = tmp_path / "source"
    source.mkdir()
    for directory in abandoned:
        directory.mkdir(mode=0o700)
        (directory / "0").mkdir()
        subprocess.run(["mount", "--bind", str(source), str(directory / "0")], check=True)
    (staging / "not-ours").write_text("x")
    try:
        wid, workdir = dstorm.worker()
        assert dstorm.storm_call(USER, wid, "docker-run").returncode == 0
        for directory in abandoned:
            assert not directory.exists()
            assert str(directory) not in open("/proc/self/mountinfo").read()
        assert source.exists()  # the staged source itself is untouched
    finally:
        (staging / "not-ours").unlink()
        for directory in abandoned:
            subprocess.run(["umount", "-l", str(directory / "0")], capture_output=True)


def test_storm_variants_numa_and_no_seccomp_no_memory(dstorm):
    """E1 as Storm writes it without a seccomp profile and without memory enforcement, and
    with a NUMA binding (addCpuSetBindings): accepted and applied."""
    dstorm.write_policy(seccomp=False)
    wid, workdir = dstorm.worker()
    line = dstorm.storm_run_line(wid, memory_mb=None, cpu=100, cores=["0"], memory_zone="0")
    assert " --cpuset-cpus=0 --cpuset-mems=0 --cgroup-parent=" in line
    assert "--memory" not in line and "seccomp" not in line and "--cpus=1.0 " in line
    result = dstorm.storm_call(USER, wid, "docker-run", line)
    assert result.returncode == 0, result.stderr
    fields = "{{.HostConfig.CpusetCpus}} {{.HostConfig.CpusetMems}} {{.HostConfig.Memory}}"
    assert docker("inspect", "--format", fields, wid).stdout.split() == ["0", "0", "0"]
    assert lines(dstorm.wait_for(workdir / "probe.out"))["mkdir"] == "allowed"


def test_a_stopped_worker_started_again_by_hand_binds_nothing(dstorm):
    """The pinned sources died with the launcher: `docker start` of an exited worker (Storm
    never does it; an operator might) fails instead of binding something else."""
    wid, workdir = dstorm.worker()
    assert dstorm.storm_call(USER, wid, "docker-run").returncode == 0
    docker("stop", "--time=1", wid)
    result = docker("start", wid, check=False)
    assert result.returncode != 0 and "/proc/" in result.stderr, result.stderr
    assert dstorm.state(wid)[1] in ("exited", "created")


def test_the_audit_line_of_a_launch_a_refusal_and_a_killed_launch_completed(dstorm, tmp_path):
    """One line per call: the docker sub-command, the container, the image, each docker
    child's status; a policy refusal is refused(policy); the call that completes a killed
    launch says so."""
    from support.syslog import SyslogReceiver, fields

    receiver = SyslogReceiver(tmp_path)
    try:
        wid, workdir = dstorm.worker()
        command = dstorm.write_file(workdir / "docker-run.sh", dstorm.storm_run_line(wid))
        result = receiver.run(dstorm.launcher, USER, "launch-docker-container", workdir, command)
        assert result.returncode == 0, result.stderr
        [line] = receiver.lines(f"ARGS={workdir} {command}")
        found = fields(line)
        assert (found["VERB"], found["OUTCOME"], found["EXIT"]) == ("docker-run", "ok", "0")
        assert (found["DOCKER"], found["CONTAINER"], found["IMAGE"]) == ("run", wid, dstorm.image)
        assert found["CHILD"] == "docker create:0,docker start:0"
        other, other_dir = dstorm.worker()
        refused = dstorm.write_file(other_dir / "docker-run.sh",
                                    dstorm.storm_run_line(other, image="busybox:latest"))
        result = receiver.run(dstorm.launcher, USER, "launch-docker-container", other_dir,
                              refused)
        assert result.returncode == 40
        [line] = receiver.lines(f"ARGS={other_dir} {refused}")
        assert fields(line)["OUTCOME"] == "refused(policy)" and "CHILD" not in fields(line)
        # A launch killed after docker create: the next call's line names what it completed.
        docker_dir = dstorm.launcher.run_root / "docker"
        record = docker_dir / other
        record.write_text(f"user={USER}\ncidfile={other_dir}/container.cid\n")
        os.chmod(record, 0o600)
        docker("create", "--name", other, dstorm.image, "true")
        ps = dstorm.write_file(other_dir / "docker-ps.sh",
                               f"ps --filter=name={other} --quiet=true")
        result = receiver.run(dstorm.launcher, USER, "run-docker-cmd", other_dir, ps)
        assert result.returncode == 0, result.stderr
        [line] = receiver.lines(f"ARGS={other_dir} {ps}")
        found = fields(line)
        assert found["COMPLETED"] == other and found["DOCKER"] == "ps"
        assert found["CHILD"] == "docker inspect:0,docker rm:0,docker ps:0"
        assert not dstorm.exists(other) and os.listdir(docker_dir) == []
        assert len((other_dir / "container.cid").read_text()) == 64
    finally:
        receiver.close()


def test_binds_are_nosuid_nodev_all_the_way_down(dstorm):
    """docker applies a bind's flags to its top mount only; the pinned sources carry nosuid
    and nodev on every mount below (mount_setattr on the clones), so a submount of a source
    never honours set-id bits or device nodes in the container."""
    below = dstorm.home / "sub"
    below.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(below)], check=True)
    try:
        wid, workdir = dstorm.worker(command="cat /proc/self/mountinfo > {workdir}/mounts.out; "
                                             "echo up > {workdir}/probe.out; exec sleep 600")
        result = dstorm.storm_call("wlalice", wid, "docker-run")
        assert result.returncode == 0, result.stderr
        dstorm.wait_for(workdir / "probe.out")
        options = container_mounts((workdir / "mounts.out").read_text())
        assert {"nosuid", "nodev"} <= options[str(below)], options[str(below)]
    finally:
        dstorm.cleanup()
        subprocess.run(["umount", "-l", str(below)], check=False)
        below.rmdir()
