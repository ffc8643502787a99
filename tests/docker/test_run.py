"""launch-docker-container / run-docker-cmd / docker-run for real, against dockerd."""

import os
import stat

from support.docker import docker, lines
from support.env import gid_of_group, uid_of

USER = "wlalice"


def _status_fields(pid: int) -> dict:
    text = open(f"/proc/{pid}/status").read()
    return {k: v.split() for k, v in (line.split(":", 1) for line in text.splitlines())}


def _launch(dstorm, verb="launch-docker-container", user=USER):
    wid, workdir = dstorm.worker(user)
    result = dstorm.run(user, verb, workdir, dstorm.run_tokens(wid, workdir, user))
    assert result.returncode == 0, result.stderr
    return wid, workdir, result


def test_storm_command_line_runs_as_the_user(dstorm):
    wid, workdir, result = _launch(dstorm)
    cid = result.stdout.strip()
    probe = lines(dstorm.wait_for(workdir / "probe.out"))
    uid = uid_of(USER)
    assert probe["uid"] == str(uid)
    assert sorted(map(int, probe["gids"].split())) == sorted(set(os.getgrouplist(USER, uid)))
    status = _status_fields(dstorm.pid_of(wid))
    assert status["Uid"] == [str(uid)] * 4
    assert int(status["CapEff"][0], 16) == 0 and int(status["CapBnd"][0], 16) == 0
    assert status["NoNewPrivs"] == ["1"]
    # The cid file Storm reads: written by the user, readable by the supervisor's group.
    cidfile = workdir / "container.cid"
    st = cidfile.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == uid and st.st_gid == gid_of_group()
    full_id = docker("inspect", "--format", "{{.Id}}", wid).stdout.strip()
    assert cidfile.read_text() == cid == full_id
    # The workdir was set up as the classic verbs do, tmp without setgid.
    assert workdir.stat().st_uid == uid and (workdir / "tmp").stat().st_uid == uid
    assert not (workdir / "tmp").stat().st_mode & stat.S_ISGID
    host_config = "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CgroupParent}} " \
                  "{{.HostConfig.Privileged}}"
    info = docker("inspect", "--format", host_config, wid).stdout.split()
    assert info == ["true", "/wltest-storm", "false"]
    # docker got the pinned, staged sources; the staging is gone from the host.
    sources = docker("inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}", wid).stdout
    staging = f"{dstorm.launcher.run_root}/docker/"
    assert sources.split() and all(s.startswith(staging) for s in sources.split())
    assert staging not in open("/proc/self/mountinfo").read()
    assert os.listdir(staging) == []


def test_docker_run_verb_and_the_other_subcommands(dstorm):
    wid, workdir, _ = _launch(dstorm, verb="docker-run")
    dstorm.wait_for(workdir / "probe.out")
    run = dstorm.run
    status = "--format='{{.State.Status}}'"
    result = run("wlalice", "run-docker-cmd", workdir, ["inspect", status, wid])
    assert result.returncode == 0 and result.stdout.strip() == "'running'", result.stderr
    result = run("wlalice", "run-docker-cmd", workdir,
                 ["ps", "--quiet=true", f"--filter=name={wid}"])
    cid = (workdir / "container.cid").read_text()
    assert result.returncode == 0 and result.stdout.strip() == cid[:12], result.stderr
    result = run("wlalice", "run-docker-cmd", workdir, ["stop", "--time=1", wid])
    assert result.returncode == 0, result.stderr
    assert docker("inspect", "--format", "{{.State.Status}}", wid).stdout.strip() == "exited"
    result = run("wlalice", "run-docker-cmd", workdir, ["wait", wid])
    assert result.returncode == 0 and result.stdout.strip().isdigit(), result.stderr
    result = run("wlalice", "run-docker-cmd", workdir, ["inspect", status, wid])
    assert result.stdout.strip() == "'exited'"
    result = run("wlalice", "run-docker-cmd", workdir, ["rm", wid])
    assert result.returncode == 0, result.stderr
    assert not dstorm.exists(wid)
    result = run("wlalice", "run-docker-cmd", workdir, ["inspect", status, wid])
    assert result.returncode != 0  # Storm reads "all processes dead"


def test_rm_force_removes_a_running_container(dstorm):
    wid, workdir, _ = _launch(dstorm)
    result = dstorm.run(USER, "run-docker-cmd", workdir, ["rm", "--force", wid])
    assert result.returncode == 0, result.stderr
    assert not dstorm.exists(wid)


def test_pull_of_a_disallowed_image_is_refused(dstorm):
    wid, workdir = dstorm.worker()
    result = dstorm.run(USER, "run-docker-cmd", workdir, ["pull", "busybox:latest"])
    assert result.returncode == 40 and "busybox:latest" in result.stderr


def test_planted_cidfile_symlink_is_not_followed(dstorm):
    """The user plants container.cid -> a root file; docker (root) must not write through it."""
    wid, workdir = dstorm.worker()
    victim = dstorm.base / "victim"
    victim.write_text("root's\n")
    os.chmod(victim, 0o644)
    (workdir / "container.cid").symlink_to(victim)
    result = dstorm.run(USER, "launch-docker-container", workdir, dstorm.run_tokens(wid, workdir))
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "root's\n"
    assert not (workdir / "container.cid").is_symlink()
    assert (workdir / "container.cid").read_text() == result.stdout.strip()


def test_staging_of_a_killed_launch_is_cleared_by_the_next(dstorm, tmp_path):
    """A docker-run killed -9 between staging and docker leaves a staged bind mounted; the
    next docker-run detaches and removes it (its pid is gone)."""
    import subprocess

    staging = dstorm.launcher.run_root / "docker"
    staging.mkdir(mode=0o700, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = staging / f"8198e1f0-f323-4b9d-8625-e4fd640cd058.{dead.pid}.0badf00d"
    abandoned.mkdir(mode=0o700)
    source = tmp_path / "source"
    source.mkdir()
    (abandoned / "0").mkdir()
    subprocess.run(["mount", "--bind", str(source), str(abandoned / "0")], check=True)
    _launch(dstorm)
    assert not abandoned.exists()
    assert str(abandoned) not in open("/proc/self/mountinfo").read()
    assert source.exists()  # the staged source itself is untouched
