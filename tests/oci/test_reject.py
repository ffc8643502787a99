"""Requests the OCI verbs refuse on the host side, each leaving nothing mounted."""

import os

import pytest

from support.oci import loops_backed_by, mounted_under
from support.env import USER, uid_of
from support.env import SUPERVISOR

MOUNTS = ("ociRuntimeConfig", "mounts")


def bind(source, mode="ro", destination=None):
    return {"destination": destination or source, "type": "bind", "source": source,
            "options": [mode, "rbind", "rprivate"]}


def refused(oci, worker, code, fragment, request=None):
    result = worker.launch(request)
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert mounted_under(oci.run_root) == []
    assert loops_backed_by(oci.layers) == []
    assert not (oci.run_root / worker.container_id).exists()


@pytest.mark.parametrize("source, mode, fragment", [
    ("/etc/shadow", "ro", "not allowed read-only by the policy"),
    ("/", "ro", "protected host path"),
    ("/proc", "ro", "protected host path"),
    ("/var/run/docker.sock", "ro", "protected host path"),
    ("/etc", "rw", "may not be writable"),
])
def test_bind_sources_outside_the_policy(oci, source, mode, fragment):
    worker = oci.new_worker()
    worker.request["ociRuntimeConfig"]["mounts"].append(bind(source, mode, "/mnt/x"))
    refused(oci, worker, 24, fragment)


def test_read_only_storm_dir_may_not_be_bound_writable(oci):
    supervisor = oci.storm.local / "supervisor"
    supervisor.mkdir()
    worker = oci.new_worker()
    worker.request["ociRuntimeConfig"]["mounts"].append(bind(str(supervisor), "rw"))
    refused(oci, worker, 24, "not allowed read-write")


def test_symlinked_bind_source_is_refused(oci):
    worker = oci.new_worker()
    link = worker.workdir / "escape"
    link.symlink_to("/etc")
    os.lchown(link, uid_of(SUPERVISOR), uid_of(SUPERVISOR))
    worker.request["ociRuntimeConfig"]["mounts"].append(bind(str(link), "ro", "/mnt/x"))
    refused(oci, worker, 24, "mounts[3].source")


def test_layer_that_is_a_symlink_or_directory_is_refused(oci, tmp_path):
    worker = oci.new_worker()
    link = tmp_path / "layer.sqsh"
    link.symlink_to(oci.layers[0])
    worker.request["layers"][1]["path"] = str(link)
    refused(oci, worker, 24, "$.layers[1].path")
    worker.request["layers"][1]["path"] = str(tmp_path)
    refused(oci, worker, 24, "$.layers[1].path")


def test_layer_that_is_not_squashfs_fails_cleanly(oci, tmp_path):
    fake = tmp_path / "fake.sqsh"
    fake.write_bytes(b"not a squashfs image" * 1000)
    worker = oci.new_worker()
    worker.request["layers"].append({"mediaType": "application/vnd.squashfs", "path": str(fake)})
    refused(oci, worker, 44, f"cannot mount layer {fake}")


def test_existing_pid_file_is_refused(oci):
    worker = oci.new_worker()
    open(worker.request["pidFile"], "w").close()
    refused(oci, worker, 24, "$.pidFile")


def test_request_for_another_user_is_refused(oci):
    worker = oci.new_worker()
    worker.request["username"] = "wlbob"
    refused(oci, worker, 24, "$.username")


def test_cgroup_outside_the_parent_is_refused(oci):
    policy = oci.launcher.conf.parent / "policy.yaml"
    policy.write_text(policy.read_text() + "storm.oci.cgroup.parent: /wltest-storm\n")
    worker = oci.new_worker()
    worker.request["ociRuntimeConfig"]["linux"]["cgroupsPath"] = f"/elsewhere/{worker.container_id}"
    refused(oci, worker, 24, "is not below the cgroup parent /wltest-storm")


@pytest.mark.parametrize("container_id", ["../../etc", f"6703-x;rm -rf /", "/", "6703-..",
                                          "-rf", "6703-1a23ca4b-6062-4d08-8ac3-b09e7d35e7c/"])
def test_reap_refuses_bad_ids_before_touching_anything(oci, container_id):
    result = oci.launcher.run(USER, "reap-oci-container", container_id, "0")
    assert result.returncode == 41
    assert "invalid container id" in result.stderr


def test_reap_of_unknown_id_is_a_clean_no_op(oci):
    worker = oci.new_worker()
    assert worker.reap().returncode == 0
    bad = oci.launcher.run(USER, "reap-oci-container", worker.container_id, "many")
    assert bad.returncode == 1 and "invalid layer keep count" in bad.stderr
