"""Storm's third argument, `<workdir>/artifacts`: the supervisor's symlink to the worker's
artifacts directory <artifacts root>/<topology id>/<port>. The launcher follows it by
descriptor and only to the user's artifacts directory of the container's port; runc's
output and the pid file go there, written by the user. Anything else is refused naming the
link and its target, before anything exists."""

import os
import subprocess
import sys

import pytest

from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.oci import assert_nothing_left, assert_refused

UP = "echo up > $WORKDIR/up.out\nsleep 300\n"


def relink(worker, target, owner=SUPERVISOR):
    link = worker.workdir / "artifacts"
    link.unlink()
    link.symlink_to(target)
    os.lchown(link, uid_of(owner), gid_of_group())
    return link


def test_storms_link_is_followed_and_the_users_files_land_behind_it(oci):
    worker = oci.new_worker(UP)
    result = worker.launch()
    assert result.returncode == 0, result.stderr
    worker.wait_for("up.out")
    for name in (f"runc-{worker.container_id}.out", f"runc-{worker.container_id}.err",
                 f"container-{worker.worker_id}.pid"):
        st = (worker.artifacts / name).stat()
        assert st.st_uid == uid_of(USER), name
    pid = int(worker.pid_file.read_text())
    assert os.stat(f"/proc/{pid}").st_uid == uid_of(USER)
    assert (worker.workdir / "artifacts").is_symlink()  # left as Storm made it
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


def _refused(oci, worker, fragment, artifacts=None):
    result = worker.launch(artifacts=artifacts)
    assert_refused(oci, worker, result, 5, fragment)
    return result


def test_link_made_by_someone_else(oci):
    worker = oci.new_worker()
    link = relink(worker, worker.artifacts, owner=USER)
    _refused(oci, worker, f"artifacts link {link} -> {worker.artifacts}: made by uid")


@pytest.mark.parametrize("case", ["victim", "topology dir", "other port", "not handed over",
                                  "relative", "dotted", "bob's", "user's symlink", "missing"])
def test_link_to_anything_but_the_users_artifacts_dir_of_the_port(oci, victims, case):
    worker = oci.new_worker()
    root = oci.storm.artifacts
    if case == "victim":
        target = victims.storm.victim
    elif case == "topology dir":
        target = worker.artifacts.parent
    elif case == "other port":
        target = oci.new_worker(port=6705).artifacts
    elif case == "not handed over":
        target = root / "topo-2" / "6700"
        target.mkdir(parents=True)
        os.chown(target, uid_of(SUPERVISOR), gid_of_group())
    elif case == "relative":
        target = "../../../artifacts/topo-1-1700000000/6700"
    elif case == "dotted":
        target = f"{root}/x/../topo-1-1700000000/6700"
    elif case == "bob's":
        target = oci.new_worker(user="wlbob", topology="topo-bob").artifacts
    elif case == "user's symlink":
        topology = root / "topo-3"
        topology.mkdir()
        os.chown(topology, uid_of(USER), gid_of_group())
        target = topology / "6700"
        target.symlink_to(victims.storm.victim)
        os.lchown(target, uid_of(USER), gid_of_group())
    else:
        target = root / "topo-missing" / "6700"
    link = relink(worker, target)
    _refused(oci, worker, f"artifacts link {link} -> ")


def test_a_real_directory_at_the_link(oci):
    worker = oci.new_worker()
    link = worker.workdir / "artifacts"
    link.unlink()
    link.mkdir()
    os.chown(link, uid_of(SUPERVISOR), gid_of_group())
    _refused(oci, worker, f"artifacts link {link}: not a symlink")


def test_missing_link(oci):
    worker = oci.new_worker()
    (worker.workdir / "artifacts").unlink()
    _refused(oci, worker, "No such file or directory")


@pytest.mark.parametrize("third", ["/etc", "/tmp/artifacts", "victim"])
def test_third_argument_elsewhere(oci, victims, third):
    worker = oci.new_worker()
    _refused(oci, worker, "artifacts directory",
             artifacts=victims.storm.victim if third == "victim" else third)


def test_artifacts_dir_named_directly_with_the_pid_file_in_it(oci):
    """Our runc-run verb may name the directory itself (then the pid file is there)."""
    worker = oci.new_worker(UP)
    worker.request["pidFile"] = str(worker.artifacts / "direct.pid")
    result = worker.launch(artifacts=worker.artifacts, command="runc-run")
    assert result.returncode == 0, result.stderr
    worker.wait_for("up.out")
    assert (worker.artifacts / "direct.pid").read_text().isdigit()
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


def test_pid_file_in_the_workdir(oci):
    worker = oci.new_worker(UP)
    worker.request["pidFile"] = str(worker.workdir / "container.pid")
    assert worker.launch().returncode == 0
    worker.wait_for("up.out")
    pid_file = worker.workdir / "container.pid"
    assert pid_file.stat().st_uid == uid_of(USER) and pid_file.read_text().isdigit()
    assert worker.reap().returncode == 0
    assert_nothing_left(oci, worker)


def test_supervisor_flipping_the_link_to_bobs_artifacts_during_launches(oci):
    """The link is read once on the workdir's descriptor and its target used only through
    the descriptor it resolved to: flipping it to another user's artifacts directory while
    launches run never gets a file written there."""
    bobs = oci.new_worker(user="wlbob", topology="topo-bob").artifacts
    before = sorted(os.listdir(bobs))
    for _ in range(int(os.environ.get("WL_RACE_ROUNDS", "25")) // 3):
        worker = oci.new_worker(UP)
        link = worker.workdir / "artifacts"
        racer = subprocess.Popen([sys.executable, "-I", "-c", f"""
import os
link, a, b = {str(link)!r}, {str(worker.artifacts)!r}, {str(bobs)!r}
while True:
    for target in (b, a):
        try:
            os.symlink(target, link + ".new")
            os.rename(link + ".new", link)
        except OSError:
            pass
"""], user=uid_of(SUPERVISOR), group=gid_of_group(), extra_groups=[gid_of_group()])
        try:
            result = worker.launch()
        finally:
            racer.kill()
            racer.wait()
        assert result.returncode in (0, 5), result.stderr
        if result.returncode == 0:
            worker.wait_for("up.out")
        assert sorted(os.listdir(bobs)) == before
        assert worker.reap().returncode == 0
        assert_nothing_left(oci, worker)
