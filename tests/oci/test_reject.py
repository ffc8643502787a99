"""Requests the OCI verbs refuse, through the installed binary: each with its exit code and one
line naming the field or file, and each before anything exists (no mount, no loop device,
no run directory, no cgroup, no runc container)."""

import os

import pytest

from support.env import SUPERVISOR, USER, uid_of
from support.oci import assert_refused, loops_backed_by, storm_json

RT = "ociRuntimeConfig"


def bind(source, mode="ro", destination=None):
    return {"destination": destination or source, "type": "bind", "source": source,
            "options": [mode, "rbind", "rprivate"]}


def refused(oci, worker, code, fragment, request=None):
    assert_refused(oci, worker, worker.launch(request), code, fragment)


@pytest.mark.parametrize("source, mode, fragment", [
    ("/etc/shadow", "ro", "not allowed read-only by the policy"),
    ("/var/run/docker.sock", "ro", "protected host path"),
    ("/etc", "rw", "may not be writable"),
    ("/boot", "ro", "protected host path"),
])
def test_bind_sources_outside_the_policy(oci, source, mode, fragment):
    worker = oci.new_worker()
    worker.request[RT]["mounts"].append(bind(source, mode))
    refused(oci, worker, 24, fragment)


def test_read_only_storm_dir_may_not_be_bound_writable(oci):
    worker = oci.new_worker()
    worker.request[RT]["mounts"][6]["options"][0] = "rw"  # <storm.local.dir>/supervisor
    refused(oci, worker, 24, "not allowed read-write")


def test_symlinked_bind_source_is_refused(oci):
    worker = oci.new_worker()
    link = oci.storm.local / "escape"
    link.symlink_to("/etc")
    os.lchown(link, uid_of(SUPERVISOR), uid_of(SUPERVISOR))
    worker.request[RT]["mounts"].append(bind(str(link)))
    refused(oci, worker, 24, f"$.{RT}.mounts[12].source")


@pytest.mark.parametrize("destination", ["/proc/sys", "/sys/kernel", "/dev/shm", "/dev",
                                         "/sys/fs/cgroup/memory"])
def test_bind_over_the_containers_own_file_systems(oci, destination):
    worker = oci.new_worker()
    worker.request[RT]["mounts"].append(bind(destination))
    refused(oci, worker, 24, f"$.{RT}.mounts[12].destination")


def test_existing_pid_file_is_refused(oci):
    worker = oci.new_worker()
    worker.pid_file.write_text("")
    refused(oci, worker, 24, "$.pidFile")


@pytest.mark.parametrize("where", ["victim", "workers-users", "artifacts root", "config.json",
                                   "runc output"])
def test_pid_file_outside_the_workers_directories(oci, where):
    worker = oci.new_worker()
    cid = worker.container_id
    worker.request["pidFile"] = {
        "victim": f"{oci.storm.victim}/x.pid",
        "workers-users": f"{oci.storm.local}/workers-users/x.pid",
        "artifacts root": f"{oci.storm.artifacts}/x.pid",
        "config.json": f"{worker.workdir}/config.json",
        "runc output": f"{worker.workdir}/artifacts/runc-{cid}.err"}[where]
    refused(oci, worker, 24, "$.pidFile")


def test_request_for_another_user_is_refused(oci):
    worker = oci.new_worker()
    worker.request["username"] = "wlbob"
    refused(oci, worker, 24, "$.username")


def test_version_other_than_storms(oci):
    worker = oci.new_worker()
    del worker.request["version"]
    refused(oci, worker, 24, "$.version: is missing")
    worker.request = oci.new_worker().request
    worker.request["version"] = "1.0.2"
    refused(oci, worker, 24, "$.version")


def test_container_id_of_another_worker(oci):
    worker, other = oci.new_worker(), oci.new_worker(port=6701)
    worker.request["containerId"] = other.container_id
    refused(oci, worker, 24, "$.containerId")


def test_cgroup_outside_the_parent_is_refused(oci):
    worker = oci.new_worker()
    worker.request[RT]["linux"]["cgroupsPath"] = f"/elsewhere/{worker.container_id}"
    refused(oci, worker, 24, f"must be /wltest-storm/{worker.container_id}")


def test_real_time_cpu_is_refused(oci):
    worker = oci.new_worker()
    worker.request[RT]["linux"]["resources"]["cpu"]["realtimeRuntime"] = 950000
    refused(oci, worker, 24, "real-time")


@pytest.mark.parametrize("data, fragment", [
    (b'{"version":"0.1","username":"\\x"}', "invalid escape in a string at line 1 column 30"),
    (b'{"version":' + b'[' * 5000, "nesting deeper than 16 levels at line 1 column 27"),
    (b'{"version":"0.1","version":"0.1"}', "duplicate key 'version'"),
    (b'{"reapLayerKeepCount":NaN}', "NaN and Infinity"),
    (b'{"username":"\\udc00"}', "lone UTF-16 surrogate"),
    (b'{"username":"\xed\xa0\x80"}', "invalid UTF-8 at line 1 column 14 (byte 13)"),
    (b'{"reapLayerKeepCount":' + b'9' * 100 + b'}', "number longer than 64"),
])
def test_malformed_json_is_refused_with_its_position(oci, data, fragment):
    worker = oci.new_worker()
    refused(oci, worker, 24, fragment, request=data)


# --- the container script ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "symlink", "the user's", "directory", "fifo"])
def test_container_script_must_be_the_supervisors_regular_file(oci, victims, case):
    worker = oci.new_worker()
    script = worker.workdir / "storm-worker-script.sh"
    if case != "the user's":
        script.unlink()
    if case == "symlink":
        script.symlink_to(victims.storm.victim / "secret")
        os.lchown(script, uid_of(SUPERVISOR), uid_of(SUPERVISOR))
    elif case == "directory":
        script.mkdir()
    elif case == "fifo":
        os.mkfifo(script)
    config = worker.write()
    if case in ("the user's", "directory", "fifo"):
        os.lchown(script, uid_of(USER if case == "the user's" else SUPERVISOR), -1)
    result = oci.launcher.run(USER, "run-oci-container", worker.workdir, config,
                              worker.workdir / "artifacts")
    assert_refused(oci, worker, result, 24, "$.containerScriptPath")


# --- the layers: regular files of the layer store only ------------------------------------------
def _layer_refused(oci, worker, path, fragment="$.layers[1].path"):
    worker.request["layers"][1]["path"] = str(path)
    result = worker.launch()
    assert_refused(oci, worker, result, 24, fragment)
    assert "$.layers[1].path" in result.stderr
    assert loops_backed_by([path]) == []  # nothing attached to a loop device


def test_layers_that_are_not_files_of_the_store(oci, tmp_path):
    store = oci.store / "layers"
    outside = tmp_path / "layer.sqsh"
    outside.write_bytes(oci.layers[1].read_bytes())
    os.chown(outside, uid_of(SUPERVISOR), -1)
    os.chmod(outside, 0o644)
    link = store / "link.sqsh"
    link.symlink_to(oci.layers[1])
    os.lchown(link, uid_of(SUPERVISOR), -1)
    fifo = store / "fifo.sqsh"
    os.mkfifo(fifo)
    os.chown(fifo, uid_of(SUPERVISOR), -1)
    device = store / "device.sqsh"
    os.mknod(device, 0o644 | 0o060000, os.makedev(7, 0))  # a block device: /dev/loop0
    os.chown(device, uid_of(SUPERVISOR), -1)
    bobs = oci.localise(oci.image[1], "bobs")
    os.chown(bobs, uid_of("wlbob"), -1)
    directory = store / "dir.sqsh"
    directory.mkdir()
    worker = oci.new_worker()
    for path, fragment in ((outside, "is not in the layer store's directory"),
                           ("/etc/passwd", "is not in the layer store's directory"),
                           (link, "is not a regular file"),  # (O_PATH|O_NOFOLLOW: the link)
                           (fifo, "is not a regular file"),
                           (device, "is not a regular file"),
                           (directory, "is not a regular file"),
                           (bobs, "belongs to uid"),
                           (oci.store / "layers" / "missing.sqsh", "No such file")):
        _layer_refused(oci, worker, path, fragment)


def test_layer_the_supervisor_cannot_read(oci):
    private = oci.localise(oci.image[1], "private")
    os.chown(private, 0, 0)
    os.chmod(private, 0o600)
    worker = oci.new_worker()
    _layer_refused(oci, worker, private, "Permission denied")


def test_layer_that_is_not_squashfs_fails_cleanly(oci, tmp_path):
    fake = tmp_path / "fake"
    fake.write_bytes(b"not a squashfs image" * 1000)
    layer = oci.localise(fake)
    worker = oci.new_worker()
    worker.request["layers"].append({"mediaType": "application/vnd.squashfs", "path": str(layer)})
    result = worker.launch()
    assert_refused(oci, worker, result, 44, f"cannot mount layer {layer}")
    assert oci.launcher.run(USER, "reap-oci-container", worker.container_id, 0).returncode == 0


# --- reap ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("container_id", ["../../etc", "6703-x;rm -rf /", "/", "6703-..",
                                          "-rf", "6703-1a23ca4b-6062-4d08-8ac3-b09e7d35e7c/",
                                          "0-1a23ca4b-6062-4d08-8ac3-b09e7d35e7cb"])
def test_reap_refuses_bad_ids_before_touching_anything(oci, container_id):
    result = oci.launcher.run(USER, "reap-oci-container", container_id, "0")
    assert result.returncode == 41
    assert "invalid container id" in result.stderr


def test_reap_of_unknown_id_is_a_clean_no_op(oci):
    worker = oci.new_worker()
    assert worker.reap().returncode == 0
    bad = oci.launcher.run(USER, "reap-oci-container", worker.container_id, "many")
    assert bad.returncode == 1 and "invalid layer keep count" in bad.stderr


def test_request_bytes_are_storms(oci):
    """The fixture sends what RuncLibContainerManager writes: one compact line, no newline."""
    worker = oci.new_worker()
    data = storm_json(worker.request)
    assert b"\n" not in data and data.startswith(b'{"version":"0.1","username":"wlalice",')
