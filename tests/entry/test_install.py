"""The installed setuid entry and trusted core, run for real as the supervisor account."""

import os
import pwd
import re
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from support.env import GROUP, LAUNCHER_PYTHON, PYTHON, SUPERVISOR, require


def test_install_layout(launcher):
    st = launcher.binary.stat()
    assert stat.S_IMODE(st.st_mode) == 0o6550
    assert st.st_uid == 0 and st.st_gid == __import__("grp").getgrnam(GROUP).gr_gid
    for path in (launcher.prefix / "lib").rglob("*"):
        st = path.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, path


def test_no_native_file_has_an_rpath(launcher):
    require(shutil.which("readelf") is not None, "readelf is not installed")
    natives = [launcher.binary, *(launcher.prefix / "lib").rglob("*.so")]
    assert len(natives) == 4  # the stub, the privileged shim, umount2's, the openat2 shim
    for native in natives:
        dynamic = subprocess.run(["readelf", "-d", str(native)], capture_output=True, text=True,
                                 check=True).stdout
        assert "RPATH" not in dynamic and "RUNPATH" not in dynamic, native


@pytest.mark.parametrize("flag", ["--check-config", "--checksetup"])
def test_check_config_as_supervisor(launcher, flag):
    result = launcher.run(flag)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   binary" in result.stdout
    assert "WARN policy   no worker.launcher.policy is set" in result.stdout
    assert re.search(r"^ok   summary  0 of \d+ checks failed$", result.stdout, re.M)


def test_check_config_as_root(launcher):
    result = subprocess.run([str(launcher.binary), "--check-config"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_config_reports_failures(launcher):
    launcher.write_config({"storm.worker-launcher.group": "no-such-group"})
    result = launcher.run("--check-config")
    assert result.returncode == 24
    assert "FAIL group    launcher group no-such-group does not exist" in result.stdout


def test_help_lists_verbs(launcher):
    result = launcher.run("--help")
    assert result.returncode == 0
    assert "worker-launcher <user> <command> <args...>" in result.stdout


@pytest.mark.parametrize("args", [[], ["wlalice"]])
def test_too_few_arguments_print_usage_and_exit_1(launcher, args):
    result = launcher.run(*args)
    assert result.returncode == 1
    assert "Usage: worker-launcher" in result.stdout


def test_unknown_command_exits_3(launcher):
    result = launcher.run("wlalice", "format-disk", "/")
    assert result.returncode == 3
    assert result.stderr == "worker-launcher: invalid command 'format-disk'; see worker-launcher --help\n"


@pytest.mark.parametrize("user, fragment", [
    ("root", "superuser"),
    ("wllow", "below min.user.id 1000"),
    ("wlbanned", "banned.users"),
    ("nosuchuser", "does not exist"),
    ("../../etc", "invalid user name"),
    ("-rf", "invalid user name"),
])
def test_invalid_users_exit_2(launcher, user, fragment):
    result = launcher.run(user, "no-such-command")
    assert result.returncode == 2
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _config_failure(launcher):
    result = launcher.run("wlalice", "no-such-command")
    assert result.returncode == 24, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


def test_config_owned_by_another_user_exits_24(launcher):
    os.chown(launcher.conf, 1901, 0)
    assert "must be root-owned" in _config_failure(launcher)


def test_group_writable_config_exits_24(launcher):
    os.chmod(launcher.conf, 0o664)
    assert str(launcher.conf) in _config_failure(launcher)


def test_writable_config_parent_exits_24(launcher):
    etc = launcher.conf.parent
    os.chmod(etc, 0o775)
    try:
        assert f"{etc} is owned by uid 0 with mode 0775" in _config_failure(launcher)
    finally:
        os.chmod(etc, 0o755)


def test_missing_config_exits_24(launcher):
    launcher.conf.unlink()
    assert "cannot open config file" in _config_failure(launcher)


def test_config_symlink_to_user_file_exits_24(launcher, tmp_path):
    fake = tmp_path / "fake.cfg"
    fake.write_text("storm.worker-launcher.group=wltest\nmin.user.id=0\n")
    launcher.conf.unlink()
    launcher.conf.symlink_to(fake)
    assert "is not safe" in _config_failure(launcher)


@pytest.mark.parametrize("extra, fragment", [
    ({"storm.worker-launcher.group": None}, "storm.worker-launcher.group is not set"),
    ({"storm.worker-launcher.group": "no-such-group"}, "launcher group no-such-group named in"),
    ({"min.user.id": "ten"}, "min.user.id must be a whole number"),
])
def test_bad_config_values_exit_24(launcher, extra, fragment):
    launcher.write_config(extra)
    assert fragment in _config_failure(launcher)


def test_unreadable_policy_yaml_exits_24(launcher):
    policy = launcher.conf.parent / "policy.yaml"
    policy.write_text("storm.local.dir: [unclosed\n")
    os.chmod(policy, 0o644)
    launcher.write_config({"worker.launcher.policy": str(policy)})
    result = launcher.run("--check-config")
    assert result.returncode == 24
    assert f"invalid policy file {policy}: not valid YAML" in result.stdout


@pytest.mark.parametrize("mode, gid, fragment", [
    (0o6551, None, "others must have no permissions"),
    (0o0550, None, "must be setuid and setgid"),
    (0o6550, 0, "must be group-owned by the launcher group"),
])
def test_bad_binary_permissions_exit_22(launcher, mode, gid, fragment):
    original = launcher.binary.stat()
    try:
        if gid is not None:
            os.chown(launcher.binary, 0, gid)
        os.chmod(launcher.binary, mode)
        # the supervisor may no longer be able to execute it: root runs the same checks
        result = subprocess.run([str(launcher.binary), "wlalice", "x"], capture_output=True,
                                text=True)
        assert result.returncode == 22, result.stderr
        assert fragment in result.stderr
    finally:
        os.chown(launcher.binary, 0, original.st_gid)
        os.chmod(launcher.binary, 0o6550)


def test_user_outside_the_group_cannot_run_it(launcher):
    with pytest.raises(PermissionError):
        launcher.run("--check-config", user="wloutsider")


@pytest.mark.parametrize("target", ["worker_launcher/main.py", "worker_launcher"])
def test_group_writable_package_file_is_refused(launcher, target):
    path = launcher.prefix / "lib" / "worker-launcher" / target
    mode = stat.S_IMODE(path.stat().st_mode)
    os.chmod(path, mode | 0o020)
    try:
        result = launcher.run("--help")
        assert result.returncode == 22
        assert "refusing to run" in result.stderr and str(path) in result.stderr
    finally:
        os.chmod(path, mode)


@pytest.mark.parametrize("target", ["worker_launcher/classic/signals.py",
                                    "worker_launcher/classic/__pycache__",
                                    "worker_launcher/classic"])
def test_group_writable_module_imported_late_is_refused(launcher, target):
    # signal imports classic/signals.py only once its command is known, long after the
    # code-trust check remembered the package's directory chain as root-only: the module,
    # its compiled file's directory and its own directory are still checked when imported.
    path = launcher.prefix / "lib" / "worker-launcher" / target
    mode = stat.S_IMODE(path.stat().st_mode)
    victim = subprocess.Popen(["sleep", "60"], user="wlalice", start_new_session=True)
    os.chmod(path, mode | 0o020)
    try:
        result = launcher.run("wlalice", "signal", str(victim.pid), "15")
        assert result.returncode == 22, result.stderr
        assert "refusing to run" in result.stderr and target.split("/")[-1] in result.stderr
        assert victim.poll() is None  # not signalled
    finally:
        os.chmod(path, mode)
        victim.kill()
        victim.wait()
    result = launcher.run("wlalice", "signal", str(victim.pid), "0")
    assert result.returncode == 9, result.stderr  # gone: the same call runs once the mode is back


def test_argc_zero(launcher):
    # The kernel (5.18+) may turn an empty argv into [""]; either way: usage, exit 1.
    code = textwrap.dedent(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        argv = (ctypes.c_char_p * 1)(None)
        envp = (ctypes.c_char_p * 1)(None)
        libc.execve(b"{launcher.binary}", argv, envp)
        os._exit(99)
    """)
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, user=SUPERVISOR,
                            extra_groups=[GROUP], group=GROUP)
    assert result.returncode == 1
    assert "Usage: worker-launcher" in result.stdout


def test_closed_stdio_is_replaced(launcher, tmp_path):
    marker = tmp_path / "fd0-file"
    marker.touch()
    os.chmod(tmp_path, 0o777)
    os.chmod(marker, 0o666)
    code = textwrap.dedent(f"""
        import os
        for fd in (0, 1, 2):
            os.close(fd)
        fd = os.open("{marker}", os.O_WRONLY)   # becomes fd 0
        os.execv("{launcher.binary}", ["worker-launcher", "--help"])
    """)
    result = subprocess.run([PYTHON, "-c", code], user=SUPERVISOR, group=GROUP,
                            extra_groups=[GROUP], capture_output=True)
    assert result.returncode == 0
    assert marker.read_bytes() == b""


@pytest.fixture
def attacker_files(tmp_path):
    """A directory of attacker code; every piece creates `marker` if it ever runs."""
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "marker"
    payload = f"open({str(marker)!r}, 'a').write('ran\\n')\n"
    for name in ("sitecustomize.py", "usercustomize.py", "evilstartup.py", "evilwarn.py"):
        (evil / name).write_text(payload)
    shadow = evil / "shadow"  # modules that would shadow the stdlib if the path were used
    shadow.mkdir()
    for name in ("os.py", "grp.py", "enum.py", "encodings.py", "pwd.py"):
        (shadow / name).write_text(payload)
    (evil / "worker_launcher").mkdir()
    (evil / "worker_launcher" / "__init__.py").write_text(payload)
    for tool in ("python3", "cc", "runc", "docker", "sh"):
        script = evil / tool
        script.write_text(f"#!/bin/sh\necho ran >> {marker}\n")
        script.chmod(0o755)
    library = evil / "libevil.so"
    source = tmp_path / "evil.c"
    source.write_text('#include <stdio.h>\n__attribute__((constructor)) static void run(void) {'
                      f' FILE *f = fopen("{marker}", "a"); if (f) {{ fputs("ran\\n", f); fclose(f); }} }}\n')
    require(shutil.which("cc") is not None, "cc is not installed")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    for path in (tmp_path, evil, shadow):
        os.chmod(path, 0o777)
    return evil, library, marker


def test_sanity_attacker_payload_runs_when_loaded(attacker_files):
    evil, library, marker = attacker_files
    subprocess.run([PYTHON, "-c", "import evilstartup"], env={"PYTHONPATH": str(evil)}, check=True)
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": str(library)}, check=True)
    assert marker.read_text().count("ran") >= 2
    marker.unlink()


@pytest.mark.parametrize("variable", ["PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT",
                                      "PYTHONWARNINGS", "LD_PRELOAD", "LD_LIBRARY_PATH", "PATH",
                                      "PYTHONUSERBASE", "PYTHONSAFEPATH"])
def test_hostile_environment_runs_nothing(launcher, attacker_files, variable):
    evil, library, marker = attacker_files
    values = {
        "PYTHONPATH": f"{evil}:{evil / 'shadow'}", "PYTHONHOME": str(evil), "PYTHONSTARTUP": str(evil / "evilstartup.py"),
        "PYTHONINSPECT": "1", "PYTHONWARNINGS": "ignore::evilwarn.Warning",
        "LD_PRELOAD": str(library), "LD_LIBRARY_PATH": str(evil), "PATH": str(evil),
        "PYTHONUSERBASE": str(evil), "PYTHONSAFEPATH": "",
    }
    env = {"PATH": "/usr/bin:/bin", variable: values[variable]}
    for args in (["--check-config"], ["--help"], ["wlalice", "no-such-command"]):
        result = launcher.run(*args, env=env, stdin=subprocess.DEVNULL)
        assert "Traceback" not in result.stderr
        assert result.returncode in (0, 3), (variable, args, result.stderr)
    assert not marker.exists(), marker.read_text()


def test_hostile_cwd_and_umask(launcher, tmp_path):
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "worker_launcher").mkdir()  # would shadow the package if the cwd were searched
    # subprocess changes directory before dropping to the supervisor: the launcher starts in a
    # cwd it cannot read, with a umask that would make every file it creates unusable
    result = subprocess.run([str(launcher.binary), "--check-config"], capture_output=True,
                            text=True, user=SUPERVISOR, group=GROUP, extra_groups=[GROUP],
                            cwd=str(hidden), umask=0o777)
    assert result.returncode == 0, result.stdout + result.stderr


def test_loop_shim_attaches_mounts_and_releases(launcher, tmp_path):
    require(shutil.which("mksquashfs") is not None, "squashfs-tools is not installed")
    require(Path("/dev/loop-control").exists(), "no /dev/loop-control")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello.txt").write_text("from squashfs\n")
    image = tmp_path / "layer.sqsh"
    subprocess.run(["mksquashfs", str(tree), str(image), "-quiet", "-noappend"], check=True,
                   capture_output=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path[0:0] = [{str(launcher.prefix / 'lib' / 'worker-launcher')!r}]
        from worker_launcher.privileged import kernel
        backing = os.open({str(image)!r}, os.O_RDONLY | os.O_CLOEXEC)
        loop_fd, device = kernel.attach_loop_ro(backing, {str(image)!r})
        os.close(backing)
        print(device)
        print(kernel.loop_backing(loop_fd)[2] & (kernel.LO_FLAGS_READ_ONLY | kernel.LO_FLAGS_AUTOCLEAR))
        kernel.mount(device, {str(mountpoint)!r}, "squashfs",
                     kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV)
        os.close(loop_fd)
        print(open({str(mountpoint / 'hello.txt')!r}).read(), end="")
        with open("/proc/self/mountinfo") as mounts:
            print(any({str(mountpoint)!r} in line and "squashfs" in line for line in mounts))
        kernel.umount2({str(mountpoint)!r})
    """)
    # The launcher's interpreter (the shim is built for it), its own site-packages for cffi.
    result = subprocess.run([LAUNCHER_PYTHON, "-I", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    device, flags, content, mounted = result.stdout.splitlines()
    assert int(flags) == 5  # read-only | autoclear
    assert content == "from squashfs" and mounted == "True"
    name = os.path.basename(device)
    backing_file = Path(f"/sys/block/{name}/loop/backing_file")
    assert not backing_file.exists() or str(image) not in backing_file.read_text()
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(image) not in losetup


def test_policy_others_could_change_is_refused_when_a_verb_runs(launcher, storm):
    policy = launcher.conf.parent / "policy.yaml"  # the storm fixture's, named in the config
    top = storm.workdir("wid")
    os.chmod(policy, 0o664)
    try:
        result = launcher.run("wlalice", "code-dir", top)
        assert result.returncode == 24 and str(policy) in result.stderr, result.stderr
        assert top.stat().st_uid == pwd.getpwnam(SUPERVISOR).pw_uid  # nothing done
    finally:
        os.chmod(policy, 0o644)


def test_install_without_its_openat2_shim_refuses_to_run(launcher, storm):
    """A broken install must not quietly lose the openat2 resolution: exit 22, nothing done."""
    (shim,) = (launcher.prefix / "lib" / "worker-launcher").rglob("paths/_resolve*.so")
    aside = shim.with_name(shim.name + ".aside")
    top = storm.workdir("wid")
    shim.rename(aside)
    try:
        result = launcher.run("wlalice", "code-dir", top)
        assert result.returncode == 22 and "openat2" in result.stderr, result.stderr
        assert top.stat().st_uid == pwd.getpwnam(SUPERVISOR).pw_uid
    finally:
        aside.rename(shim)
