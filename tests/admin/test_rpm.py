"""The RPM, built as the README says (tools/dist, then rpmbuild -ta) from a source tarball:
its files, owners, modes and requirements; and one built for another launcher group and a
Python 3.9 outside any distribution's layout (pyenv's), installed for real with rpm on this
machine, where it passes --check-config and launches real workers, then is erased."""

import grp
import io
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from support.env import (REPO, TEST_ROOT, USER, Installed, ensure_accounts, group_exists,
                         require)
from support.oci import Oci, build_image, loops_backed_by, mounted_under, runc_binary
from support.rootfs import busybox_available
from support.storm import Storm

VERSION = "0.2.0"
PYTHON39 = "/root/.pyenv/versions/3.9.18/bin/python3"
GROUP = "hadoop"
SUPERVISOR = "wlhsuper"  # the supervisor account of the RPM's launcher group
CONF_DIR = TEST_ROOT / "rpm-etc"
CONF = CONF_DIR / "worker-launcher.cfg"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """The README's command for the source tarball."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([str(REPO / "tools" / "dist"), str(out)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == out / f"worker-launcher-{VERSION}.tar.gz" and path.is_file()
    return path


def rpmbuild(tarball, top, *defines) -> Path:
    require(shutil.which("rpmbuild") is not None, "rpmbuild (Debian package rpm) is not installed")
    argv = ["rpmbuild", "-ta", "--nodeps", "--define", f"_topdir {top}"]
    for define in defines:
        argv += ["--define", define]
    result = subprocess.run(argv + [str(tarball)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = list((top / "RPMS").rglob("worker-launcher-*.rpm"))
    assert len(built) == 1
    return built[0]


@pytest.fixture(scope="module")
def rpm_file(tarball, tmp_path_factory):
    return rpmbuild(tarball, tmp_path_factory.mktemp("rpmbuild"))


@pytest.fixture(scope="module")
def hadoop_rpm(tarball, tmp_path_factory):
    require(os.access(PYTHON39, os.X_OK), f"{PYTHON39} (pyenv's Python 3.9) is not installed")
    return rpmbuild(tarball, tmp_path_factory.mktemp("rpmbuild-hadoop"),
                    f"launcher_group {GROUP}", f"__python3 {PYTHON39}", f"launcher_conf {CONF}")


def listing(rpm_file) -> dict:
    """path -> (mode string, owner, group) from rpm -qlvp."""
    out = subprocess.run(["rpm", "-qlvp", str(rpm_file)], check=True, capture_output=True,
                         text=True).stdout
    entries = {}
    for line in out.splitlines():
        fields = line.split()
        path = fields[-1] if "->" not in fields else fields[-3]
        entries[path] = (fields[0], fields[2], fields[3])
    return entries


def requirements(rpm_file) -> set:
    out = subprocess.run(["rpm", "-qp", "--requires", str(rpm_file)], check=True,
                         capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def payload(rpm_file, directory) -> Path:
    data = subprocess.run(["rpm2cpio", str(rpm_file)], check=True, capture_output=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=data, cwd=directory, check=True)
    return directory


def test_every_path_has_the_right_owner_group_and_mode(rpm_file):
    entries = listing(rpm_file)
    assert entries["/usr/bin/worker-launcher"] == ("-r-sr-s---", "root", "storm")
    assert entries["/etc/storm/worker-launcher.cfg"] == ("-rw-r--r--", "root", "root")
    assert entries["/etc/storm"] == ("drwxr-xr-x", "root", "root")
    assert any(path.startswith("/usr/share/man/man8/worker-launcher.8") for path in entries)
    package = {p: e for p, e in entries.items() if p.startswith("/usr/lib/worker-launcher")}
    assert "/usr/lib/worker-launcher/entry.py" in package
    assert any(p.endswith(".so") and "/_sys" in p for p in package)
    assert any(p.endswith("worker_launcher/oci/verbs.py") for p in package)
    for path, (mode, owner, group) in package.items():
        assert (owner, group) == ("root", "root"), path
        assert mode[0] in "d-" and mode[5] == "-" and mode[8] == "-", (path, mode)  # no g/o write
        assert "s" not in mode, (path, mode)
    for path, (mode, owner, _) in entries.items():
        assert owner == "root", path


def test_runtime_requirements(rpm_file):
    names = {line.split()[0] for line in requirements(rpm_file)}
    assert {"runc", "squashfs-tools", "python3-cffi", "python3-pyyaml", "/usr/bin/python3",
            "python(abi)"} <= names


def test_entry_points_at_the_node_paths(rpm_file, tmp_path):
    root = payload(rpm_file, tmp_path)
    build = (root / "usr/lib/worker-launcher/worker_launcher/_build.py").read_text()
    assert 'CONF_PATH = "/etc/storm/worker-launcher.cfg"' in build
    assert 'BINARY_PATH = "/usr/bin/worker-launcher"' in build
    assert 'PYTHON_PATH = "/usr/bin/python3"' in build
    assert "/usr/lib/worker-launcher" in (root / "usr/lib/worker-launcher/entry.py").read_text()
    assert "buildroot" not in io.open(root / "usr/bin/worker-launcher", "rb").read().decode("latin-1")
    config = (root / "etc/storm/worker-launcher.cfg").read_text()
    assert "\nstorm.worker-launcher.group=storm\n" in config


def test_defines_reach_every_file_and_nothing_of_debian(hadoop_rpm, tmp_path):
    entries = listing(hadoop_rpm)
    assert entries["/usr/bin/worker-launcher"] == ("-r-sr-s---", "root", GROUP)
    assert entries[str(CONF)] == ("-rw-r--r--", "root", "root")
    assert "/etc/storm/worker-launcher.cfg" not in entries
    assert any(p.endswith(".cpython-39-x86_64-linux-gnu.so") for p in entries)
    assert not any("cpython-311" in p for p in entries)
    requires = requirements(hadoop_rpm)
    assert {"python(abi) = 3.9", PYTHON39} <= requires
    # the stub needs glibc 2.34 only for __libc_start_main when built on glibc >= 2.34 (here);
    # built on RHEL 8 it needs 2.28's symbols. The cffi modules need nothing newer than 2.14.
    glibc = [tuple(int(n) for n in r.split("GLIBC_")[1].split(")")[0].split("."))
             for r in requires if "GLIBC_" in r]
    assert glibc and max(glibc) <= (2, 34), glibc
    root = payload(hadoop_rpm, tmp_path)
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for debian in (b"dist-packages", b"/usr/lib/python3/", b"/usr/lib/x86_64-linux-gnu"):
                assert debian not in data, (path, debian)
    if shutil.which("objdump"):
        for so in root.rglob("*.so"):
            symbols = subprocess.run(["objdump", "-T", str(so)], capture_output=True,
                                     text=True, check=True).stdout
            assert "GLIBC_2.3" not in symbols.replace("GLIBC_2.3.", ""), so
        stub = subprocess.run(["objdump", "-T", str(root / "usr/bin/worker-launcher")],
                              capture_output=True, text=True, check=True).stdout
        newest = [line.split()[-1] for line in stub.splitlines() if "GLIBC_2.34" in line]
        assert newest in ([], ["__libc_start_main"]), newest
    entry = (root / "usr/lib/worker-launcher/entry.py").read_text()
    assert "/root/.pyenv/versions/3.9.18/lib/python3.9/site-packages" in entry
    assert f'CONF_PATH = "{CONF}"' in (
        root / "usr/lib/worker-launcher/worker_launcher/_build.py").read_text()
    assert f"\nstorm.worker-launcher.group={GROUP}\n" in (root / str(CONF)[1:]).read_text()


def test_install_fails_loudly_without_the_group(tarball, tmp_path):
    """A group %pre can neither find nor create: rpm stops before installing a binary the
    supervisor account could not run (rpm would make it root:root without setgid)."""
    require(shutil.which("rpmbuild") is not None, "rpmbuild (Debian package rpm) is not installed")
    require(not _rpm_installed(), "worker-launcher is installed")
    group = "wl-" + "x" * 40  # longer than groupadd accepts, and known nowhere
    built = rpmbuild(tarball, tmp_path, f"launcher_group {group}")
    result = subprocess.run(["rpm", "-i", "--nodeps", str(built)], capture_output=True, text=True)
    try:
        assert result.returncode != 0
        assert f"cannot create the launcher group {group}" in result.stderr
        assert not _rpm_installed() and not Path("/usr/bin/worker-launcher").exists()
    finally:
        if _rpm_installed():
            subprocess.run(["rpm", "-e", "--nodeps", "worker-launcher"], capture_output=True)


def _rpm_installed() -> bool:
    return subprocess.run(["rpm", "-q", "worker-launcher"], capture_output=True).returncode == 0


def _erase() -> None:
    if _rpm_installed():
        subprocess.run(["rpm", "-e", "--nodeps", "worker-launcher"], capture_output=True)
    for leftover in CONF_DIR.glob("*.rpmsave"):
        leftover.unlink()
    if CONF_DIR.exists() and not any(CONF_DIR.iterdir()):
        CONF_DIR.rmdir()


class RpmLauncher(Installed):
    """The RPM's launcher: /usr/bin/worker-launcher, run by its own supervisor account."""

    def __init__(self, run_root: Path):
        super().__init__(Path("/usr"))
        self.conf, self.run_root = CONF, run_root
        self.base_config = dict(self.base_config, **{
            "storm.worker-launcher.group": GROUP, "worker.launcher.oci.run-root": str(run_root)})

    def run(self, *args, **kwargs):
        kwargs.setdefault("user", SUPERVISOR)
        return super().run(*args, **kwargs)


@pytest.fixture(scope="module")
def rpm_install(hadoop_rpm, installed):
    """hadoop_rpm installed with rpm -i on this machine; erased (and the group and account
    this made removed) afterwards."""
    ensure_accounts()
    if _rpm_installed():
        _erase()  # left by an interrupted run
    require(not Path("/usr/bin/worker-launcher").exists(),
            "/usr/bin/worker-launcher exists and is not from an earlier run of this test")
    group_was_there = group_exists(GROUP)
    work = Path(tempfile.mkdtemp(prefix="rpm-", dir=TEST_ROOT))
    os.chmod(work, 0o755)
    made_account = False
    try:
        result = subprocess.run(["rpm", "-i", "--nodeps", str(hadoop_rpm)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        assert group_exists(GROUP)
        if not group_was_there:
            assert grp.getgrnam(GROUP).gr_gid < 1000  # %pre made a system group
        try:
            pwd.getpwnam(SUPERVISOR)
        except KeyError:
            subprocess.run(["useradd", "-M", "-N", "-g", GROUP, "-s", "/bin/sh", "-d",
                            "/nonexistent", "-u", "1903", SUPERVISOR], check=True)
            made_account = True
        run_root = work / "run"
        run_root.mkdir(mode=0o700)
        launcher = RpmLauncher(run_root)
        launcher.work = work
        yield launcher
    finally:
        _erase()
        shutil.rmtree(work, ignore_errors=True)
        if made_account:
            subprocess.run(["userdel", SUPERVISOR], capture_output=True)
        if not group_was_there and group_exists(GROUP):
            subprocess.run(["groupdel", GROUP], capture_output=True)


def test_installed_package_checks_its_config_and_says_what_it_runs(rpm_install):
    st = os.stat("/usr/bin/worker-launcher")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, grp.getgrnam(GROUP).gr_gid, 0o6550)
    verify = subprocess.run(["rpm", "-V", "--nodeps", "worker-launcher"], capture_output=True,
                            text=True)
    assert verify.returncode == 0, verify.stdout  # every file as packaged, pycs included
    result = rpm_install.run("--check-config")  # the packaged config, as installed
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   group    launcher group {GROUP} is gid" in result.stdout
    assert f"ok   binary   /usr/bin/worker-launcher is root:{GROUP}" in result.stdout
    version = json.loads(rpm_install.run("--version", "--json").stdout)
    assert version["interpreter"] == PYTHON39 and version["python"].startswith("3.9.")
    assert version["config"] == str(CONF) and version["entry"] == "/usr/lib/worker-launcher/entry.py"
    with pytest.raises(PermissionError):  # an account outside the group cannot run it
        rpm_install.run("--version", user="wlsuper")


def test_installed_package_runs_a_worker_and_signals_it(rpm_install):
    storm = Storm(Path(tempfile.mkdtemp(prefix="storm-", dir=rpm_install.work)))
    os.chmod(storm.base, 0o755)
    policy = CONF_DIR / "policy.yaml"
    policy.write_text(f"storm.local.dir: {storm.local}\n"
                      f"storm.workers.artifacts.dir: {storm.artifacts}\n")
    rpm_install.write_config({"worker.launcher.policy": str(policy)})
    assert rpm_install.run("--check-config").returncode == 0
    workdir = storm.local / "workers" / "wid"
    workdir.mkdir(parents=True)
    script = storm.base / "storm-worker-script.sh"
    script.write_text(f"#!/bin/sh\nid -u > {workdir}/id.out\nexec sleep 60\n")
    for path in (storm.local / "workers", workdir, script):
        os.chown(path, pwd.getpwnam(SUPERVISOR).pw_uid, grp.getgrnam(GROUP).gr_gid)
    entry = pwd.getpwnam(SUPERVISOR)
    worker = subprocess.Popen(["/usr/bin/worker-launcher", USER, "worker", str(workdir),
                               str(script)], user=entry.pw_uid, group=entry.pw_gid,
                              extra_groups=os.getgrouplist(SUPERVISOR, entry.pw_gid),
                              env={"PATH": "/usr/bin:/bin"}, cwd="/", stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (workdir / "id.out").exists() or not (workdir / "id.out").stat().st_size:
            assert time.monotonic() < deadline, "the worker wrote no id.out"
            assert worker.poll() is None, worker.stderr.read()
            time.sleep(0.05)
        assert (workdir / "id.out").read_text().strip() == str(pwd.getpwnam(USER).pw_uid)
        assert (workdir / "launch_container.sh").stat().st_uid == pwd.getpwnam(USER).pw_uid
        result = rpm_install.run(USER, "signal", worker.pid, 15)
        assert result.returncode == 0, result.stderr
        assert worker.wait(timeout=10) == -15
    finally:
        worker.kill()
        worker.wait()
        policy.unlink()
        rpm_install.write_config()


def _reown(top: Path) -> None:
    """What the test fixtures made as their supervisor account (wlsuper, group wltest)
    becomes this package's supervisor's (wlhsuper, group hadoop), as Storm would have it."""
    fixture = (pwd.getpwnam("wlsuper").pw_uid, grp.getgrnam("wltest").gr_gid)
    ours = (pwd.getpwnam(SUPERVISOR).pw_uid, grp.getgrnam(GROUP).gr_gid)
    for path in [top, *top.rglob("*")]:
        st = path.lstat()
        uid = ours[0] if st.st_uid == fixture[0] else st.st_uid
        gid = ours[1] if st.st_gid == fixture[1] else st.st_gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            mode = st.st_mode & 0o7777
            os.lchown(path, uid, gid)
            if not path.is_symlink():
                os.chmod(path, mode)  # chown clears setgid; Storm's directories keep it


def test_installed_package_launches_and_reaps_an_oci_worker(rpm_install):
    require(shutil.which("mksquashfs") is not None and busybox_available()
            and os.path.exists(runc_binary()) and Path("/dev/loop-control").exists(),
            "squashfs-tools, busybox-static, runc and loop devices are needed")
    storm = Storm(Path(tempfile.mkdtemp(prefix="storm-", dir=rpm_install.work)))
    os.chmod(storm.base, 0o755)
    image = storm.base / "image"
    image.mkdir(mode=0o755)
    policy = CONF_DIR / "policy.yaml"
    policy.write_text(f"storm.local.dir: {storm.local}\n"
                      f"storm.workers.artifacts.dir: {storm.artifacts}\n")
    rpm_install.write_config({"worker.launcher.policy": str(policy)})
    oci = Oci(rpm_install, storm, build_image(image, layer_count=2), policy=policy)
    try:
        worker = oci.new_worker()
        config = worker.write()
        _reown(storm.base)
        assert rpm_install.run("--check-config").returncode == 0
        result = rpm_install.run(USER, "run-oci-container", worker.workdir, config,
                                 worker.workdir / "artifacts")
        assert result.returncode == 0, result.stderr
        assert worker.wait_for("id.out").startswith(f"uid={pwd.getpwnam(USER).pw_uid}")
        listed = json.loads(rpm_install.run("--list-state", "--json").stdout)
        assert [c["id"] for c in listed["containers"]] == [worker.container_id]
        result = rpm_install.run(USER, "reap-oci-container", worker.container_id, 0)
        assert result.returncode == 0, result.stderr
        assert mounted_under(rpm_install.run_root) == [] and loops_backed_by(oci.layers) == []
    finally:
        oci.cleanup()
        policy.unlink()
        rpm_install.write_config()
