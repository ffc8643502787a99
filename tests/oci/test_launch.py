"""run-oci-container and reap-oci-container for real: runc, squashfs layers, overlay."""

import os
import stat

from support.oci import LAYER_MARK, loops_backed_by, mounted_under, runc_ids
from support.env import USER, uid_of

PROBE = (
    "id -u > $WORKDIR/uid.out\n"
    "id -G > $WORKDIR/groups.out\n"
    f"cat {LAYER_MARK} /etc/only-in-0 /etc/only-in-2 > $WORKDIR/layers.out\n"
    "touch /rootfs-write 2> /dev/null && echo writable > $WORKDIR/root.out"
    " || echo read-only > $WORKDIR/root.out\n"
    "touch /tmp/tmp-write && echo tmp-ok > $WORKDIR/tmp.out\n"
    "echo done > $WORKDIR/done.out\n"
    "sleep 300\n"
)


def alive(pid: int) -> bool:
    """Running (a zombie left for this machine's init to collect is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_launch_and_reap(oci):
    worker = oci.new_worker(PROBE)
    result = worker.launch()
    assert result.returncode == 0, result.stderr
    worker.wait_for("done.out")
    assert worker.wait_for("uid.out").split() == [str(uid_of(USER))]
    groups = set(map(int, worker.wait_for("groups.out").split()))
    assert {uid_of(USER), 2100} <= groups
    assert worker.wait_for("layers.out").splitlines() == ["layer 2", "0", "2"]
    assert worker.wait_for("root.out").strip() == "read-only"
    assert worker.wait_for("tmp.out").strip() == "tmp-ok"
    assert (worker.workdir / "tmp" / "tmp-write").exists()
    pid_file = worker.artifacts / f"container-{worker.container_id.split('-', 1)[1]}.pid"
    pid = int(pid_file.read_text())
    assert os.stat(f"/proc/{pid}").st_uid == uid_of(USER)
    assert worker.container_id in runc_ids()
    assert len(loops_backed_by(oci.layers)) == 3
    st = (worker.workdir / "config.json").stat()
    assert stat.S_IMODE(st.st_mode) == 0o640

    reaped = worker.reap(keep=0)
    assert reaped.returncode == 0, reaped.stderr
    assert mounted_under(oci.run_root) == []
    assert loops_backed_by(oci.layers) == []
    assert worker.container_id not in runc_ids()
    assert not (oci.run_root / worker.container_id).exists()
    assert not alive(pid)
    again = worker.reap(keep=0)
    assert again.returncode == 0, again.stderr



def test_the_container_root_is_a_volatile_overlay(oci):
    """The upper layer is the container's scratch space, removed at reap: mounted volatile
    (Linux 5.10+; plain before), so unmounting it never syncs the run root's file system."""
    from pathlib import Path

    worker = oci.new_worker("echo up > $WORKDIR/up.out\nsleep 300\n")
    assert worker.launch().returncode == 0
    worker.wait_for("up.out")
    rootfs = f"{oci.run_root}/{worker.container_id}/rootfs"
    (entry,) = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split(" ")[4] == rootfs]
    fstype, _, options = entry.split(" - ")[1].split(" ")[:3]
    release = tuple(int(part) for part in os.uname().release.split(".")[:2])
    volatile = {"volatile", "fsync=volatile"} & set(options.split(","))  # (newer kernels)
    assert fstype == "overlay" and bool(volatile) == (release >= (5, 10))
    assert worker.reap(keep=0).returncode == 0
    assert mounted_under(oci.run_root) == [] and loops_backed_by(oci.layers) == []
    assert not (oci.run_root / worker.container_id).exists()


def test_a_reap_needs_only_the_cgroup_parent_of_the_policy(oci):
    """The policy's paths are not resolved for a reap: one that no longer resolves (here
    behind a symlink the supervisor made) refuses a launch but never the clean-up."""
    from support.env import SUPERVISOR, gid_of_group

    worker = oci.new_worker("echo up > $WORKDIR/up.out\nsleep 300\n")
    assert worker.launch().returncode == 0
    worker.wait_for("up.out")
    link = oci.storm.base / "by-the-supervisor"
    link.symlink_to(oci.storm.base)
    os.lchown(link, uid_of(SUPERVISOR), gid_of_group())
    oci.add_policy({"storm.oci.nscd.dir": f"{link}/nscd"})  # (the last of a key counts)
    refused = oci.new_worker(port=6701).launch()
    assert refused.returncode == 24 and "is a symlink" in refused.stderr
    reaped = worker.reap(keep=0)
    assert reaped.returncode == 0, reaped.stderr
    assert mounted_under(oci.run_root) == [] and loops_backed_by(oci.layers) == []
    assert worker.container_id not in runc_ids()

def test_launch_without_a_policy(oci):
    """With no policy file the built-in rules apply: layers in a `layers` directory, the
    artifacts link to any unprotected directory of the port owned by the user, Storm's
    default cgroup parent /storm."""
    from pathlib import Path

    from support.oci import assert_nothing_left, cgroup_mounts

    oci.launcher.write_config()  # no worker.launcher.policy
    fresh = [p for p in cgroup_mounts() if not Path(f"{p}/storm").exists()]
    worker = oci.new_worker("echo up > $WORKDIR/up.out\nsleep 300\n", cgroup_parent="/storm")
    try:
        result = worker.launch()
        assert result.returncode == 0, result.stderr
        assert worker.wait_for("up.out") == "up\n"
        assert Path(f"/sys/fs/cgroup/cpu/storm/{worker.container_id}").is_dir()
        assert worker.reap().returncode == 0
        assert not any(Path(f"{p}/storm/{worker.container_id}").exists() for p in cgroup_mounts())
        assert_nothing_left(oci, worker)
        other = oci.new_worker(cgroup_parent="/wltest-storm")
        result = other.launch()
        assert result.returncode == 24 and "must be /storm/" in result.stderr
    finally:
        for point in fresh:  # the parent runc made for this test
            try:
                os.rmdir(f"{point}/storm")
            except OSError:
                pass
