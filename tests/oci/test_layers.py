"""The layer database: a layer file replaced at the same path while a container still runs on
the old one, and layer mounts private to root."""

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from support.env import SUPERVISOR, USER, uid_of
from support.oci import assert_nothing_left, loops_backed_by, mounted_under

LOOP = ("while true; do cat /etc/wl-layer > $WORKDIR/tick.tmp && mv $WORKDIR/tick.tmp "
        "$WORKDIR/tick.out; sleep 0.1; done\n")


def layer_mnt(oci, path) -> str:
    return f"{oci.run_root}/layers/{hashlib.sha256(str(path).encode()).hexdigest()}/mnt"


def file_layer_mnt(oci, path) -> str:
    st = os.stat(path)
    key = f"{path}\0{st.st_dev}:{st.st_ino}".encode()
    return f"{oci.run_root}/layers/{hashlib.sha256(key).hexdigest()}/mnt"


def replace_layer(path: Path, mark: str) -> None:
    """What Storm's localiser does when a layer is downloaded again: a new file (a new
    inode) at the same path; the old one lives on behind its loop device."""
    with tempfile.TemporaryDirectory() as tree:
        Path(tree, "etc").mkdir()
        Path(tree, "etc", "wl-layer").write_text(mark)
        new = path.with_name("working.sqsh")
        subprocess.run(["mksquashfs", tree, str(new), "-quiet", "-noappend", "-all-root"],
                       check=True, capture_output=True)
    os.chown(new, uid_of(SUPERVISOR), -1)
    os.chmod(new, 0o644)
    path.unlink()
    new.rename(path)


def ticks(worker) -> str:
    (worker.workdir / "tick.out").unlink()
    return worker.wait_for("tick.out")


def test_a_layer_downloaded_again_while_an_old_container_runs(oci):
    top = oci.layers[2]
    old = oci.new_worker(LOOP, port=6701)
    assert old.launch().returncode == 0
    assert old.wait_for("tick.out") == "layer 2\n"
    replace_layer(top, "layer 2 again\n")
    new = oci.new_worker(LOOP, port=6702)
    result = new.launch()
    assert result.returncode == 0, result.stderr  # (was exit 44 "changed since it was mounted")
    assert new.wait_for("tick.out") == "layer 2 again\n"
    assert ticks(old) == "layer 2\n"  # the old container keeps its old layer
    mounted = set(mounted_under(oci.run_root))
    assert {layer_mnt(oci, top), file_layer_mnt(oci, top)} <= mounted
    # a third launch reuses the new file's mount: no new loop device
    loops = len(loops_backed_by(oci.layers))
    third = oci.new_worker(LOOP, port=6703)
    assert third.launch().returncode == 0
    assert third.wait_for("tick.out") == "layer 2 again\n"
    assert len(loops_backed_by(oci.layers)) == loops
    # reap the old container, keeping up to 100 layers: its deleted layer goes, the rest stays
    assert old.reap(keep=100).returncode == 0
    mounted = set(mounted_under(oci.run_root))
    assert layer_mnt(oci, top) not in mounted and file_layer_mnt(oci, top) in mounted
    assert ticks(new) == "layer 2 again\n" and ticks(third) == "layer 2 again\n"
    for worker in (new, third):
        assert worker.reap(keep=0).returncode == 0
    assert_nothing_left(oci, old, new, third)


def test_the_run_root_and_layer_mounts_are_root_only(oci):
    """The supervisor keeps a layer 0600; through its mount under the run root, nobody but
    root reads it (not an account outside the launcher group, not the user)."""
    private = oci.localise(oci.image[2], "private")
    os.chmod(private, 0o600)
    worker = oci.new_worker("echo up > $WORKDIR/up.out\nsleep 300\n")
    worker.request["layers"][2]["path"] = str(private)
    assert worker.launch().returncode == 0
    worker.wait_for("up.out")
    for path in (oci.run_root, oci.run_root / "layers"):
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700), path
    mark = f"{layer_mnt(oci, private)}/etc/wl-layer"
    assert Path(mark).read_text() == "layer 2\n"  # root reads it
    for account in ("wloutsider", USER):
        probe = subprocess.run(["python3", "-I", "-c", f"print(open({mark!r}).read())"],
                               user=account, capture_output=True, text=True)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, account
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker, layers=[private])


def test_a_run_root_left_0755_is_made_private_on_the_next_call(oci):
    for path in (oci.run_root, oci.run_root / "layers"):
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o755)
    worker = oci.new_worker()
    assert worker.reap().returncode == 0
    for path in (oci.run_root, oci.run_root / "layers"):
        assert path.stat().st_mode & 0o7777 == 0o700, path
