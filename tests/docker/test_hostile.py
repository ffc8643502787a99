"""Attacks on docker-run through the installed binary with a real dockerd: a command file
swapped between check and use, bind sources and the seccomp profile swapped after the
launcher checked them (deterministically, from inside a docker wrapper, and raced by the user
and the supervisor), magic links where host paths go, links planted where the cid file goes.
(The profile verbs' attacks are in test_profile.py.)"""

import json
import os
import pwd
import subprocess
import sys
import time


from support.docker import ps_line, staged_mounts
from support.dockerd import docker
from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.hostile import assert_refused
ROUNDS = int(os.environ.get("WL_RACE_ROUNDS", "25"))
LAUNCH_ROUNDS = int(os.environ.get("WL_DOCKER_RACE_ROUNDS", "8"))
EXCHANGER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.chdir(sys.argv[1])
pairs = [(a.encode(), b.encode()) for a, b in zip(sys.argv[2::2], sys.argv[3::2])]
while True:
    for a, b in pairs:
        libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE
"""


def _same_object(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _victims(dstorm) -> tuple:
    """A directory and a file the user cannot reach on the host (their parent is root's
    0700), though they themselves are world-readable: what a wrong bind would hand over."""
    hidden = dstorm.base / "hidden"
    hidden.mkdir(mode=0o700)
    victim_dir = hidden / "dir"
    victim_dir.mkdir(mode=0o755)
    (victim_dir / "secret").write_text("root's\n")
    victim_file = hidden / "file"
    victim_file.write_text("root's\n")
    os.chmod(victim_file, 0o644)
    return victim_dir, victim_file


def _docker_wrapper(dstorm, script: str) -> None:
    """docker.binary = a root-owned wrapper that runs `script` (sh) before `docker create`."""
    wrapper = dstorm.launcher.prefix / "bin" / "docker-wrapper"
    real = dstorm.launcher.base_config["docker.binary"]
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = create ]; then\n{script}\nfi\n'
                       f'exec {real} "$@"\n')
    os.chmod(wrapper, 0o755)
    dstorm.launcher.write_config({"worker.launcher.policy": str(dstorm.policy),
                                  "worker.profiler.script.path": str(dstorm.profiler),
                                  "docker.binary": str(wrapper)})


def test_bind_sources_and_profile_swapped_between_the_check_and_docker(dstorm):
    """After the launcher checked and pinned them, and before docker creates the container,
    <workdir>/tmp (the user's) and workers-users/<id> (the supervisor's) become symlinks to
    hidden host objects, and the seccomp profile's content becomes allow-all. The container
    gets the checked objects and the checked profile."""
    victim_dir, victim_file = _victims(dstorm)
    wid, workdir = dstorm.worker()
    users_file = dstorm.local / "workers-users" / wid
    _docker_wrapper(dstorm, f"""
mv {workdir}/tmp {workdir}/tmp.moved && ln -s {victim_dir} {workdir}/tmp
mv {users_file} {users_file}.moved && ln -s {victim_file} {users_file}
echo '{{"defaultAction": "SCMP_ACT_ALLOW"}}' > {dstorm.seccomp}""")
    real_tmp = os.stat(workdir / "tmp")
    real_users_file = os.stat(users_file)
    result = dstorm.storm_call(USER, wid, "docker-run")
    assert result.returncode == 0, result.stderr
    assert os.path.islink(workdir / "tmp") and os.path.islink(users_file)  # the swap happened
    probe = dstorm.wait_for(workdir / "tmp.moved" / ".." / "probe.out")
    assert "mkdir denied" in probe
    pid = dstorm.pid_of(wid)
    assert _same_object(os.stat(f"/proc/{pid}/root/tmp"), real_tmp)
    assert _same_object(os.stat(f"/proc/{pid}/root{users_file}"), real_users_file)
    assert not os.path.exists(f"/proc/{pid}/root/tmp/secret")


def _race_launches(dstorm, racers: list, prepare) -> dict:
    outcomes = {}
    for _ in range(LAUNCH_ROUNDS):
        wid, workdir = dstorm.worker()
        expected = prepare(wid, workdir)
        processes = [subprocess.Popen([sys.executable, "-I", "-c", EXCHANGER, *args],
                                      user=uid_of(who), group=gid_of_group() if who == SUPERVISOR
                                      else uid_of(who), extra_groups=[],
                                      stderr=subprocess.DEVNULL)
                     for who, args in racers(wid, workdir)]
        try:
            time.sleep(0.05)
            result = dstorm.storm_call(USER, wid, "docker-run")
        finally:
            for process in processes:
                process.kill()
                process.wait()
        outcomes[result.returncode] = outcomes.get(result.returncode, 0) + 1
        if result.returncode == 0:
            pid = dstorm.pid_of(wid)
            for inside, stat_result in expected.items():
                assert _same_object(os.stat(f"/proc/{pid}/root{inside}"), stat_result), inside
        else:
            assert_refused(result)
            assert not dstorm.exists(wid)
        docker("rm", "-f", wid, check=False)
        assert staged_mounts(dstorm.launcher.run_root) == []
    return outcomes


def test_workdir_tmp_raced_by_the_user(dstorm):
    """The user exchanges its <workdir>/tmp with a symlink to a hidden directory, as fast as
    it can, while Storm launches: every container that starts has the real tmp at /tmp."""
    victim_dir, _ = _victims(dstorm)

    def prepare(wid, workdir):
        uid = uid_of(USER)
        for path in (workdir, workdir / "tmp"):
            os.chown(path, uid, gid_of_group())  # as an earlier launch left them
        (workdir / "tmp-link").symlink_to(victim_dir)
        os.lchown(workdir / "tmp-link", uid, uid)
        return {"/tmp": os.stat(workdir / "tmp")}

    outcomes = _race_launches(dstorm, lambda wid, workdir: [
        (USER, [str(workdir), "tmp", "tmp-link"])], prepare)
    print("outcomes", outcomes)
    assert sum(outcomes.values()) == LAUNCH_ROUNDS


def test_workers_users_file_raced_by_the_supervisor(dstorm):
    """The supervisor exchanges workers-users/<id> with a symlink to a hidden file while it
    launches: every container that starts has the real file."""
    _, victim_file = _victims(dstorm)
    users = dstorm.local / "workers-users"

    def prepare(wid, workdir):
        (users / f"{wid}.link").symlink_to(victim_file)
        os.lchown(users / f"{wid}.link", uid_of(SUPERVISOR), gid_of_group())
        return {f"{users}/{wid}": os.stat(users / wid)}

    outcomes = _race_launches(dstorm, lambda wid, workdir: [
        (SUPERVISOR, [str(users), wid, f"{wid}.link"])], prepare)
    print("outcomes", outcomes)
    assert sum(outcomes.values()) == LAUNCH_ROUNDS


def test_magic_links_for_the_workdir_and_the_command_file(dstorm):
    """/proc/<pid>/cwd, /proc/self/fd/N and /proc/<pid>/root where the workdir, the command
    file or the worker's directory itself goes: refused before docker runs."""
    wid, workdir = dstorm.worker()
    holder = subprocess.Popen(["sleep", "60"], cwd=str(workdir))
    try:
        command = dstorm.write_file(workdir / "docker-ps.sh", ps_line(wid))
        for first, second, codes in (
                (f"/proc/{holder.pid}/cwd", command, {5}),
                ("/proc/self/fd/0", command, {5}),
                (f"/proc/{holder.pid}/root{workdir}", command, {5}),
                (workdir, f"/proc/{holder.pid}/cwd/docker-ps.sh", {30}),
                (workdir, f"/proc/{holder.pid}/root{command}", {30}),
                (workdir, "/proc/self/fd/0", {30})):
            result = dstorm.launcher.run(USER, "run-docker-cmd", first, second)
            assert_refused(result, codes)
            assert "/proc" in result.stderr
        # The worker's directory itself a symlink (the supervisor's) to a magic link.
        other = dstorm.local / "workers" / "7c3c1f2e-2d0c-4a61-9d4b-8c5f7a1e2b3c"
        other.symlink_to(f"/proc/{holder.pid}/cwd")
        os.lchown(other, uid_of(SUPERVISOR), gid_of_group())
        result = dstorm.launcher.run(USER, "run-docker-cmd", other, command)
        assert_refused(result, {5, 21})
    finally:
        holder.kill()
        holder.wait()


def test_command_file_swapped_for_a_root_only_privileged_line(dstorm):
    """The supervisor races its command file between Storm's `ps` line and a symlink to a
    root-only file holding a `--privileged` run: only ever `ps` runs, or a refusal."""
    wid, workdir = dstorm.worker()
    evil_tokens = dstorm.run_tokens(wid, workdir)
    evil_tokens.insert(1, "--privileged")
    evil = dstorm.base / "evil.cmd"
    evil.write_text(" ".join(evil_tokens))
    os.chmod(evil, 0o600)  # root's: the supervisor may not read it
    benign = dstorm.command_file(ps_line(wid), "benign.cmd")
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


def test_worker_directory_swapped_for_a_symlink_to_roots_directory(dstorm):
    """While Storm launches, the supervisor exchanges workers/<id> with a symlink to root's
    directory: nothing is ever written there (the cid file goes with the user's rights
    through descriptors), and whatever starts has the real workdir."""
    wid, workdir = dstorm.worker()
    root_dir = dstorm.base / "root-dir"
    root_dir.mkdir(mode=0o777)  # writable even: only a write through the link could land
    link = dstorm.local / "workers" / f"{wid}.link"
    link.symlink_to(root_dir)
    os.lchown(link, uid_of(SUPERVISOR), gid_of_group())
    real = os.stat(workdir)
    command = dstorm.write_file(dstorm.commands / "docker-run.sh", dstorm.storm_run_line(wid))
    entry = pwd.getpwnam(SUPERVISOR)
    racer = subprocess.Popen([sys.executable, "-I", "-c", EXCHANGER,
                              str(dstorm.local / "workers"), wid, f"{wid}.link"],
                             user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
                             stderr=subprocess.DEVNULL)
    try:
        results = [dstorm.launcher.run(USER, "launch-docker-container", workdir, command)
                   for _ in range(3)]
    finally:
        racer.kill()
        racer.wait()
    if os.path.islink(workdir):
        os.rename(link, f"{link}.tmp")
        os.rename(workdir, link)
        os.rename(f"{link}.tmp", workdir)
    assert list(root_dir.iterdir()) == []
    for result in results:
        assert result.returncode in (0, 5, 12, 20, 21, 29, 39), result.stderr
    if dstorm.exists(wid) and dstorm.state(wid)[1] == "running":
        pid = dstorm.pid_of(wid)
        assert _same_object(os.stat(f"/proc/{pid}/root{workdir}"), real)
    assert staged_mounts(dstorm.launcher.run_root) == []


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
