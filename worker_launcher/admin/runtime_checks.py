"""--check-config: the runtime pieces each verb needs, each with what to fix.

A piece only some nodes need (docker on an OCI-only node, runc on a docker-only node, the
profiler script) is a warning when absent; a piece present but unsafe is a failure.
"""

import posix as os
import stat

OK, WARN, FAIL = "ok", "WARN", "FAIL"
SYSLOG = "/dev/log"  # where core.audit sends the audit line


def _root_only(st) -> bool:
    return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def program(name: str, key: str, path: str, needed_for: str) -> tuple:
    from ..paths.trust import chain_problem

    try:
        st = os.stat(path)
    except OSError as err:
        return (WARN, name, f"{path} ({key}): {err.strerror}; {needed_for} will fail until it is "
                            f"installed or {key} points at it")
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return (FAIL, name, f"{path} ({key}) is not an executable file")
    problem = chain_problem(path)
    if problem or not _root_only(st):
        return (FAIL, name, f"{path} ({key}) runs as root but could be changed by others: "
                            f"{problem or 'make it root-owned, not group/world-writable'}")
    return (OK, name, f"{path} is root-owned and executable")


def profiler(cfg) -> tuple:
    from ..paths.trust import chain_problem

    path = cfg.profiler_script
    if not path:
        return (WARN, "profiler", "worker.profiler.script.path is not set: profile-* commands "
                                  "will fail")
    try:
        st = os.stat(path)
    except OSError as err:
        return (FAIL, "profiler", f"{path} (worker.profiler.script.path): {err.strerror}")
    problem = chain_problem(path)
    if problem or not _root_only(st) or not stat.S_ISREG(st.st_mode):
        return (FAIL, "profiler", f"{path} must be a regular file only root can change: "
                                  f"{problem or 'chown root and chmod go-w'}")
    return (OK, "profiler", f"{path} is root-owned, not group/world-writable")


def run_root(cfg) -> tuple:
    path = cfg.run_root
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return (WARN, "run-root", f"{path} does not exist yet; the first OCI launch creates it")
    except OSError as err:
        return (FAIL, "run-root", f"{path}: {err.strerror}")
    if not stat.S_ISDIR(st.st_mode) or not _root_only(st):
        return (FAIL, "run-root", f"{path} must be a root-owned directory, not group/world-"
                                  f"writable (mode {stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid})")
    return (OK, "run-root", f"{path} is root-owned, mode {stat.S_IMODE(st.st_mode):04o}")


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def kernel() -> list:
    results = []
    if _exists("/dev/loop-control"):
        results.append((OK, "loop", "/dev/loop-control is present"))
    else:
        results.append((WARN, "loop", "/dev/loop-control is missing: load the loop module "
                                      "(modprobe loop) for the OCI runtime"))
    try:  # bytes: an "ascii" text file would load that codec for this alone
        with open("/proc/filesystems", "rb") as handle:
            known = {line.split()[-1] for line in handle if line.strip()}
    except OSError:
        known = set()
    for fs in ("squashfs", "overlay"):
        results.append((OK, fs, f"{fs} is in /proc/filesystems") if fs.encode() in known else
                       (WARN, fs, f"{fs} is not in /proc/filesystems: modprobe {fs} for the OCI "
                                  "runtime"))
    return results


def namespaces() -> tuple:
    """The nsenter verb never enters a namespace: runc starts the profiler in the worker's
    container (runc's own state for OCI workers, docker's runc state for docker workers)."""
    from ..core.config import DOCKER_RUNC_ROOTS

    roots = [root for root in DOCKER_RUNC_ROOTS if _is_dir(root)]
    docker = (f"docker's in {roots[0]}" if roots else
              f"docker's in {' or '.join(DOCKER_RUNC_ROOTS)} once dockerd runs")
    return (OK, "nsenter", f"profilers start in the worker's container with runc exec (OCI "
                           f"workers: runc's default state; {docker})")


def syslog_check(path: str = SYSLOG) -> tuple:
    """Whether `path` accepts a connection (not core.audit, which loads what only a verb
    needs)."""
    import _socket  # not `socket`: that pulls in enum and selectors, ~9 ms

    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        probe.connect(path)
    except OSError as err:
        return (WARN, "syslog", f"audit log not reachable: cannot connect to {path}: "
                                f"{err.strerror}; start a syslog daemon")
    finally:
        probe.close()
    return (OK, "syslog", f"{path} accepts the audit log (authpriv)")


def collect(cfg) -> list:
    return [
        program("runc", "worker.launcher.oci.runc", cfg.runc, "the OCI verbs"),
        program("docker", "docker.binary", cfg.docker_binary, "the docker verbs"),
        profiler(cfg),
        run_root(cfg),
        *kernel(),
        namespaces(),
        syslog_check(),
    ]
