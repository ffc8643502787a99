"""--check-config for admins: the runtime pieces, what to fix, and --json."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from support.env import GROUP, LAUNCHER_PYTHON, SUPERVISOR, launcher_python_runs_as

import pytest


def lines(result) -> dict:
    return {line[5:13].strip(): line for line in result.stdout.splitlines()}


def test_runtime_pieces_are_reported(launcher):
    result = launcher.run("--check-config")
    assert result.returncode == 0, result.stdout
    found = lines(result)
    for name in ("runc", "docker", "profiler", "run-root", "loop", "squashfs", "overlay", "nsenter",
                 "syslog"):
        assert name in found, name
    assert found["runc"].startswith("ok")
    assert found["profiler"].startswith("WARN")  # not configured
    assert found["nsenter"].startswith("ok   nsenter  profilers start in the worker's "
                                       "container with runc exec")


def test_missing_optional_runtime_is_a_warning(launcher):
    launcher.write_config({"docker.binary": "/nonexistent/docker"})
    result = launcher.run("--check-config")
    assert result.returncode == 0
    assert "WARN docker   /nonexistent/docker (docker.binary): No such file or directory" in result.stdout


@pytest.mark.parametrize("piece", ["profiler", "runc", "run-root"])
def test_unsafe_runtime_piece_fails_with_the_fix(launcher, piece, tmp_path):
    unsafe = launcher.prefix / f"unsafe-{piece}"
    if piece == "run-root":
        unsafe.mkdir(mode=0o777)
        os.chmod(unsafe, 0o777)
        key = "worker.launcher.oci.run-root"
    else:
        unsafe.write_text("#!/bin/sh\n")
        os.chmod(unsafe, 0o777)
        key = "worker.profiler.script.path" if piece == "profiler" else "worker.launcher.oci.runc"
    launcher.write_config({key: str(unsafe)})
    result = launcher.run("--check-config")
    assert result.returncode == 24, result.stdout
    line = lines(result)[piece]
    assert line.startswith("FAIL") and str(unsafe) in line


def test_json_form(launcher):
    result = launcher.run("--check-config", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["exit"] == 0
    names = [check["name"] for check in report["checks"]]
    assert {"code", "config", "binary", "policy", "runc", "syslog"} <= set(names)
    assert report["summary"]["checks"] == len(report["checks"])
    launcher.write_config({"storm.worker-launcher.group": "no-such-group"})
    failing = launcher.run("--check-config", "--json")
    assert failing.returncode == 24
    assert json.loads(failing.stdout)["ok"] is False


def test_unknown_option_exits_1(launcher):
    result = launcher.run("--check-config", "--yaml")
    assert result.returncode == 1


def test_ignored_setuid_bit_fails(launcher):
    # no_new_privs makes the kernel ignore the setuid bit: the launcher runs as the caller
    result = subprocess.run(["setpriv", f"--reuid={SUPERVISOR}", f"--regid={GROUP}",
                             "--init-groups", "--no-new-privs", "--", str(launcher.binary),
                             "--check-config"], capture_output=True, text=True, cwd="/",
                            env={"PATH": "/usr/bin:/bin"})
    if not launcher_python_runs_as(SUPERVISOR):  # the stub says so
        assert result.returncode == 20, result.stderr
        assert f"cannot execute {LAUNCHER_PYTHON}: Permission denied" in result.stderr
    else:
        assert result.returncode == 22, result.stdout
        assert "FAIL setuid   not running with root privileges" in result.stdout
    assert "ok   setuid   running with root privileges" in launcher.run("--check-config").stdout


# --- options, keys, unusable verbs, candidates, --version -------------------------------
STORM_YAML = """\
storm.zookeeper.servers: ["zk1", "zk2"]
nimbus.seeds: ["nimbus1"]
storm.home: {home}
storm.local.dir: {local}
storm.log.dir: {logs}
storm.local.hostname: node1
supervisor.slots.ports: [6700, 6701]
supervisor.run.worker.as.user: true
supervisor.worker.launcher: /usr/bin/worker-launcher
worker.childopts: "-Xmx768m"
worker.heap.memory.mb: 768
worker.profiler.enabled: true
worker.profiler.command: flight.bash
topology.oci.image: busybox
storm.resource.isolation.plugin: org.apache.storm.container.oci.RuncLibContainerManager
storm.resource.isolation.plugin.enable: true
storm.cgroup.hierarchy.dir: /sys/fs/cgroup
storm.oci.cgroup.root: /sys/fs/cgroup
storm.oci.cgroup.parent: /storm
storm.oci.nscd.dir: /var/run/nscd
storm.oci.allowed.images: ["busybox"]
storm.oci.image.hdfs.toplevel.dir: /containers
storm.oci.image.tag.to.manifest.plugin: org.apache.storm.container.oci.LocalOrHdfsImageTagToManifestPlugin
storm.oci.manifest.to.resources.plugin: org.apache.storm.container.oci.HdfsManifestToResourcesPlugin
storm.oci.resources.localizer: org.apache.storm.container.oci.HdfsOciResourcesLocalizer
storm.oci.layer.mounts.to.keep: 100
storm.oci.local.or.hdfs.image.tag.to.manifest.plugin.hdfs.hash.file: /containers/image-tag-to-hash
ui.port: 8080
"""


def write_policy(launcher, text: str, name: str = "admin-policy.yaml"):
    path = launcher.conf.parent / name
    path.write_text(text)
    os.chown(path, 0, 0)
    os.chmod(path, 0o644)
    launcher.write_config({"worker.launcher.policy": str(path)})
    return path


@pytest.fixture
def storm_dirs(launcher, tmp_path):
    dirs = {name: tmp_path / name for name in ("home", "local", "logs")}
    for path in dirs.values():
        path.mkdir(mode=0o755)
    yield dirs
    (launcher.conf.parent / "admin-policy.yaml").unlink(missing_ok=True)


def test_options_in_any_order(launcher):
    first = launcher.run("--check-config", "--json")
    second = launcher.run("--json", "--check-config")
    assert first.returncode == second.returncode == 0, second.stderr
    assert json.loads(first.stdout)["summary"] == json.loads(second.stdout)["summary"]
    for argv, fragment in ((["--json"], "expected one of --check-config"),
                           (["--check-config", "--list-state"], "cannot be combined"),
                           (["--version", "extra"], "takes no operands"),
                           (["--check-config", "a", "b", "c"], "at most a config and a policy")):
        result = launcher.run(*argv)
        assert result.returncode == 1, argv
        assert fragment in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_unknown_config_key_fails_with_a_suggestion(launcher):
    launcher.write_config({"min.user.ids": "500", "storm.local.dir": "/var/storm"})
    result = launcher.run("--check-config")
    assert result.returncode == 24, result.stdout
    assert (f"FAIL config   unknown key min.user.ids in {launcher.conf} is ignored; did you "
            f"mean min.user.id?") in result.stdout
    assert (f"FAIL config   storm.local.dir in {launcher.conf} is a policy key") in result.stdout
    assert result.stderr.startswith("worker-launcher: 2 of ") and result.stderr.count("\n") == 1


def test_storm_yaml_copy_passes_silently(launcher, storm_dirs):
    write_policy(launcher, STORM_YAML.format(**storm_dirs))
    result = launcher.run("--check-config")
    assert result.returncode == 0, result.stdout + result.stderr
    policy_lines = [line for line in result.stdout.splitlines() if line[5:13].strip() == "policy"]
    assert len(policy_lines) == 1 and policy_lines[0].startswith("ok"), policy_lines


@pytest.mark.parametrize("key, expected", [
    ("storm.local.dirs", "unknown key storm.local.dirs in {p} is ignored; did you mean "
                         "storm.local.dir?"),
    ("storm.oci.readonly.bindmount", "unknown key storm.oci.readonly.bindmount in {p}: neither "
                                     "the launcher nor Storm reads it; did you mean "
                                     "storm.oci.readonly.bindmounts?"),
    ("storm.oci.frobnicate", "unknown key storm.oci.frobnicate in {p}: neither the launcher nor "
                             "Storm reads it"),
    ("worker.launcher.oci.runc", "worker.launcher.oci.runc in {p} is a worker-launcher.cfg key: "
                                 "the policy ignores it"),
])
def test_policy_typo_fails(launcher, storm_dirs, key, expected):
    path = write_policy(launcher, STORM_YAML.format(**storm_dirs) + f"{key}: /x\n")
    result = launcher.run("--check-config")
    assert result.returncode == 24, result.stdout
    assert f"FAIL policy   {expected.format(p=path)}" in result.stdout


def test_policy_that_disables_verbs_fails_naming_them(launcher, storm):
    # storm.local.dir misspelt, no storm.home: code-dir and artifacts-dir have nothing to act on
    path = write_policy(launcher, f"storm.local.dirs: {storm.local}\n")
    result = launcher.run("--check-config")
    assert result.returncode == 24
    assert (f"FAIL policy   {path} sets no storm.local.dir: code-dir, blob, rmr, worker, "
            f"launch-docker-container and run-oci-container refuse every path") in result.stdout
    assert (f"FAIL policy   {path} sets none of storm.workers.artifacts.dir, storm.log.dir and "
            f"storm.home: artifacts-dir refuses") in result.stdout
    # and so they do
    workdir = storm.workdir()
    for verb in ("code-dir", "artifacts-dir"):
        refused = launcher.run("wlalice", verb, workdir)
        assert refused.returncode == 5, (verb, refused.stderr)
        assert "is not below a storm directory" in refused.stderr
    path.unlink()


def test_candidate_config_and_policy(launcher, storm_dirs, tmp_path):
    """--check-config FILE [POLICY]: checked without being installed, read as the caller."""
    installed_before = launcher.conf.read_bytes()
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    os.chown(drafts, 1901, 0)  # the supervisor's own files, not root-owned
    candidate = drafts / "worker-launcher.cfg"
    text = "".join(f"{k}={v}\n" for k, v in launcher.base_config.items())
    candidate.write_text(text + "banned.user=bin\n")
    policy = drafts / "storm.yaml"
    policy.write_text(STORM_YAML.format(**storm_dirs) + "storm.local.dirs: /x\n")
    for path in (candidate, policy):
        os.chown(path, 1901, 0)
    result = launcher.run("--check-config", candidate)
    assert result.returncode == 24, result.stdout
    assert f"ok   config   {candidate} parses (a candidate" in result.stdout
    assert f"unknown key banned.user in {candidate} is ignored; did you mean banned.users?" \
        in result.stdout
    candidate.write_text(text)
    assert launcher.run("--check-config", candidate).returncode == 0
    result = launcher.run("--json", "--check-config", candidate, policy)
    assert result.returncode == 24
    details = [c["detail"] for c in json.loads(result.stdout)["checks"] if c["status"] == "FAIL"]
    assert details == [f"unknown key storm.local.dirs in {policy} is ignored; did you mean "
                       f"storm.local.dir?"]
    assert launcher.conf.read_bytes() == installed_before
    # read with the caller's rights: root's private file is not the supervisor's to check
    os.chown(candidate, 0, 0)
    os.chmod(candidate, 0o600)
    result = launcher.run("--check-config", candidate)
    assert result.returncode == 24
    assert f"FAIL config   cannot open {candidate}" in result.stdout
    assert "Permission denied" in result.stdout
    as_root = subprocess.run([str(launcher.binary), "--check-config", str(candidate)],
                             capture_output=True, text=True)
    assert as_root.returncode == 0, as_root.stdout


def test_version_names_the_compiled_in_paths(launcher):
    result = launcher.run("--version")
    assert result.returncode == 0, result.stderr
    python_version = subprocess.run([LAUNCHER_PYTHON, "-I", "-c",
                                     "import sys; print(sys.version.split()[0])"],
                                    capture_output=True, text=True, check=True).stdout.strip()
    assert result.stdout.splitlines() == [
        f"worker-launcher {__import__('worker_launcher').__version__}",
        f"config:      {launcher.conf}",
        f"interpreter: {LAUNCHER_PYTHON}",
        f"python:      {python_version}",
        f"entry:       {launcher.prefix}/lib/worker-launcher/entry.py",
        f"binary:      {launcher.binary}",
    ]
    facts = json.loads(launcher.run("--json", "--version").stdout)
    assert facts["interpreter"] == LAUNCHER_PYTHON and facts["config"] == str(launcher.conf)


def test_candidate_names_paths_only_the_caller_may_look_at(launcher, tmp_path):
    """What a candidate config names is looked at with the caller's rights: the supervisor
    learns nothing of root's private files by naming them."""
    private = Path(tempfile.mkdtemp(prefix="private-", dir=launcher.prefix))  # root's, 0700
    (private / "profiler.sh").write_text("#!/bin/sh\n")
    (private / "policy.yaml").write_text("storm.local.dir: /var/storm\n"
                                         "storm.workers.artifacts.dir: /var/log/storm/wa\n")
    os.chmod(private / "profiler.sh", 0o755)
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    candidate = drafts / "worker-launcher.cfg"
    candidate.write_text("".join(f"{k}={v}\n" for k, v in launcher.base_config.items()) +
                         f"worker.profiler.script.path={private}/profiler.sh\n"
                         f"worker.launcher.policy={private}/policy.yaml\n")
    os.chown(candidate, 1901, 0)
    result = launcher.run("--check-config", candidate)
    assert result.returncode == 24
    found = lines(result)
    assert "Permission denied" in found["policy"] and found["policy"].startswith("FAIL")
    assert "Permission denied" in found["profiler"]
    as_root = subprocess.run([str(launcher.binary), "--check-config", str(candidate)],
                             capture_output=True, text=True)
    assert as_root.returncode == 0, as_root.stdout
    assert f"ok   policy   {private}/policy.yaml is root-owned and valid" in as_root.stdout
    assert f"ok   profiler {private}/profiler.sh is root-owned" in as_root.stdout
    os.chmod(private / "policy.yaml", 0o666)  # named by the candidate: must be safe to install
    as_root = subprocess.run([str(launcher.binary), "--check-config", str(candidate)],
                             capture_output=True, text=True)
    assert as_root.returncode == 24
    assert f"FAIL policy   policy file {private}/policy.yaml is not safe" in as_root.stdout
    shutil.rmtree(private)
