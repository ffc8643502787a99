"""nsenter / profile-docker-container / profile-oci-container for real: the profiler runs in
the container's mount and pid namespaces as the user; other processes are refused."""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from support.env import require
from support.docker import CGROUP_PARENT, chown_supervisor, lines
from support.rootfs import make_rootfs
from support.env import uid_of

USER = "wlalice"


def _launch(dstorm, user=USER):
    wid, workdir = dstorm.worker(user)
    result = dstorm.run(user, "launch-docker-container", workdir,
                        dstorm.run_tokens(wid, workdir, user))
    assert result.returncode == 0, result.stderr
    dstorm.wait_for(workdir / "probe.out")
    return wid, workdir


def _ns(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _assert_profiled_inside(out, container_pid, user=USER):
    seen = lines(out)
    assert seen["mnt"] == _ns(container_pid, "mnt") != _ns("self", "mnt")
    assert seen["pid"] == _ns(container_pid, "pid") != _ns("self", "pid")
    uid = uid_of(user)
    assert seen["uid"] == f"{uid} {uid}"
    assert sorted(map(int, seen["gids"].split())) == sorted(set(os.getgrouplist(user, uid)))
    assert seen["umask"] == "0027" and seen["cwd"] == "/"
    return seen


@pytest.mark.parametrize("verb", ["profile-docker-container", "nsenter"])
def test_profiler_runs_inside_the_docker_container(dstorm, verb):
    wid, workdir = _launch(dstorm)
    out = workdir / "profile.out"
    result = dstorm.run(USER, verb, wid, f"{out} jstack extra")
    assert result.returncode == 0, result.stderr
    seen = _assert_profiled_inside(out.read_text(), dstorm.pid_of(wid))
    assert seen["args"] == f"{out} jstack extra"
    assert out.stat().st_uid == uid_of(USER) and out.stat().st_mode & 0o777 == 0o640


@pytest.fixture
def runc_container(dstorm):
    """A runc container made directly: busybox root, uid 2001, cgroup below the policy's
    cgroup parent, the profiler's directory read-only and an output directory bound in."""
    runc = shutil.which("runc")
    require(runc is not None, "runc is not installed")
    cid = f"wltest-{uuid.uuid4().hex[:12]}"
    bundle = dstorm.base / "bundle"
    make_rootfs(bundle / "rootfs")
    out = dstorm.base / "oci-out"
    out.mkdir(mode=0o755)
    os.chown(out, uid_of(USER), uid_of(USER))
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(terminal=False, args=["sleep", "600"],
                           user={"uid": uid_of(USER), "gid": uid_of(USER),
                                 "additionalGids": [2100]})
    spec["root"] = {"path": "rootfs", "readonly": True}
    spec["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/{cid}"
    for path, options in ((dstorm.home, ["rbind", "ro"]), (out, ["rbind", "rw"])):
        spec["mounts"].append({"destination": str(path), "type": "bind", "source": str(path),
                               "options": options})
    (bundle / "config.json").write_text(json.dumps(spec))
    state = dstorm.base / "runc-state"
    pidfile = dstorm.base / "oci.pid"
    try:
        # The container inherits runc's stdio: files, not pipes, or run would never finish.
        with open(dstorm.base / "runc.err", "w") as err:
            started = subprocess.run([runc, "--root", str(state), "run", "-d", "--pid-file",
                                      str(pidfile), cid], cwd=bundle, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        assert started.returncode == 0, (dstorm.base / "runc.err").read_text()
        yield int(pidfile.read_text()), out
    finally:
        subprocess.run([runc, "--root", str(state), "delete", "-f", cid], check=False,
                       capture_output=True)


@pytest.mark.parametrize("verb", ["profile-oci-container", "nsenter"])
def test_profiler_runs_inside_the_runc_container(dstorm, runc_container, verb):
    pid, out_dir = runc_container
    out = out_dir / "profile.out"
    result = dstorm.run(USER, verb, pid, f"{out} heap")
    assert result.returncode == 0, result.stderr
    seen = _assert_profiled_inside(out.read_text(), pid)
    assert seen["args"] == f"{out} heap"


def test_pid_1_is_refused(dstorm):
    result = dstorm.run(USER, "profile-oci-container", 1, "/tmp/x")
    assert result.returncode == 9 and "pid 1" in result.stderr


def test_missing_and_malformed_pids_are_refused(dstorm):
    for pid in ("999999999", "0", "-5", "12abc", "0012"):
        result = dstorm.run(USER, "profile-oci-container", pid, "/tmp/x")
        assert result.returncode == 9, (pid, result.stderr)
    result = dstorm.run(USER, "profile-docker-container", "--format=x", "/tmp/x")
    assert result.returncode == 41
    result = dstorm.run(USER, "profile-docker-container", str(uuid.uuid4()), "/tmp/x")
    assert result.returncode == 9 and "no running docker container" in result.stderr


def _user_process(*prefix):
    uid = str(uid_of(USER))
    return subprocess.Popen([*prefix, "setpriv", "--reuid", uid, "--regid", uid, "--clear-groups",
                             "sleep", "300"])


def test_host_process_of_the_user_is_refused(dstorm, tmp_path):
    marker = tmp_path / "never"
    for process, why in ((_user_process(), "mount namespace"),
                         (_user_process("unshare", "--mount"), "cgroup")):
        try:
            result = dstorm.run(USER, "profile-oci-container", process.pid, f"{marker}")
            assert result.returncode == 9 and why in result.stderr, result.stderr
        finally:
            process.kill()
            process.wait()
    assert not marker.exists()


def test_another_users_container_is_refused(dstorm):
    wid, workdir = _launch(dstorm, user="wlbob")
    out = workdir / "stolen.out"
    result = dstorm.run(USER, "profile-oci-container", dstorm.pid_of(wid), f"{out}")
    assert result.returncode == 9 and "wlalice" in result.stderr, result.stderr
    result = dstorm.run(USER, "profile-docker-container", wid, f"{out}")
    assert result.returncode == 9, result.stderr
    assert not out.exists()


def test_profiler_must_be_root_owned(dstorm):
    wid, workdir = _launch(dstorm)
    chown_supervisor(dstorm.profiler)
    result = dstorm.run(USER, "profile-docker-container", wid, f"{workdir}/x.out")
    assert result.returncode == 7 and "profiler" in result.stderr
    assert not (workdir / "x.out").exists()
