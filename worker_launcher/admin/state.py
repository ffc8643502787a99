"""`--list-state`: what the OCI runtime left in the run root, and what of it is orphaned.

Read only: it lists directories (never enters a mounted root, a bind or an upper directory),
reads /proc/self/mountinfo, /sys/block/loop*/loop/backing_file and runc's state files, and
changes nothing. It reads the run root generically (every directory of layers/ is a layer,
every other directory with a rootfs, upper, work or binds entry is a container) so that it
still makes sense of a run root an older or newer launcher, or Storm's C launcher, wrote.

Orphaned: a container directory runc does not know (its worker is gone; its rootfs and binds
still hold mounts), a bind still mounted in such a directory, a layer no mounted overlay
lists, a layer directory without its mount, a mount under the run root that belongs to none
of these. Storm's own reap-oci-container removes each of them safely.
"""

import posix as os

from ..core.errors import ExitCode, LauncherError
from ..oci import mountinfo

RUNC_ROOT = "/run/runc"  # runc's state directory when run by root without --root
LAYERS = "layers"
CONTAINER_ENTRIES = ("rootfs", "upper", "work", "binds")


def shown_path(mount, mounts: list, run_root: str) -> str:
    """The host path a bind mount shows: the mount point of the same file system (outside
    the run root) whose root holds the bind's root, plus the rest of the bind's root. The
    widest view wins (the file system's own mount over binds of its parts, which may be
    another launcher's binds), then the shortest mount point."""
    best = None
    for other in mounts:
        if other.device != mount.device or other is mount or _below(other.mount_point, run_root):
            continue
        if _below(mount.root, other.root) and (
                best is None or (len(other.root), len(other.mount_point)) < (len(best.root),
                                                                       len(best.mount_point))):
            best = other
    if best is None:
        return f"{mount.root} on device {mount.device}"
    if mount.root == best.root:
        return best.mount_point
    rest = mount.root[len(best.root.rstrip("/")):]
    return (best.mount_point.rstrip("/") + rest) or "/"


def _below(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


def loop_devices() -> dict:
    """/dev/loopN -> its backing file (' (deleted)' kept), for every attached loop device."""
    found = {}
    try:
        names = [name for name in os.listdir("/sys/block") if name.startswith("loop")]
    except OSError:
        return found
    for name in names:
        try:
            with open(f"/sys/block/{name}/loop/backing_file", encoding="utf-8",
                      errors="surrogateescape") as handle:
                found[f"/dev/{name}"] = handle.read().rstrip("\n")
        except OSError:
            continue  # not attached
    return found


def runc_state(container_id: str):
    """runc's view of a container: None if runc has no state for it, else a dict with its
    init pid, whether that process still runs, and its rootfs."""
    import json

    try:
        with open(f"{RUNC_ROOT}/{container_id}/state.json", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    pid = data.get("init_process_pid")
    return {"pid": pid, "status": "running" if _alive(pid, data.get("init_process_start"))
            else "stopped", "rootfs": (data.get("config") or {}).get("rootfs")}


def _alive(pid, start) -> bool:
    """The init process still runs: the pid exists with the start time runc recorded."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return start is None or fields[19] == str(start)


def runc_ids() -> list:
    try:
        return sorted(os.listdir(RUNC_ROOT))
    except OSError:
        return []


def _dirs(path: str) -> list:
    """Names of the directories in `path` (no symlink followed, nothing entered)."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _names(path: str) -> list:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def collect(run_root: str, mounts: list, loops: dict, runc) -> dict:
    """The state of `run_root`: containers, layers, other mounts, loop devices, orphans.
    `runc` maps a container id to runc_state()'s answer; `runc_known` ids come from runc."""
    by_point = {mount.mount_point: mount for mount in mounts}  # the top mount at each point
    claimed = set()
    layers = []
    for name in _dirs(f"{run_root}/{LAYERS}"):
        directory = f"{run_root}/{LAYERS}/{name}"
        mount = by_point.get(f"{directory}/mnt")
        layer = {"name": name, "path": f"{directory}/mnt", "mounted": mount is not None,
                 "device": None, "backing_file": None, "backing_deleted": False, "users": []}
        if mount is not None:
            claimed.add(mount.mount_point)
            layer["device"] = mount.source
            backing = loops.get(mount.source)
            layer["backing_file"] = backing
            layer["backing_deleted"] = bool(backing and backing.endswith(" (deleted)"))
        layers.append(layer)
    layer_by_path = {layer["path"]: layer for layer in layers}
    containers = []
    for name in _dirs(run_root):
        directory = f"{run_root}/{name}"
        entries = _names(directory)
        if name == LAYERS or not any(entry in entries for entry in CONTAINER_ENTRIES):
            continue
        containers.append(_container(name, directory, entries, mounts, by_point, run_root,
                                     runc(name), layer_by_path, claimed))
    return _finish(run_root, containers, layers, mounts, claimed, loops)


def _container(name, directory, entries, mounts, by_point, run_root, state, layer_by_path,
               claimed) -> dict:
    rootfs = by_point.get(f"{directory}/rootfs")
    for point in (directory, f"{directory}/binds"):  # its tmpfs (older launchers: the binds')
        if point in by_point:
            claimed.add(point)
    container = {"id": name, "path": directory, "runc": state, "rootfs": None, "binds": [],
                 "orphaned": False, "problems": []}
    if rootfs is not None:
        claimed.add(rootfs.mount_point)
        lower = rootfs.lower_dirs()
        container["rootfs"] = {"path": rootfs.mount_point, "fstype": rootfs.fstype, "layers": [
            layer_by_path[path]["name"] if path in layer_by_path else path for path in lower]}
        for path in lower:
            if path in layer_by_path:
                layer_by_path[path]["users"].append(name)
    for index in sorted(_names(f"{directory}/binds"), key=lambda n: (len(n), n)):
        point = f"{directory}/binds/{index}"
        bind = by_point.get(point)
        if bind is not None:
            claimed.add(point)
        container["binds"].append({"index": index, "path": point, "mounted": bind is not None,
                                   "shows": shown_path(bind, mounts, run_root) if bind else None})
    if state is None:
        container["orphaned"] = True
        container["problems"].append("runc has no state for it: its worker is gone")
        held = (["rootfs"] if rootfs is not None else []) + \
            [f"binds/{b['index']}" for b in container["binds"] if b["mounted"]]
        if held:
            container["problems"].append(f"still mounted: {', '.join(held)}")
    elif state["status"] != "running":
        container["problems"].append("its init process has exited (Storm reaps it next)")
    if state is not None and rootfs is None:
        container["problems"].append("runc knows it but its rootfs is not mounted")
    return container


def _finish(run_root, containers, layers, mounts, claimed, loops) -> dict:
    for layer in layers:
        if not layer["mounted"]:
            layer["problem"] = "a layer directory without its mount"
        elif not layer["users"]:
            layer["problem"] = ("unused, its file deleted" if layer["backing_deleted"]
                                else "unused by every container")
        else:
            layer["problem"] = None
        layer["orphaned"] = layer["problem"] is not None
    other = [{"path": m.mount_point, "fstype": m.fstype, "source": m.source,
              "shows": shown_path(m, mounts, run_root) if m.fstype not in ("overlay", "squashfs")
              else m.source}
             for m in mounts if _below(m.mount_point, run_root) and m.mount_point not in claimed
             and m.mount_point != run_root]
    sources = {mount.source for mount in mounts}
    unmounted_loops = [{"device": device, "backing_file": backing}
                       for device, backing in sorted(loops.items()) if device not in sources]
    return {
        "run_root": run_root,
        "containers": containers,
        "layers": layers,
        "other_mounts": other,
        "unmounted_loop_devices": unmounted_loops,
        "summary": {
            "containers": len(containers),
            "orphaned_containers": sum(c["orphaned"] for c in containers),
            "stray_binds": sum(b["mounted"] for c in containers if c["orphaned"]
                               for b in c["binds"]),
            "layers": len(layers),
            "orphaned_layers": sum(layer["orphaned"] for layer in layers),
            "other_mounts": len(other),
        },
    }


def runc_without_directory(run_root: str, state: dict) -> list:
    """runc containers whose rootfs is in the run root but whose directory is gone."""
    listed = {c["id"] for c in state["containers"]}
    found = []
    for container_id in runc_ids():
        if container_id in listed:
            continue
        known = runc_state(container_id)
        if known and isinstance(known["rootfs"], str) and _below(known["rootfs"], run_root):
            found.append({"id": container_id, **known})
    return found


def snapshot(run_root: str) -> dict:
    mounts = mountinfo.read()
    from ..paths import resolve

    real_root = resolve.canonical(run_root)  # root-made symlinks only
    state = collect(real_root, mounts, loop_devices(), runc_state)
    state["runc_without_directory"] = runc_without_directory(real_root, state)
    return state


def render(state: dict) -> str:
    lines = [f"run root {state['run_root']}"]
    lines.append(f"containers: {len(state['containers'])}")
    for c in state["containers"]:
        runc = c["runc"]
        status = f"runc {runc['status']}, pid {runc['pid']}" if runc else "runc: no state"
        lines.append(f"  {c['id']}  {status}{'  ORPHANED' if c['orphaned'] else ''}")
        if c["rootfs"]:
            lines.append(f"    rootfs   {c['rootfs']['fstype']} mounted, layers (top first): "
                         f"{', '.join(c['rootfs']['layers']) or '-'}")
        else:
            lines.append("    rootfs   not mounted")
        for b in c["binds"]:
            lines.append(f"    binds/{b['index']:<3} " + (f"shows {b['shows']}" if b["mounted"]
                                                         else "not mounted (an empty leftover)"))
        for problem in c["problems"]:
            lines.append(f"    note     {problem}")
    lines.append(f"layers: {len(state['layers'])}")
    for layer in state["layers"]:
        where = (f"{layer['device']} <- {layer['backing_file']}" if layer["mounted"]
                 else "not mounted")
        users = ", ".join(layer["users"]) or "none"
        flag = f"  ORPHANED: {layer['problem']}" if layer["orphaned"] else ""
        lines.append(f"  {layer['name']}  {where}  used by: {users}{flag}")
    for heading, key, show in (
            ("other mounts under the run root (left behind, unless a launch is under way)",
             "other_mounts",
             lambda m: f"  {m['path']}  {m['fstype']}  shows {m['shows']}"),
            ("runc containers in the run root without their directory", "runc_without_directory",
             lambda r: f"  {r['id']}  runc {r['status']}, pid {r['pid']}, rootfs {r['rootfs']}"),
            ("loop devices no mount uses (not necessarily the launcher's)",
             "unmounted_loop_devices", lambda d: f"  {d['device']} <- {d['backing_file']}")):
        if state.get(key):
            lines.append(f"{heading}: {len(state[key])}")
            lines += [show(item) for item in state[key]]
    summary = state["summary"]
    lines.append(f"summary: {summary['containers']} containers ({summary['orphaned_containers']} "
                 f"orphaned, {summary['stray_binds']} binds left behind), {summary['layers']} "
                 f"layers ({summary['orphaned_layers']} orphaned), {summary['other_mounts']} "
                 f"other mounts")
    if summary["orphaned_containers"] or summary["orphaned_layers"]:
        lines.append("clean up with: worker-launcher <user> reap-oci-container <id> <keep-count> "
                     "(never rm -rf a container directory; see worker-launcher(8))")
    return "\n".join(lines)


def run(as_json: bool) -> int:
    """--list-state [--json], as root or the supervisor account (the binary's group)."""
    from ..core import identity
    from ..launch import load_config

    cfg, _ = load_config()
    if not identity.privileged():
        raise LauncherError(ExitCode.SETUID_OPER_FAILED,
                            "not running with root privileges: the setuid bit of worker-launcher "
                            "is missing or was ignored; the run root is root's only")
    state = snapshot(cfg.run_root)
    if as_json:
        import json

        print(json.dumps(state, indent=2))
    else:
        print(render(state))
    return ExitCode.OK
