"""The layer database under the run root, in Storm's layout so an existing node's run root is
understood: layers/<sha256 hex of the layer path>/mnt is that layer's squashfs mount,
layers/lock an fcntl lock taken for every change, <containerId>/{rootfs,upper,work} a
container's overlay."""

import errno
import fcntl
import os
import stat

try:  # the built-in SHA-256: hashlib loads OpenSSL, ~4 ms of every launch
    from _sha256 import sha256
except ImportError:
    from hashlib import sha256

from ..core.errors import ExitCode, LauncherError, os_error_text
from ..privileged import mounts
from . import mountinfo

LAYERS = "layers"
LOCK = "lock"


def layer_dir(run_root: str, layer_path: str) -> str:
    return f"{run_root}/{LAYERS}/{sha256(layer_path.encode()).hexdigest()}"


def make_dir(path: str, mode: int) -> bool:
    """mkdir as root; True if it was created, False if a real directory was there."""
    try:
        os.mkdir(path, mode)
        return True
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
            raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                f"{path} exists and is not a root-owned directory") from None
        return False


class LayerLock:
    """Exclusive fcntl lock on <run-root>/layers/lock while layers are mounted or unmounted."""

    def __init__(self, run_root: str):
        self.path = f"{run_root}/{LAYERS}/{LOCK}"
        self.fd = None

    def __enter__(self):
        make_dir(os.path.dirname(self.path), 0o755)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o600)
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        os.close(self.fd)  # closing releases the lock
        return False


def mount_layers(run_root: str, layers: list, undo: list) -> list:
    """Mount (or reuse) every layer; call with the LayerLock held. `layers` are
    (path, fd) pairs. Returns the mount directories; appends an undo step for each layer
    this call mounted."""
    mounted = mountinfo.mounted_at(mountinfo.read())
    mount_dirs = []
    for path, fd in layers:
        directory = layer_dir(run_root, path)
        mnt = f"{directory}/mnt"
        entry = mounted.get(mnt)
        if entry is not None:
            if entry.fstype != "squashfs" or not mounts.backing_matches(entry.source, fd):
                raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                    f"layer {path} changed since it was mounted at {mnt}; "
                                    f"reap it first")
            os.utime(directory)  # most recently used: kept longest by reap
        else:
            make_dir(directory, 0o755)
            make_dir(mnt, 0o755)
            try:
                mounts.mount_layer(fd, path, mnt)
            except OSError as err:
                raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                    f"cannot mount layer {path}: {err.strerror}") from None
            undo.append(lambda mnt=mnt: release_layer(run_root, mnt))
        mount_dirs.append(mnt)
    return mount_dirs


def unmount_layer(mnt: str) -> None:
    mounts.unmount(mnt)
    for path in (mnt, os.path.dirname(mnt)):
        try:
            os.rmdir(path)
        except OSError:
            pass


def release_layer(run_root: str, mnt: str) -> None:
    """Undo of a layer a failed launch mounted. It runs after the lock was released, so a
    launch that started meanwhile may already stand on the layer: unmount it under the lock,
    and only if no mounted overlay lists it (it then stays, for reap-layers to manage)."""
    with LayerLock(run_root):
        if mnt not in mountinfo.layers_in_use(mountinfo.read()):
            unmount_layer(mnt)


def backing_deleted(source: str) -> bool:
    """The file behind loop device `source` was deleted (the kernel marks it so)."""
    name = os.path.basename(source)
    try:
        with open(f"/sys/block/{name}/loop/backing_file", encoding="utf-8",
                  errors="surrogateescape") as handle:
            return handle.read().rstrip("\n").endswith(" (deleted)")
    except OSError:
        return False


def reap_layers(run_root: str, keep_count: int) -> list:
    """Unmount layers no mounted overlay uses: those whose file was deleted, then the least
    recently used beyond `keep_count`. Call with the LayerLock held. A busy layer is skipped.
    Returns the problems met (empty when all went well)."""
    entries = mountinfo.read()
    in_use = mountinfo.layers_in_use(entries)
    mounted = mountinfo.mounted_at(entries)
    top = f"{run_root}/{LAYERS}"
    try:
        names = [name for name in os.listdir(top) if len(name) == 64]
    except FileNotFoundError:
        return []
    layers = []
    for name in names:
        mnt = f"{top}/{name}/mnt"
        if mnt in mounted:
            layers.append((os.lstat(f"{top}/{name}").st_mtime, mnt, mounted[mnt]))
        else:
            unmount_layer(mnt)  # a directory left without a mount: remove it
    layers.sort(key=lambda layer: layer[0], reverse=True)
    problems, kept = [], 0
    for _, mnt, entry in layers:
        if mnt in in_use:
            kept += 1
            continue
        if not backing_deleted(entry.source) and kept < keep_count:
            kept += 1
            continue
        try:
            unmount_layer(mnt)
        except OSError as err:
            if err.errno != errno.EBUSY:
                problems.append(f"cannot unmount layer {mnt}: {os_error_text(err)}")
    return problems
