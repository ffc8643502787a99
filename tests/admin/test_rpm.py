"""The RPM builds with rpmbuild from a clean copy of the tree and installs what it should,
with the right owners and modes, and requires what the launcher needs at run time."""

import io
import shutil
import subprocess
import tarfile

import pytest

from support.env import REPO, require

VERSION = "0.1.0"


def source_tarball(directory) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    with tarfile.open(directory / f"worker-launcher-{VERSION}.tar.gz", "w:gz") as tar:
        for name in files:
            path = REPO / name
            if path.is_file() and "__pycache__" not in name:
                tar.add(path, arcname=f"worker-launcher-{VERSION}/{name}")


@pytest.fixture(scope="module")
def rpm_file(tmp_path_factory):
    require(shutil.which("rpmbuild") is not None, "rpmbuild (Debian package rpm) is not installed")
    top = tmp_path_factory.mktemp("rpmbuild")
    source_tarball(top)
    result = subprocess.run(
        ["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}", "--define",
         f"_sourcedir {top}", str(REPO / "packaging" / "worker-launcher.spec")],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = list((top / "RPMS").rglob("worker-launcher-*.rpm"))
    assert len(built) == 1
    return built[0]


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
    requires = subprocess.run(["rpm", "-qp", "--requires", str(rpm_file)], check=True,
                              capture_output=True, text=True).stdout.split("\n")
    names = {line.split()[0] for line in requires if line.strip()}
    assert {"runc", "squashfs-tools", "python3-cffi", "python3-pyyaml"} <= names


def test_entry_points_at_the_node_paths(rpm_file, tmp_path):
    payload = subprocess.run(["rpm2cpio", str(rpm_file)], check=True, capture_output=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=payload, cwd=tmp_path, check=True)
    build = (tmp_path / "usr/lib/worker-launcher/worker_launcher/_build.py").read_text()
    assert 'CONF_PATH = "/etc/storm/worker-launcher.cfg"' in build
    assert 'BINARY_PATH = "/usr/bin/worker-launcher"' in build
    assert "/usr/lib/worker-launcher" in (tmp_path / "usr/lib/worker-launcher/entry.py").read_text()
    assert "buildroot" not in io.open(tmp_path / "usr/bin/worker-launcher", "rb").read().decode("latin-1")
