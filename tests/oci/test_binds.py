"""Bind sources are pinned: runc binds root-only staged mounts of exactly what was checked,
and reaping detaches them without touching the user's files behind them."""

import json
import os
import subprocess

from support.oci import assert_nothing_left, mounted_under


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
