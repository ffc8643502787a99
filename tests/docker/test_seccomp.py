"""The seccomp profile of a docker worker: the policy's storm.oci.seccomp.profile, enforced,
read by descriptor from a root-only chain and checked, applied to the container."""

import os

from support.docker import chown_supervisor, lines
from support.hostile import assert_refused
from support.stormlife import cgroup_dirs_named

USER = "wlalice"
STORMS_PARENT = "/storm"  # storm.oci.cgroup.parent's default


def test_the_policys_profile_is_applied(dstorm):
    wid, workdir = dstorm.worker()
    result = dstorm.storm_call(USER, wid, "docker-run")
    assert result.returncode == 0, result.stderr
    assert lines(dstorm.wait_for(workdir / "probe.out"))["mkdir"] == "denied"


def test_a_run_without_the_policys_profile_is_refused(dstorm):
    wid, workdir = dstorm.worker()
    line = dstorm.storm_run_line(wid, seccomp=None)
    result = dstorm.storm_call(USER, wid, "docker-run", line)
    assert_refused(result, {39})
    assert f"requires --security-opt seccomp={dstorm.seccomp}" in result.stderr
    assert not dstorm.exists(wid)


def test_another_root_owned_profile_is_refused(dstorm):
    other = dstorm.home / "conf" / "other.json"
    other.write_text(dstorm.seccomp.read_text())
    wid, workdir = dstorm.worker()
    result = dstorm.storm_call(USER, wid, "docker-run", dstorm.storm_run_line(wid, seccomp=other))
    assert_refused(result, {39})
    assert "the policy's profile is" in result.stderr
    assert not dstorm.exists(wid)


def test_a_profile_when_the_policy_names_none_is_refused(dstorm):
    dstorm.write_policy(seccomp=False)
    wid, workdir = dstorm.worker()
    result = dstorm.storm_call(USER, wid, "docker-run",
                               dstorm.storm_run_line(wid, seccomp=dstorm.seccomp))
    assert_refused(result, {39})
    assert "names no storm.oci.seccomp.profile" in result.stderr
    # Without a profile on either side docker applies its default one.
    result = dstorm.storm_call(USER, wid, "docker-run")
    assert result.returncode == 0, result.stderr
    assert lines(dstorm.wait_for(workdir / "probe.out"))["mkdir"] == "allowed"


def test_the_policys_profile_must_be_roots_and_must_deny_by_default(dstorm):
    wid, workdir = dstorm.worker()
    text = dstorm.seccomp.read_text()
    chown_supervisor(dstorm.seccomp)
    result = dstorm.storm_call(USER, wid, "docker-run")
    assert_refused(result, {39})
    assert "root-owned" in result.stderr or "owned by uid" in result.stderr
    os.chown(dstorm.seccomp, 0, 0)
    for bad, why in (('{"defaultAction": "SCMP_ACT_ALLOW"}', "every system call"),
                     ('{"defaultAction": "SCMP_ACT_ERRNO", "DefaultAction": "SCMP_ACT_ALLOW"}',
                      "DefaultAction"),
                     ("{", "not valid JSON")):
        dstorm.seccomp.write_text(bad)
        result = dstorm.storm_call(USER, wid, "docker-run")
        assert_refused(result, {39})
        assert why in result.stderr
    dstorm.seccomp.write_text(text)
    assert not dstorm.exists(wid)


def test_without_a_policy_a_root_owned_profile_is_read_by_descriptor(dstorm):
    """No policy file: the profile must be root's all the way up; it is applied. (Without a
    policy the cgroup parent is Storm's default, /storm.)"""
    dstorm.launcher.write_config({"worker.profiler.script.path": str(dstorm.profiler)})
    try:
        wid, workdir = dstorm.worker()
        result = dstorm.storm_call(USER, wid, "docker-run",
                                   dstorm.storm_run_line(wid, cgroup_parent=STORMS_PARENT))
        assert result.returncode == 0, result.stderr
        assert lines(dstorm.wait_for(workdir / "probe.out"))["mkdir"] == "denied"
        supervisors = dstorm.commands / "seccomp.json"
        dstorm.write_file(supervisors, dstorm.seccomp.read_text())
        wid, workdir = dstorm.worker()
        result = dstorm.storm_call(USER, wid, "docker-run",
                                   dstorm.storm_run_line(wid, seccomp=supervisors,
                                                         cgroup_parent=STORMS_PARENT))
        assert_refused(result, {39})
        assert not dstorm.exists(wid)
    finally:
        dstorm.cleanup()
        for directory in cgroup_dirs_named(STORMS_PARENT):  # docker's, once its containers went
            try:
                directory.rmdir()
            except OSError:
                pass


def test_without_a_policy_root_only_files_tell_the_supervisor_nothing(dstorm, tmp_path):
    """A profile path in a root-only directory is read with the supervisor's rights: the
    refusal is the same whether the file exists, is JSON, or holds a secret (found by
    review: read as root, the error line leaked the file's first key)."""
    dstorm.launcher.write_config({"worker.profiler.script.path": str(dstorm.profiler)})
    secret = dstorm.launcher.prefix / f"root-only-{tmp_path.name}"
    secret.mkdir(mode=0o700)
    (secret / "creds.json").write_text('{"hunter2-AKIA-SECRET": {"token": "x"}}')
    (secret / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    wid, workdir = dstorm.worker()
    messages = set()
    for name in ("creds.json", "key", "missing"):
        tokens = dstorm.run_tokens(wid, workdir, seccomp=str(secret / name))
        result = dstorm.run(USER, "docker-run", workdir, tokens)
        assert_refused(result, {39})
        assert "hunter2" not in result.stderr and "BEGIN" not in result.stderr
        messages.add(result.stderr.split(": refusing ", 1)[1].replace(name, "<name>"))
    assert len(messages) == 1, messages
    assert not dstorm.exists(wid)
