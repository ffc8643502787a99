"""worker and profiler, run for real as the supervisor account."""

import os
import pwd
import stat
import textwrap

import pytest

from support.env import SUPERVISOR
from support.env import USER, gid_of_group, uid_of
from support.storm import snapshot

PROBE = textwrap.dedent("""\
    #!/bin/bash
    # What the worker sees, for the test to check.
    {
      echo "uid $(id -u) $(id -ru)"
      echo "gids $(id -G)"
      echo "umask $(umask)"
      echo "cwd $(pwd -P)"
      echo "sid $(cut -d' ' -f6 /proc/$$/stat) pid $$"
      echo "arg0 $0"
    } > probe.out
    /usr/bin/python3 -I - > regain.out 2>&1 <<'PY'
    import os
    def _open(fd):
        try:
            os.fstat(fd)
            return True
        except OSError:
            return False
    lines = open("/proc/self/status").read().splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    for key in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapAmb"):
        print(key, " ".join(status[key].split()))
    for name, call in (("setuid", lambda: os.setuid(0)),
                       ("setresuid", lambda: os.setresuid(0, 0, 0)),
                       ("setgid", lambda: os.setgid(0)),
                       ("setgroups", lambda: os.setgroups([0]))):
        try:
            call()
            print(name, "REGAINED")
        except PermissionError:
            print(name, "denied")
    print("fds", " ".join(str(fd) for fd in range(3, 4096) if _open(fd)) or "none")
    PY
    exit 0
    """)


def _script(storm, text=PROBE):
    """The supervisor's script, as Storm writes it: the supervisor's own file."""
    path = storm.base / "storm-worker-script.sh"
    path.write_text(text)
    os.chown(path, uid_of(SUPERVISOR), gid_of_group())
    os.chmod(path, 0o640)
    return path


def _lines(path):
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_worker_runs_the_script_as_the_user(launcher, storm):
    workdir = storm.workdir()
    script = _script(storm)
    result = launcher.run(USER, "worker", workdir, script)
    assert result.returncode == 0, result.stderr
    probe = _lines(workdir / "probe.out")
    uid = uid_of(USER)
    assert probe["uid"] == f"{uid} {uid}"
    gids = sorted(os.getgrouplist(USER, uid))
    assert sorted(map(int, probe["gids"].split())) == gids and gid_of_group() not in gids
    assert probe["umask"] == "0027"
    assert probe["cwd"] == str(workdir)
    sid, _, pid = probe["sid"].split()
    assert sid == pid  # setsid: the script leads its own session
    assert probe["arg0"] == f"{workdir}/launch_container.sh"
    launch_file = workdir / "launch_container.sh"
    st = launch_file.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == uid and launch_file.read_text() == PROBE


def test_worker_cannot_regain_root(launcher, storm):
    workdir = storm.workdir()
    assert launcher.run(USER, "worker", workdir, _script(storm)).returncode == 0
    regain = _lines(workdir / "regain.out")
    uid, gid = uid_of(USER), pwd.getpwnam(USER).pw_gid
    assert regain["Uid"] == " ".join([str(uid)] * 4)  # real, effective, saved, fs
    assert regain["Gid"] == " ".join([str(gid)] * 4)
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(regain[caps], 16) == 0, caps
    for call in ("setuid", "setresuid", "setgid", "setgroups"):
        assert regain[call] == "denied", call
    assert regain["fds"] == "none"  # no descriptor of the launcher leaked into the worker


def test_worker_sets_up_workdir_and_tmp(launcher, storm):
    workdir = storm.workdir()
    (workdir / "logs").mkdir(mode=0o755)
    (workdir / "tmp" / "hsperfdata").mkdir(parents=True, mode=0o755)
    (workdir / "tmp" / "f").write_text("x")
    for path in snapshot(workdir):
        os.lchown(path, uid_of(SUPERVISOR), gid_of_group())
    assert launcher.run(USER, "worker", workdir, _script(storm)).returncode == 0
    uid, gid = uid_of(USER), gid_of_group()
    modes = {p.relative_to(workdir).as_posix(): (s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode))
             for p, s in snapshot(workdir).items()}
    assert modes["."] == (uid, gid, 0o2770)
    assert modes["logs"] == (uid, gid, 0o2770)
    assert modes["tmp"] == (uid, gid, 0o770)  # no setgid under tmp
    assert modes["tmp/hsperfdata"] == (uid, gid, 0o770)
    assert modes["tmp/f"] == (uid, gid, 0o660)


def test_worker_creates_missing_tmp(launcher, storm):
    workdir = storm.workdir()
    assert launcher.run(USER, "worker", workdir, _script(storm)).returncode == 0
    st = (workdir / "tmp").lstat()
    assert stat.S_ISDIR(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid_of(USER), gid_of_group(), 0o770)


def test_tmp_planted_as_symlink_is_refused(launcher, storm):
    workdir = storm.workdir()
    os.symlink(storm.victim, workdir / "tmp")
    victim = storm.victim_state()
    result = launcher.run(USER, "worker", workdir, _script(storm))
    assert result.returncode == 21 and "tmp is not a directory" in result.stderr
    assert storm.victim_state() == victim
    assert not (workdir / "probe.out").exists()


@pytest.mark.parametrize("planted", ["symlink", "dangling", "file"])
def test_launch_container_sh_cannot_be_planted(launcher, storm, planted):
    workdir = storm.workdir()
    launch_file = workdir / "launch_container.sh"
    if planted == "symlink":
        os.symlink(storm.victim / "secret", launch_file)
    elif planted == "dangling":
        os.symlink(storm.victim / "new-file", launch_file)
    else:
        launch_file.write_text("#!/bin/sh\necho planted > planted.out\n")
        os.chown(launch_file, uid_of(SUPERVISOR), gid_of_group())
    victim = storm.victim_state()
    result = launcher.run(USER, "worker", workdir, _script(storm))
    assert result.returncode == 0, result.stderr
    assert storm.victim_state() == victim
    assert not (storm.victim / "new-file").exists()
    assert not launch_file.is_symlink() and launch_file.read_text() == PROBE
    assert not (workdir / "planted.out").exists()


def test_profiler_does_not_touch_the_directories(launcher, storm):
    workdir = storm.workdir()
    assert launcher.run(USER, "worker", workdir, _script(storm)).returncode == 0
    (workdir / "probe.out").unlink()
    os.chmod(workdir / "tmp", 0o750)
    before = {p: (s.st_uid, s.st_mode) for p, s in snapshot(workdir / "tmp").items()}
    result = launcher.run(USER, "profiler", workdir, _script(storm))
    assert result.returncode == 0, result.stderr
    assert _lines(workdir / "probe.out")["uid"] == f"{uid_of(USER)} {uid_of(USER)}"
    assert {p: (s.st_uid, s.st_mode) for p, s in snapshot(workdir / "tmp").items()} == before


def test_script_is_read_with_the_supervisors_rights(launcher, storm):
    workdir = storm.workdir()
    script = _script(storm)
    os.chown(script, 0, 0)
    os.chmod(script, 0o600)
    result = launcher.run(USER, "worker", workdir, script)
    assert result.returncode == 30 and "Permission denied" in result.stderr
    assert not (workdir / "launch_container.sh").exists()


def test_script_symlink_is_refused(launcher, storm):
    workdir = storm.workdir()
    link = workdir.parent / "script-link"  # the supervisor's own link: never followed
    os.symlink(_script(storm), link)
    os.lchown(link, uid_of(SUPERVISOR), gid_of_group())
    result = launcher.run(USER, "profiler", workdir, link)
    assert result.returncode == 30
    assert not (workdir / "launch_container.sh").exists()


def test_unexecutable_script_exits_7(launcher, storm):
    workdir = storm.workdir()
    result = launcher.run(USER, "worker", workdir, _script(storm, "#!/nonexistent/interpreter\n"))
    assert result.returncode == 7, result.stderr
    assert "launch_container.sh" in result.stderr


def test_workdir_outside_storm_directories_is_refused(launcher, storm):
    victim = storm.victim_state()
    for verb in ("worker", "profiler"):
        result = launcher.run(USER, verb, storm.victim, _script(storm))
        assert result.returncode == 5, result.stderr
    assert storm.victim_state() == victim


def test_missing_workdir_exits_21(launcher, storm):
    for verb in ("worker", "profiler"):
        result = launcher.run(USER, verb, storm.local / "workers" / "nope", _script(storm))
        assert result.returncode == 21, result.stderr
