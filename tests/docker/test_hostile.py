"""Attacks on docker-run through the installed binary with a real dockerd: a command file
swapped between check and use, links planted where docker's cid file goes. (The profile
verbs' attacks are in test_profile.py.)"""

import json
import os
import pwd
import subprocess
import sys

from support.dockerd import docker
from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.hostile import assert_refused
ROUNDS = int(os.environ.get("WL_RACE_ROUNDS", "25"))


def test_command_file_swapped_for_a_root_only_privileged_line(dstorm):
    """The supervisor races its command file between a harmless `ps` line and a symlink to
    a root-only file holding a `--privileged` run: only ever `ps` runs, or a refusal."""
    wid, workdir = dstorm.worker()
    evil_tokens = dstorm.run_tokens(wid, workdir)
    evil_tokens.insert(1, "--privileged")
    evil = dstorm.base / "evil.cmd"
    evil.write_text(" ".join(evil_tokens))
    os.chmod(evil, 0o600)  # root's: the supervisor may not read it
    benign = dstorm.command_file("ps --quiet=true", "benign.cmd")
    entry = pwd.getpwnam(SUPERVISOR)
    racer = subprocess.Popen([sys.executable, "-I", "-c", f"""
import os
os.chdir({str(dstorm.commands)!r})
while True:
    try:
        os.symlink({str(evil)!r}, "l"); os.rename("l", "cmd")
        os.link("benign.cmd", "b"); os.rename("b", "cmd")
    except OSError:
        pass
"""], user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], stderr=subprocess.DEVNULL)
    try:
        for _ in range(ROUNDS):
            result = dstorm.launcher.run(USER, "run-docker-cmd", workdir, dstorm.commands / "cmd")
            assert result.returncode in (0, 30), result.stderr
            if result.returncode:
                assert_refused(result, {30})
    finally:
        racer.kill()
        racer.wait()
    assert benign.exists() and not dstorm.exists(wid)


def test_hard_link_at_the_cid_file_to_roots_file(dstorm):
    """As with fs.protected_hardlinks=0: container.cid is a link to root's file. The
    workdir set-up refuses it before docker runs; root's file is untouched."""
    wid, workdir = dstorm.worker()
    victim = dstorm.base / "victim"
    victim.write_text("root's\n")
    os.chmod(victim, 0o644)
    os.link(victim, workdir / "container.cid")
    result = dstorm.run(USER, "launch-docker-container", workdir, dstorm.run_tokens(wid, workdir))
    assert_refused(result, {20})
    assert victim.read_text() == "root's\n" and victim.stat().st_uid == 0
    assert not dstorm.exists(wid)


def test_cid_file_directory_swapped_for_a_symlink(dstorm):
    """After docker ran, the user swaps the directory of the cid file for a symlink to
    root's directory: the id is written with the user's rights, so never there."""
    wid, workdir = dstorm.worker()
    tokens = dstorm.run_tokens(wid, workdir)
    sub = workdir / "sub"
    sub.mkdir()
    os.chown(sub, uid_of(USER), uid_of(USER))
    tokens = [f"--cidfile={sub}/container.cid" if t.startswith("--cidfile=") else t for t in tokens]
    root_dir = dstorm.base / "root-dir"
    root_dir.mkdir(mode=0o755)
    entry = pwd.getpwnam(USER)
    racer = subprocess.Popen([sys.executable, "-I", "-c", f"""
import ctypes, os
libc = ctypes.CDLL(None)
os.chdir({str(workdir)!r})
try:
    os.symlink({str(root_dir)!r}, "link")
except OSError:
    pass
while True:
    libc.renameat2(-100, b"sub", -100, b"link", 2)
"""], user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], stderr=subprocess.DEVNULL)
    try:
        result = dstorm.run(USER, "launch-docker-container", workdir, tokens)
    finally:
        racer.kill()
        racer.wait()
    assert result.returncode in (0, 20, 29), result.stderr
    assert list(root_dir.iterdir()) == []


def test_hostile_docker_lines_start_nothing(dstorm):
    wid, workdir = dstorm.worker()
    base = dstorm.run_tokens(wid, workdir)
    image = base.index(dstorm.image)
    lines = [
        base[:1] + ["--privileged"] + base[1:], base[:1] + ["--pid=host"] + base[1:],
        base[:1] + ["-v", "/:/host"] + base[1:], base[:1] + ["--user=0:0"] + base[2:],
        base[:image] + [dstorm.image, "sh", "-c", "id"],
        base[:1] + ["--security-opt", "seccomp=unconfined"] + base[1:],
        base[:1] + ["--cap-add=SYS_ADMIN"] + base[1:], ["--config=/tmp"] + base,
        base[:1] + ["-v", f"{workdir}/../../..:/x"] + base[1:],
        base[:1] + ["--group-add", str(gid_of_group())] + base[1:],
        base[:1] + ["-e", "LD_PRELOAD=/x"] + base[1:],
        [t.replace(dstorm.image, "--privileged") for t in base],
        " ".join(base).replace(" ", "  ").split(" "), ["run;id"], ["$(id)"],
    ]
    for tokens in lines:
        result = dstorm.run(USER, "launch-docker-container", workdir, tokens)
        assert_refused(result, {39, 40, 41})
    assert not dstorm.exists(wid)
    assert json.loads(docker("ps", "-a", "--format", "{{json .Names}}", "--filter",
                             f"name={wid}").stdout or "null") is None
