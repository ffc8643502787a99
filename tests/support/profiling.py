"""Profiling tests (tests/oci/test_profile.py, tests/docker/test_profile.py): a stand-in for
Storm's flight.bash, Storm's command-file bytes, a container tree that attacks the profile
verbs, and the confinement of a process as seen from the host."""

import os
import shutil
import subprocess
import time
from pathlib import Path

from support.env import GROUP, SUPERVISOR, gid_of_group, uid_of

# Storm's flight.bash takes `<pid> <action> [<dir>]`; this one reports where and how it runs
# to <dir>/profile-<action>.out (/tmp without a dir), and has test actions: hold (until
# <dir>/release exists), mkdir, exit<N>.
PROFILER = """#!/bin/sh
pid="$1"; action="$2"; dir="${3:-/tmp}"
out="$dir/profile-$action.out"
{
  echo "args $*"
  echo "uid $(id -u) $(id -ru)"
  echo "gids $(id -G)"
  echo "umask $(umask)"
  echo "cwd $(pwd)"
} > "$out"
env > "$dir/profile-$action.env"
case "$action" in
  hold) i=0; while [ ! -e "$dir/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done ;;
  mkdir) if mkdir "$dir/made-by-profiler" 2> /dev/null; then echo "mkdir ok" >> "$out";
         else echo "mkdir refused" >> "$out"; fi ;;
  exit*) exit "${action#exit}" ;;
esac
exit 0
"""
STORM_ACTIONS = ("jstack", "jmap", "dump", "stop", "start", "kill")
# What a worker process that got this far would run as root if the launcher imported code
# from the container: a line in /tmp/planted-ran (the worker's tmp directory on the host).
PLANTED = """import os
try:
    _fd = os.open("/tmp/planted-ran", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.write(_fd, ("%s uid=%d\\n" % (__name__, os.getuid())).encode())
    os.close(_fd)
except OSError:
    pass
"""
HOSTILE_PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
                  f"{SUPERVISOR}\x1b]0;pwned\x07:x:1901:1900:\x1b[2J\r:/:/bin/sh\n"
                  "wlalice\x1b[31m:x:2001:2001:\x08\x08\x08:/nonexistent\r:/bin/sh\n")
HOSTILE_GROUP = f"root:x:0:\n{GROUP}\x1b[1m:x:1900:\nwlusers\x07:x:2100:wlalice\x1b[0m\n"
EXTRA_APPLETS = ("unshare", "mount", "umount", "sort")
TOOLS_SOURCE = Path(__file__).parent / "c"


def storm_command(action: str, directory=None, pid: int = 1) -> bytes:
    """StringUtils.join([profileCmd = "", pid, action, dir], " "): BasicContainer's list
    under a container manager, no trailing newline (storm-facts E3)."""
    parts = ["", str(pid), action] + ([str(directory)] if directory is not None else [])
    return " ".join(parts).encode()


def write_command(directory: Path, data: bytes, name: str = "profile.sh") -> Path:
    """The command file as the supervisor writes it: <artifacts>/profile.sh, its own, 0644."""
    path = directory / name
    if path.exists():
        path.unlink()
    path.write_bytes(data)
    os.chown(path, uid_of(SUPERVISOR), gid_of_group())
    os.chmod(path, 0o644)
    return path


def install_profiler(home: Path) -> Path:
    """<storm.home>/bin/profiler.sh, root-owned 0755 (worker.profiler.script.path)."""
    (home / "bin").mkdir(parents=True, exist_ok=True)
    profiler = home / "bin" / "profiler.sh"
    profiler.write_text(PROFILER)
    os.chmod(profiler, 0o755)
    return profiler


def tools(directory: Path) -> dict:
    """wl-tracer and wl-suid (tests/support/c), built statically into `directory`."""
    built = {}
    for name in ("wl_tracer", "wl_suid"):
        target = directory / name.replace("_", "-")
        subprocess.run(["cc", "-static", "-O1", "-Wall", "-Werror", "-o", str(target),
                        str(TOOLS_SOURCE / f"{name}.c")], check=True, capture_output=True)
        built[target.name] = target
    return built


def python_search_path(prefix: Path) -> list:
    """Where the installed launcher's interpreter looks for modules: the package directory,
    then the interpreter's own path (the stub runs python -I -S)."""
    out = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", "import sys; print('\\n'.join(sys.path))"],
                         capture_output=True, text=True, check=True).stdout
    return [str(prefix / "lib" / "worker-launcher")] + [p for p in out.splitlines()
                                                       if p and not p.endswith(".zip")]


def plant_modules(root: Path, prefix: Path) -> list:
    """A module at every place the launcher's Python would look for one, under `root`: each
    module of the installed worker_launcher package, each standard-library module and
    encoding, each extension module as .py, and the modules the audit log and the launcher
    import late (syslog, _socket, ...). Returns the planted paths (inside the container)."""
    planted = []
    package = prefix / "lib" / "worker-launcher"

    def plant(path: str) -> None:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(PLANTED)
        planted.append(path)

    for source in sorted(package.rglob("*.py")):
        plant(str(source))
    for directory in python_search_path(prefix)[1:]:
        base = Path(directory)
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            if entry.suffix == ".py" and entry.name != "os.py":
                plant(str(entry))
            elif entry.suffix == ".so":
                plant(f"{directory}/{entry.name.split('.')[0]}.py")
        if (base / "encodings").is_dir():
            for entry in sorted((base / "encodings").glob("*.py")):
                plant(str(entry))
        for name in ("syslog", "_socket", "select", "fcntl", "resource", "_json", "grp", "pwd"):
            plant(f"{directory}/{name}.py")
    return planted


def hostile_tree(root: Path, prefix: Path, tool_dir: Path) -> list:
    """What a supervisor's layer (or image) and a topology user may put in a container for
    the profile verbs to meet: modules planted where the launcher's Python looks, a
    /etc/passwd and /etc/group with control characters, a setuid-root reporter, a ptrace
    attacker, and unshare/mount to leave the container's namespaces. Returns the planted
    module paths."""
    planted = plant_modules(root, prefix)
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text(HOSTILE_PASSWD)
    (root / "etc" / "group").write_text(HOSTILE_GROUP)
    (root / "bin").mkdir(parents=True, exist_ok=True)
    for name, binary in tools(tool_dir).items():
        shutil.copy2(binary, root / "bin" / name)
        os.chown(root / "bin" / name, 0, 0)
        os.chmod(root / "bin" / name, 0o4755 if name == "wl-suid" else 0o755)
    for applet in EXTRA_APPLETS:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    return planted


STATUS_FIELDS = ("Uid", "Gid", "Groups", "Umask", "NoNewPrivs", "Seccomp", "Seccomp_filters",
                 "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def confinement(pid: int) -> dict:
    """What confines process `pid`, read from the host: its /proc/<pid>/status fields, every
    namespace link of /proc/<pid>/ns and its /proc/<pid>/cgroup."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    found = {field: " ".join(status.get(field, "").split()) for field in STATUS_FIELDS}
    found["ns"] = {name: os.readlink(f"/proc/{pid}/ns/{name}")
                   for name in sorted(os.listdir(f"/proc/{pid}/ns"))}
    found["cgroup"] = Path(f"/proc/{pid}/cgroup").read_text()
    return found


def open_files(pid: int) -> list:
    """What the descriptors of `pid` name, those closed while we look left out (the
    profiler's shell opens and closes files as it polls)."""
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return names


def table(columns: dict) -> str:
    """A side-by-side text table of confinement() results, one column per process."""
    names = list(columns)
    rows = [("", *names)]
    for field in STATUS_FIELDS:
        rows.append((field, *(columns[n][field] for n in names)))
    for kind in sorted(columns[names[0]]["ns"]):
        rows.append((f"ns/{kind}", *(columns[n]["ns"].get(kind, "-") for n in names)))
    rows.append(("cgroup", *(_cgroup_summary(columns[n]["cgroup"]) for n in names)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def _cgroup_summary(text: str) -> str:
    paths = {line.split(":", 2)[2] for line in text.splitlines()}
    return " | ".join(sorted(paths))


def find_process(*arguments: str, mnt=None, timeout: float = 20.0) -> int:
    """The lowest pid whose argv holds every one of `arguments` (as whole arguments), in
    mount namespace `mnt` (a link of /proc/<pid>/ns/mnt) when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if mnt is not None and os.readlink(f"/proc/{entry}/ns/mnt") != mnt:
                    continue
            except OSError:
                continue
            if all(a.encode() in argv for a in arguments):
                found.append(int(entry))
        if found:
            return min(found)
        time.sleep(0.05)
    raise AssertionError(f"no process with arguments {arguments}")


def processes_in_mount_namespace(link: str) -> list:
    """(pid, uids) of every process whose mount namespace is `link` (mnt:[...])."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/mnt") != link:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        found.append((int(entry), tuple(map(int, uids))))
    return found


def seccomp_denying(*names: str) -> dict:
    """An OCI seccomp profile that returns EPERM for `names` and allows every other system
    call this machine's headers know (the default action may not be SCMP_ACT_ALLOW)."""
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    known = sorted({line.split()[1][len("__NR_"):] for line in header.read_text().splitlines()
                    if line.startswith("#define __NR_")})
    return {"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": [n for n in known if n not in names],
                          "action": "SCMP_ACT_ALLOW"}]}


def run_background(launcher, *args):
    """The installed launcher as the supervisor account, not waited for."""
    import pwd

    entry = pwd.getpwnam(SUPERVISOR)
    return subprocess.Popen([str(launcher.binary), *map(str, args)], executable=str(launcher.binary),
                            user=entry.pw_uid, group=entry.pw_gid,
                            extra_groups=os.getgrouplist(SUPERVISOR, entry.pw_gid),
                            env={"PATH": "/usr/bin:/bin"}, cwd="/", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_logged(launcher, receiver, *args):
    """The installed launcher as the supervisor account, its syslog going to `receiver`
    (a support.syslog.SyslogReceiver)."""
    argv = receiver.wrap(["setpriv", f"--reuid={SUPERVISOR}", f"--regid={GROUP}", "--init-groups",
                          "--", str(launcher.binary), *map(str, args)])
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                          cwd="/", timeout=60)


def wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            time.sleep(0.05)
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


