"""Bind sources are pinned: runc binds root-only staged mounts of exactly what was checked,
and reaping detaches them without touching the user's files behind them."""

import json
import os

from support.oci import mounted_under


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
    assert worker.reap(keep=0).returncode == 0
    assert mounted_under(oci.run_root) == []
    assert (worker.workdir / "kept.out").read_text() == "kept\n"  # behind a bind: untouched
    assert (worker.workdir / "tmp").is_dir()
