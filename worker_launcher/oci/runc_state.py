"""What runc knows of a container, read from runc's own state (`/run/runc/<id>/state.json`,
root's, in a directory only root can enter), so a reap need not start runc when there is
nothing for runc to do.

`runc delete --force <id>` costs a reap a Go program's start-up (5-10 ms of a 15-30 ms
reap). For the container a reap normally meets, one whose worker has exited, what it does
is: find the container stopped (its init gone, or a zombie, or its pid now another process,
told apart by the start time), remove its cgroups, remove its state directory (and run
poststop hooks, which the launcher never configures). `forget_stopped` does exactly that,
and only when runc's state shows exactly that case, in this order:

1. the state is runc's (a root-owned directory and file, never through a symlink) and
   parses; its config has no hooks and a pid namespace of its own (then every process of
   the container died with its init: the kernel kills a pid namespace with its init), and
   its cgroup is the one the reap was asked to remove;
2. its init is gone (runc's own test: /proc/<pid>/stat missing, a zombie, or another start
   time);
3. its cgroup is removed in every hierarchy (rmdir: fails while any process is still in it);
4. its state directory is removed (state.json, then the directory: fails if runc put
   anything else there).

Any other case, or any step failing, returns False and the caller runs `runc delete
--force` as before (which also kills a running container). The launcher runs runc with its
default state root for root, /run/runc (request.RUNC_STATE_ROOT).
"""

import posix as os
import stat

STATE_ROOT = "/run/runc"
MAX_STATE_BYTES = 4 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_state(dir_fd: int):
    """runc's state.json in the open state directory, parsed; None when it is not runc's
    (not a root-owned regular file) or does not parse."""
    from ..core.fastjson import loads

    try:
        fd = os.open("state.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_size > MAX_STATE_BYTES:
            return None
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_STATE_BYTES:
                return None
    finally:
        os.close(fd)
    try:
        state = loads(b"".join(chunks).decode("utf-8"))
    except ValueError:  # UnicodeDecodeError, json errors
        return None
    return state if isinstance(state, dict) else None


def stopped_container(state: dict, cgroups_path: str) -> bool:
    """runc's state of a container this reap may forget without runc: no hooks, a pid
    namespace of its own, the expected cgroup, and an init that is gone. Reads /proc."""
    config = state.get("config")
    if not isinstance(config, dict):
        return False
    hooks = config.get("Hooks")
    if hooks is not None and (not isinstance(hooks, dict) or any(hooks.values())):
        return False
    namespaces = config.get("namespaces")
    if not isinstance(namespaces, list) or {"type": "NEWPID", "path": ""} not in namespaces:
        return False
    cgroups = config.get("cgroups")
    if not isinstance(cgroups, dict) or cgroups.get("path") != cgroups_path:
        return False
    pid, start = state.get("init_process_pid"), state.get("init_process_start")
    if isinstance(start, str) and start.isdigit():
        start = int(start)
    if type(pid) is not int or type(start) is not int or pid <= 0:
        return False
    return init_gone(pid, start)


def init_gone(pid: int, start: int) -> bool:
    """runc's test of a stopped container: its init's /proc entry is missing, or a zombie
    (or dead), or belongs to another process (another start time: the pid was reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    fields = text.rsplit(b")", 1)[-1].split()
    if len(fields) < 20:
        return False
    return fields[0] in (b"Z", b"X") or fields[19] != str(start).encode()


ABSENT, FORGOTTEN, NEEDS_RUNC = "absent", "forgotten", "needs runc"


def forget_stopped(container_id: str, cgroups_path: str) -> str:
    """Do what `runc delete` does for a stopped container (see above). ABSENT: runc holds no
    state for the id (nothing to delete; its cgroup was not looked at); FORGOTTEN: done,
    cgroup and state removed; NEEDS_RUNC: runc must do it."""
    from . import cgroups

    try:
        dir_fd = os.open(f"{STATE_ROOT}/{container_id}", _DIR_FLAGS)
    except FileNotFoundError:
        return ABSENT
    except OSError:
        return NEEDS_RUNC
    try:
        st = os.fstat(dir_fd)
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return NEEDS_RUNC
        state = _read_state(dir_fd)
        if state is None or state.get("id") != container_id \
                or not stopped_container(state, cgroups_path):
            return NEEDS_RUNC
        if cgroups.remove(cgroups_path):
            return NEEDS_RUNC  # something is still in it: runc delete --force kills it
        try:
            os.unlink("state.json", dir_fd=dir_fd)
        except FileNotFoundError:
            pass
    except OSError:
        return NEEDS_RUNC
    finally:
        os.close(dir_fd)
    try:
        os.rmdir(f"{STATE_ROOT}/{container_id}")
    except FileNotFoundError:
        pass
    except OSError:  # something else is there: runc delete --force removes a directory
        return NEEDS_RUNC  # without state.json
    return FORGOTTEN
