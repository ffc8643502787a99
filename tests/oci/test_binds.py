"""Bind sources are pinned: runc binds root-only staged mounts of exactly what was checked,
and reaping detaches them without touching the user's files behind them."""

import json
import os
import subprocess

from support import nosyscall
from support.oci import TOPOLOGY, assert_nothing_left, mounted_under
from support.stormlife import container_mounts


def test_runc_binds_staged_sources_and_reap_keeps_the_users_files(oci):
    worker = oci.new_worker("echo kept > $WORKDIR/kept.out\necho up > $WORKDIR/up.out\nsleep 300\n")
    assert worker.launch().returncode == 0
    assert worker.wait_for("up.out") == "up\n"
    staged = oci.run_root / worker.container_id / "binds"
    config = json.loads((worker.workdir / "config.json").read_text())
    sources = [m["source"] for m in config["mounts"] if m["type"] == "bind"]
    assert sources == [str(staged / str(i)) for i in range(12)]  # Storm's 12 binds
    staged_now = {p for p in mounted_under(oci.run_root) if os.path.dirname(p) == str(staged)}
    assert staged_now == set(sources)  # (the cgroup root's rbind brings its submounts too)
    assert staged.stat().st_mode & 0o777 == 0o700 and staged.stat().st_uid == 0
    container = oci.run_root / worker.container_id  # a tmpfs of its own: one detach at reap
    assert str(container) in mounted_under(oci.run_root)
    for name in ("binds", "upper", "work", "config.json"):  # on it
        assert (container / name).stat().st_dev == container.stat().st_dev, name
    assert worker.reap(keep=0).returncode == 0
    assert mounted_under(oci.run_root) == []
    assert (worker.workdir / "kept.out").read_text() == "kept\n"  # behind a bind: untouched
    assert (worker.workdir / "tmp").is_dir()



def test_binds_staged_by_an_older_launcher_without_a_tmpfs_are_released(oci):
    """A container directory an older launcher left: binds on plain mount points directly in
    <id>/binds (no staging tmpfs). Reap detaches them one by one; the files behind stay."""
    worker = oci.new_worker()
    (worker.workdir / "kept.out").write_text("kept\n")
    staged = oci.run_root / worker.container_id / "binds"
    staged.mkdir(mode=0o700, parents=True)
    os.mkdir(staged / "0", 0o700)
    (staged / "1").write_text("")
    subprocess.run(["mount", "--bind", str(worker.workdir), str(staged / "0")], check=True)
    subprocess.run(["mount", "--bind", str(worker.workdir / "kept.out"), str(staged / "1")],
                   check=True)
    result = worker.reap(keep=0)
    assert result.returncode == 0, result.stderr
    assert_nothing_left(oci, worker)
    assert (worker.workdir / "kept.out").read_text() == "kept\n"


def _same_device_victim(oci, name: str):
    """A directory of someone's files on the run root's own file system (as /run/nscd is
    next to the default run root /run/worker-launcher): a bind of it has the run root's
    st_dev, so only its mount id tells it apart."""
    victim = oci.run_root.parent / f"{name}-{os.getpid()}"
    (victim / "deep").mkdir(parents=True)
    (victim / "deep" / "file").write_text("precious\n")
    assert victim.stat().st_dev == oci.run_root.stat().st_dev
    return victim


def _unmount_all_below(top) -> None:
    for point in reversed(mounted_under(top)):
        subprocess.run(["umount", "-l", point], check=False)


def test_reap_of_a_detached_container_tmpfs_never_walks_what_a_launch_left_below(oci):
    """Two calls on one container id (a compromised supervisor's race): a reap detached the
    container's tmpfs while a launch of that id went on by path, so the launch's staged bind
    landed in the plain directory underneath, on the run root's file system. A reap that
    detaches a tmpfs only rmdirs what it uncovers: the bind's files stay, 45, one line."""
    worker = oci.new_worker()
    victim = _same_device_victim(oci, "victim-under-tmpfs")
    cdir = oci.run_root / worker.container_id
    (cdir / "binds" / "0").mkdir(mode=0o700, parents=True)
    try:
        subprocess.run(["mount", "--bind", str(victim), str(cdir / "binds" / "0")], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,size=1m", "tmpfs", str(cdir)],
                       check=True)
        result = worker.reap(keep=0)
        assert (victim / "deep" / "file").read_text() == "precious\n"
        assert result.returncode == 45 and result.stderr.count("\n") == 1, result.stderr
        assert str(cdir) in result.stderr
    finally:
        _unmount_all_below(cdir)
    assert worker.reap(keep=0).returncode == 0  # the next reap finishes the job
    assert (victim / "deep" / "file").read_text() == "precious\n"
    assert_nothing_left(oci, worker)


def test_container_directory_walk_never_enters_a_bind_of_the_same_file_system(oci):
    """Anything mounted in a container directory outside binds/ (an undo's walk landing on
    another launch's directory of the same id) is not entered, even as a bind of the run
    root's own file system (same st_dev): the walk compares mount ids. 45; files kept."""
    worker = oci.new_worker()
    victim = _same_device_victim(oci, "victim-bound")
    cdir = oci.run_root / worker.container_id
    (cdir / "upper" / "opt").mkdir(mode=0o755, parents=True)
    (cdir / "work").mkdir(mode=0o700)
    try:
        subprocess.run(["mount", "--bind", str(victim), str(cdir / "upper" / "opt")], check=True)
        result = worker.reap(keep=0)
        assert (victim / "deep" / "file").read_text() == "precious\n"
        assert result.returncode == 45 and result.stderr.count("\n") == 1, result.stderr
        assert "upper/opt is a mount point" in result.stderr
    finally:
        _unmount_all_below(cdir)
    assert worker.reap(keep=0).returncode == 0
    assert (victim / "deep" / "file").read_text() == "precious\n"
    assert_nothing_left(oci, worker)


def test_binds_are_nosuid_nodev_and_read_only_all_the_way_down(oci):
    """runc applies a bind's ro, nosuid and nodev to its top mount only; the staged binds
    carry them on every mount below (mount_setattr), so a source's submounts (a plain tmpfs
    here; each hierarchy of a v1 /sys/fs/cgroup on a node) are read-only where Storm asked
    for it and never honour set-id bits or device nodes."""
    worker = oci.new_worker("cat /proc/self/mountinfo > $WORKDIR/mountinfo.out\n"
                            "echo up > $WORKDIR/up.out\nsleep 300\n")
    shared = worker.workdir.parent.parent / "supervisor" / "stormdist" / TOPOLOGY / \
        "shared_by_topology"
    below = {oci.storm_home / "sub": False, shared / f"sub-{os.getpid()}": True}
    for path in below:
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], check=True)
    try:
        assert worker.launch().returncode == 0
        assert worker.wait_for("up.out") == "up\n"
        mounts = container_mounts((worker.workdir / "mountinfo.out").read_text())
        for path, writable in below.items():
            options = mounts[str(path)]
            assert {"nosuid", "nodev", "rw" if writable else "ro"} <= options, (path, options)
        cgroups = [point for point in mounts if point.startswith("/sys/fs/cgroup/")]
        for point in cgroups:  # a v1 or hybrid host's hierarchies, bound read-only by Storm
            assert {"ro", "nosuid", "nodev"} <= mounts[point], (point, mounts[point])
        assert worker.reap(keep=0).returncode == 0
    finally:
        worker.reap(keep=0)  # (again, after a failed assertion: the container holds them)
        for path in below:
            subprocess.run(["umount", "-l", str(path)], check=False)
            path.rmdir()
    assert_nothing_left(oci, worker)


def test_without_mount_setattr_binds_get_their_flags_on_the_top_mount(oci):
    """A kernel before 5.12 (RHEL 8) has no mount_setattr (here: a seccomp filter fails it
    with ENOSYS): the launch goes on, and the bind's top mount still gets ro, nosuid and
    nodev from runc; only what is mounted below it keeps its own flags."""
    worker = oci.new_worker("cat /proc/self/mountinfo > $WORKDIR/mountinfo.out\n"
                            "echo up > $WORKDIR/up.out\nsleep 300\n")
    below = oci.storm_home / "sub"
    below.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(below)], check=True)
    try:
        config = worker.write()
        result = subprocess.run(
            nosyscall.argv(nosyscall.MOUNT_SETATTR, oci.launcher.binary, worker.user,
                           "run-oci-container", worker.workdir, config,
                           worker.workdir / "artifacts"),
            env={"PATH": "/usr/bin:/bin"}, cwd="/", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert worker.wait_for("up.out") == "up\n"
        mounts = container_mounts((worker.workdir / "mountinfo.out").read_text())
        top = mounts[str(oci.storm_home)]
        assert {"ro", "nosuid", "nodev"} <= top, top
        assert "rw" in mounts[str(below)], mounts[str(below)]  # the filter was in force
        assert worker.reap(keep=0).returncode == 0
    finally:
        worker.reap(keep=0)
        subprocess.run(["umount", "-l", str(below)], check=False)
        below.rmdir()
    assert_nothing_left(oci, worker)
