"""Magic links and pseudo files in every position where a caller names a host path, through
the installed binary: `/proc/<pid>/cwd`, `/proc/<pid>/root`, `/proc/self/fd/N`, a procfs
mounted somewhere else, and a root-made symlink that leads into one. The launcher resolves
each path by descriptor (paths.resolve): nothing under /proc, /sys or /dev is a host file, and
a kernel-made link is never followed, not even by its target's name. Each call must be
refused with nothing done: the victims and the storm directories unchanged."""

import os
import subprocess

import pytest

from support.env import SUPERVISOR, USER, gid_of_group, require, uid_of
from support.hostile import assert_refused, supervisor_file


@pytest.fixture
def places(launcher, storm, tmp_path):
    """Ways to name storm.local.dir/<name> that go through /proc, and the cleanup."""
    holder = subprocess.Popen(["sleep", "300"], cwd=storm.local, user=uid_of(SUPERVISOR))
    procfs = storm.base / "procfs"
    procfs.mkdir(mode=0o755)
    subprocess.run(["mount", "-t", "proc", "proc", str(procfs)], check=True)
    links = storm.base / "links"  # a root-only directory: its root-made links are trusted
    links.mkdir(mode=0o755)
    os.symlink(f"/proc/{holder.pid}/cwd", links / "to-proc")
    os.symlink(f"{procfs}/{holder.pid}/cwd", links / "to-procfs")

    def ways(name: str) -> list:
        return [f"/proc/{holder.pid}/cwd/{name}", f"/proc/1/root{storm.local}/{name}",
                f"/proc/self/root{storm.local}/{name}", f"{procfs}/{holder.pid}/cwd/{name}",
                f"{procfs}/self/root{storm.local}/{name}", f"{links}/to-proc/{name}",
                f"{links}/to-procfs/{name}"]

    try:
        yield ways
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["umount", "-l", str(procfs)], check=False)


def _tree(storm, name: str):
    top = storm.local / name
    top.mkdir(mode=0o755)
    (top / "file").write_text("x")
    for path in (top, top / "file"):
        os.chown(path, uid_of(SUPERVISOR), gid_of_group())
    return top


def _state(top):
    return [(p, p.lstat().st_uid, p.lstat().st_mode) for p in sorted([top, *top.rglob("*")])]


@pytest.mark.parametrize("verb", ["code-dir", "artifacts-dir", "blob", "rmr"])
def test_directory_verbs(launcher, storm, victims, places, verb):
    top = _tree(storm, "tree")
    before, victim = _state(top), victims.state()
    for path in places("tree"):
        result = launcher.run(USER, verb, path)
        assert_refused(result, {5, 12, 21})
        assert _state(top) == before and victims.state() == victim, path


@pytest.mark.parametrize("verb", ["code-dir", "rmr"])
def test_without_a_policy_only_the_resolution_refuses(launcher, tmp_path, verb):
    """No policy names the storm directories, so nothing refuses these by their name: the
    path rules alone do (a procfs mounted elsewhere, root-made links leading into one)."""
    base = launcher.prefix / f"nopolicy-{tmp_path.name}"
    base.mkdir(mode=0o755)
    top = base / "tree"
    top.mkdir(mode=0o755)
    (top / "file").write_text("x")
    for path in (top, top / "file"):
        os.chown(path, uid_of(SUPERVISOR), gid_of_group())
    holder = subprocess.Popen(["sleep", "300"], cwd=base, user=uid_of(SUPERVISOR))
    procfs = base / "procfs"
    procfs.mkdir(mode=0o755)
    subprocess.run(["mount", "-t", "proc", "proc", str(procfs)], check=True)
    os.symlink(f"{procfs}/{holder.pid}/cwd", base / "to-procfs")
    os.symlink(f"{procfs}/self/root{base}", base / "to-self-root")
    os.symlink(f"/proc/{holder.pid}/cwd", base / "to-proc")
    before = _state(top)
    try:
        for path in (f"{procfs}/{holder.pid}/cwd/tree", f"{procfs}/self/root{top}",
                     f"{procfs}/1/root{top}", f"{base}/to-procfs/tree",
                     f"{base}/to-self-root/tree", f"{base}/to-proc/tree"):
            assert_refused(launcher.run(USER, verb, path), {5, 12})
            assert _state(top) == before, path
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["umount", "-l", str(procfs)], check=False)


def test_worker_workdir_and_script(launcher, storm, victims, places):
    workdir = storm.workdir("wid")
    script = supervisor_file(workdir.parent / "script.sh", "#!/bin/sh\ntouch ran\n")
    victim = victims.state()
    for path in places("workers/wid"):
        assert_refused(launcher.run(USER, "worker", path, script), {5, 12, 21})
    for path in places("workers/script.sh") + ["/proc/self/fd/0", "/dev/stdin"]:
        assert_refused(launcher.run(USER, "worker", workdir, path), {30, 31})
    assert not (workdir / "ran").exists() and not (workdir / "launch_container.sh").exists()
    assert victims.state() == victim


def test_oci_request_workdir_and_artifacts(oci, places):
    worker = oci.new_worker()
    request = worker.write()
    relative = worker.workdir.relative_to(oci.storm.local)
    for path in places(f"{relative}/oci-config.json") + ["/proc/self/fd/0"]:
        result = oci.launcher.run(USER, "run-oci-container", worker.workdir, path,
                                  worker.workdir / "artifacts")
        assert_refused(result, {30, 31})
    for path in places(str(relative)):
        result = oci.launcher.run(USER, "run-oci-container", path, request,
                                  worker.workdir / "artifacts")
        assert_refused(result, {5, 12, 21, 24})
    for path in places(f"{relative}/artifacts"):
        result = oci.launcher.run(USER, "run-oci-container", worker.workdir, request, path)
        assert_refused(result, {5, 12, 24})
    assert not list(oci.run_root.glob(f"{worker.container_id}*"))


def test_as_root_a_kernel_made_link_is_never_followed(launcher, tmp_path):
    """What the launcher resolves as root (the policy's own paths, its config chain): a
    procfs mounted elsewhere offers root-owned links in root-owned directories, which the
    ownership rule alone would trust; their size (0, not their target's length) gives them
    away. A root-made link on a real file system is still followed."""
    from worker_launcher.core.errors import LauncherError
    from worker_launcher.paths import resolve, trust

    require(os.geteuid() == 0, "tests must run as root")
    base = launcher.prefix / f"asroot-{tmp_path.name}"
    (base / "real").mkdir(parents=True, mode=0o755)
    procfs = base / "procfs"
    procfs.mkdir(mode=0o755)
    subprocess.run(["mount", "-t", "proc", "proc", str(procfs)], check=True)
    os.symlink(base / "real", base / "to-real")
    try:
        assert resolve.canonical(f"{base}/to-real") == f"{base}/real"
        for path in (f"{procfs}/1/root{base}/real", f"{procfs}/self/cwd{base}/real",
                     f"{procfs}/1/cwd{base}/real", f"{procfs}/self/root{base}/real"):
            with pytest.raises(LauncherError):
                resolve.canonical(path)
            assert trust.chain_problem(path) is not None, path
    finally:
        subprocess.run(["umount", "-l", str(procfs)], check=False)
