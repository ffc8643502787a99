"""The container's cgroup, `<storm.oci.cgroup.parent>/<containerId>`, in every hierarchy this
machine mounts (cgroup v1 controllers and the v2 unified hierarchy): created by runc for the
launch, refused when it already holds something (a hijack of a root process's or another
user's cgroup), removed when stale, and gone after reap without touching anything else."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.oci import (CGROUP_PARENT, assert_nothing_left, cgroup_dirs, cgroup_mounts,
                         storm_request)

UP = "echo up > $WORKDIR/up.out\nsleep 300\n"


def quota(container_id: str) -> str:
    return Path(f"/sys/fs/cgroup/cpu{CGROUP_PARENT}/{container_id}/cpu.cfs_quota_us").read_text()


def make_cgroups(container_id: str, hierarchies=None) -> list:
    made = []
    for point in hierarchies or cgroup_mounts():
        path = Path(f"{point}{CGROUP_PARENT}/{container_id}")
        path.mkdir(parents=True, exist_ok=True)
        made.append(path)
    return made


def test_the_cgroup_exists_in_every_hierarchy_while_it_runs_and_goes_with_reap(oci):
    worker = oci.new_worker(UP)
    assert worker.launch().returncode == 0
    worker.wait_for("up.out")
    hierarchies = cgroup_mounts()
    assert any(Path(p, "cgroup.controllers").exists() for p in hierarchies)  # v2 unified too
    assert len(cgroup_dirs(worker.container_id)) == len(hierarchies)
    assert quota(worker.container_id).strip() == "100000"
    pid = worker.pid_file.read_text()
    assert pid in Path(f"/sys/fs/cgroup/memory{CGROUP_PARENT}/{worker.container_id}/cgroup.procs").read_text().split()
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


def test_a_parent_with_a_trailing_slash(oci):
    """Storm sends /storm//<id> for the parent "/storm/": the container gets /storm/<id>."""
    worker = oci.new_worker(UP)
    worker.request["ociRuntimeConfig"]["linux"]["cgroupsPath"] = \
        f"{CGROUP_PARENT}//{worker.container_id}"
    assert worker.launch().returncode == 0
    worker.wait_for("up.out")
    assert quota(worker.container_id).strip() == "100000"
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


def test_reap_removes_the_cgroup_runc_left_and_nothing_else(oci):
    worker = oci.new_worker()
    sibling = make_cgroups("keep-me")
    made = make_cgroups(worker.container_id)
    try:
        assert worker.reap().returncode == 0
        assert not any(path.exists() for path in made)
        assert all(path.is_dir() for path in sibling)
    finally:
        for path in sibling:
            path.rmdir()


def test_a_stale_empty_cgroup_is_removed_before_the_launch(oci):
    worker = oci.new_worker(UP)
    make_cgroups(worker.container_id)
    Path(f"/sys/fs/cgroup/cpu{CGROUP_PARENT}/{worker.container_id}/cpu.cfs_quota_us").write_text("5000")
    result = worker.launch()
    assert result.returncode == 0, result.stderr
    worker.wait_for("up.out")
    assert quota(worker.container_id).strip() == "100000"  # a fresh cgroup, runc's own
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


@pytest.mark.parametrize("hierarchy", ["cpu", "memory", "unified", "child cgroup"])
def test_hijack_of_a_root_process_cgroup_is_refused_before_anything_runs(oci, hierarchy):
    worker = oci.new_worker(UP)
    made = make_cgroups(worker.container_id)
    child = None
    victim = subprocess.Popen(["sleep", "300"])
    try:
        if hierarchy == "child cgroup":
            child = made[0] / "child"
            child.mkdir()
        else:
            target = Path(f"/sys/fs/cgroup/{hierarchy}{CGROUP_PARENT}/{worker.container_id}")
            (target / "cgroup.procs").write_text(str(victim.pid))
        before = quota(worker.container_id)
        result = worker.launch()
        assert result.returncode == 24, result.stderr
        assert f"the cgroup {CGROUP_PARENT}/{worker.container_id} already exists" in result.stderr
        assert "is in use" in result.stderr
        assert victim.poll() is None  # alive, untouched
        if child is None:
            assert f"{CGROUP_PARENT}/{worker.container_id}" in Path(f"/proc/{victim.pid}/cgroup").read_text()
        assert quota(worker.container_id) == before
        assert not (worker.artifacts / f"container-{worker.worker_id}.pid").exists()
        assert not (oci.run_root / worker.container_id).exists()
    finally:
        victim.kill()
        victim.wait()
        for path in ([child] if child else []) + made:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)


def test_hijack_of_another_users_running_container_is_refused(oci):
    """The supervisor names bob's running container for alice, from a workdir of the same
    name elsewhere: refused before anything runs, bob's worker unharmed."""
    bob = oci.new_worker(UP, user="wlbob", topology="topo-bob")
    assert bob.launch().returncode == 0
    bob.wait_for("up.out")
    bob_pid = int(bob.pid_file.read_text())
    bob_quota = quota(bob.container_id)
    alias = oci.storm.local / "alias"
    alias.mkdir()
    os.chown(alias, uid_of(SUPERVISOR), gid_of_group())
    workdir = alias / "workers" / bob.worker_id
    workdir.mkdir(parents=True)
    for path in (alias / "workers", workdir):
        os.chown(path, uid_of(SUPERVISOR), gid_of_group())
    (workdir / "storm-worker-script.sh").write_text("#!/bin/sh\nsleep 300\n")
    os.chown(workdir / "storm-worker-script.sh", uid_of(SUPERVISOR), gid_of_group())
    alice_artifacts = oci.new_worker().artifacts
    (workdir / "artifacts").symlink_to(alice_artifacts)
    os.lchown(workdir / "artifacts", uid_of(SUPERVISOR), gid_of_group())
    request = storm_request(user=USER, worker_id=bob.worker_id, port=6700, local=alias,
                            storm_home=oci.storm_home, nscd=oci.nscd, cgroup_root="/sys/fs/cgroup",
                            artifacts=alice_artifacts, topology="topo-1-1700000000",
                            layers=oci.layers, cgroup_parent=CGROUP_PARENT)
    assert request["containerId"] == bob.container_id
    config = oci.write_request(request, name="hijack.json")
    result = oci.launcher.run(USER, "run-oci-container", workdir, config, workdir / "artifacts")
    assert result.returncode == 24, result.stderr
    assert ("runc already has a container" in result.stderr
            or "already exists" in result.stderr and "in use" in result.stderr)
    assert os.stat(f"/proc/{bob_pid}").st_uid == uid_of("wlbob")
    assert quota(bob.container_id) == bob_quota
    assert str(bob_pid) in Path(f"/sys/fs/cgroup/memory{CGROUP_PARENT}/{bob.container_id}/cgroup.procs").read_text().split()
    assert bob.reap().returncode == 0
    assert_nothing_left(oci, bob)
