"""--list-state: what the OCI runtime holds in the run root, read only, orphans marked; and
the clean-up the man page gives for them (reap-oci-container) leaves nothing behind."""

import json
import os
import subprocess

import pytest

from support.env import USER
from support.oci import Oci, loops_backed_by, mounted_under, runc_binary, runc_ids


@pytest.fixture
def oci(launcher, storm, image, tmp_path):
    """The root conftest's oci, on a run root of its own: these tests count what is in it."""
    old_root, old_config = launcher.run_root, dict(launcher.base_config)
    launcher.run_root = launcher.prefix / f"run-{tmp_path.name}"
    launcher.run_root.mkdir(mode=0o700)
    launcher.base_config["worker.launcher.oci.run-root"] = str(launcher.run_root)
    launcher.write_config({"worker.launcher.policy": str(launcher.conf.parent / "policy.yaml")})
    env = Oci(launcher, storm, image)
    try:
        yield env
    finally:
        env.cleanup()
        launcher.run_root, launcher.base_config = old_root, old_config


def state(launcher, *args) -> dict:
    result = launcher.run("--list-state", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_empty_run_root(launcher, tmp_path):
    run_root = launcher.prefix / f"empty-run-{tmp_path.name}"  # not the one other tests share
    run_root.mkdir(mode=0o700)
    launcher.write_config({"worker.launcher.oci.run-root": str(run_root)})
    result = launcher.run("--list-state")
    run_root.rmdir()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"run root {run_root}"
    assert "containers: 0" in lines and lines[-1].startswith("summary: 0 containers")


def test_running_container_its_binds_and_layers(oci):
    worker = oci.new_worker(script="sleep 30\n")
    result = worker.launch()
    assert result.returncode == 0, result.stderr
    before = (mounted_under(oci.run_root), loops_backed_by(oci.layers))
    found = state(oci.launcher)
    assert (mounted_under(oci.run_root), loops_backed_by(oci.layers)) == before  # read only
    (container,) = found["containers"]
    assert container["id"] == worker.container_id and not container["orphaned"]
    assert container["runc"]["status"] == "running" and container["runc"]["pid"] > 0
    shown = [bind["shows"] for bind in container["binds"]]
    sources = [m["source"] for m in worker.request["ociRuntimeConfig"]["mounts"]
               if m["type"] == "bind"]
    assert len(shown) == len(sources)
    assert {str(worker.workdir), f"{worker.workdir}/tmp"} <= set(shown)
    assert set(shown) == {os.path.realpath(source) for source in sources}, \
        (shown, sources)
    assert all(bind["path"].startswith(f"{container['path']}/binds/") for bind in container["binds"])
    assert len(found["layers"]) == len(oci.layers) == len(container["rootfs"]["layers"])
    backing = {layer["backing_file"] for layer in found["layers"]}
    assert backing == {str(path) for path in oci.layers}
    for layer in found["layers"]:
        assert layer["users"] == [worker.container_id] and not layer["orphaned"]
        assert layer["device"].startswith("/dev/loop")
    assert found["summary"]["orphaned_containers"] == found["summary"]["orphaned_layers"] == 0
    text = oci.launcher.run("--list-state").stdout
    assert f"  {worker.container_id}  runc running, pid" in text
    assert f"shows {worker.workdir}" in text and "ORPHANED" not in text
    assert worker.reap(keep=0).returncode == 0


def test_orphans_are_marked_and_reap_clears_them(oci):
    worker = oci.new_worker(script="sleep 30\n")
    assert worker.launch().returncode == 0
    # the supervisor died and someone removed the runc container by hand: the directory,
    # its rootfs and its binds of the worker's directories stay mounted
    subprocess.run([runc_binary(), "delete", "--force", worker.container_id], check=True,
                   capture_output=True)
    found = state(oci.launcher)
    (container,) = found["containers"]
    assert container["orphaned"] and container["runc"] is None
    assert "runc has no state for it: its worker is gone" in container["problems"]
    assert found["summary"]["stray_binds"] == len(container["binds"]) > 3
    assert all(bind["mounted"] for bind in container["binds"])
    # its overlay still stands on the layers: they are its, not orphans of their own
    assert all(layer["users"] == [worker.container_id] and not layer["orphaned"]
               for layer in found["layers"])
    text = oci.launcher.run("--list-state").stdout
    assert f"  {worker.container_id}  runc: no state  ORPHANED" in text
    assert "never rm -rf a container directory" in text
    # the man page's procedure: reap with the keep count, then 0 for the unused layers
    assert worker.reap(keep=100).returncode == 0
    assert (worker.workdir / "storm-worker-script.sh").exists()  # the binds lost nothing
    found = state(oci.launcher)
    assert found["containers"] == [] and len(found["layers"]) == len(oci.layers)
    assert all(layer["users"] == [] and layer["orphaned"] and
               layer["problem"] == "unused by every container" for layer in found["layers"])
    result = oci.launcher.run(USER, "reap-oci-container", "1-00000000-0000-0000-0000-000000000000", 0)
    assert result.returncode == 0, result.stderr
    found = state(oci.launcher)
    assert found["containers"] == found["layers"] == found["other_mounts"] == []
    assert mounted_under(oci.run_root) == [] and loops_backed_by(oci.layers) == []
    assert worker.container_id not in runc_ids()


def test_leftover_mount_and_layer_directory(oci):
    """What none of the launcher's own layouts explains is listed, not guessed at."""
    stray = oci.run_root / "stray"
    stray.mkdir()
    empty_layer = oci.run_root / "layers" / ("0" * 64)
    empty_layer.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "wl-stray", str(stray)], check=True)
    try:
        found = state(oci.launcher)
        assert [m["path"] for m in found["other_mounts"]] == [str(stray)]
        (layer,) = [layer for layer in found["layers"] if layer["name"] == "0" * 64]
        assert layer["problem"] == "a layer directory without its mount" and layer["orphaned"]
    finally:
        subprocess.run(["umount", str(stray)], check=True)
        stray.rmdir()
        empty_layer.rmdir()
