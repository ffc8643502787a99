"""The layer database under the run root, in Storm's layout so an existing node's run root is
understood: layers/<sha256 hex of the layer path>/mnt is that layer's squashfs mount,
layers/lock an fcntl lock (shared to look, exclusive to mount or unmount a layer),
<containerId>/{rootfs,upper,work} a container's overlay (<containerId> is a tmpfs of its own,
privileged.mounts.container_tmpfs).

A second file at the same path. Storm's localiser may replace a layer file (deleted, then
downloaded again) while a container still runs on the old one, whose mount keeps the old
file (the kernel marks its loop device's backing file "(deleted)"). A launch then mounts the
new file as a layer of its own, at layers/<sha256 hex of "<path>\0<st_dev>:<st_ino>">/mnt:
deterministic (every launch of that file finds it), 64 hex digits like Storm's names (so
Storm's and our reap see it), and never confused with the old file, whose inode number
cannot be reused while its mount holds it. The old container keeps its mount; reap unmounts
each when no overlay uses it (the old one first, its file being deleted).

The run root and the layer database are root's alone (0700): a layer's files are readable
through its mount, and only root (runc, which mounts the container's root) needs them.
Everything below the run root is named by path strings the launcher builds (mount(2) takes
paths): the run root is opened on descriptors from / with every directory on the way
root-owned and not writable by group or others (paths.trust.root_chain), so no other
account can change what those strings name.
"""

import errno
import fcntl
import posix as os
import stat

try:  # the built-in SHA-256: hashlib loads OpenSSL, ~4 ms of every launch
    from _sha256 import sha256
except ImportError:
    from hashlib import sha256

from ..core import interrupts
from ..core.errors import ExitCode, LauncherError, os_error_text
from ..privileged import mounts
from . import mountinfo

LAYERS = "layers"
LOCK = "lock"
LOCK_TIMEOUT = 30  # seconds; worker.launcher.oci.lock-timeout


PRIVATE = 0o700
SEPARATORS = ",:\\ "  # the overlay option syntax: no run root may contain them


def layer_dir(run_root: str, layer_path: str) -> str:
    """Storm's (and the C launcher's) name: the SHA-256 of the layer's path."""
    return f"{run_root}/{LAYERS}/{sha256(layer_path.encode()).hexdigest()}"


def file_layer_dir(run_root: str, layer_path: str, st: os.stat_result) -> str:
    """The name of a layer file that is not the one mounted at layer_dir (see above)."""
    key = f"{layer_path}\0{st.st_dev}:{st.st_ino}".encode("utf-8", "surrogateescape")
    return f"{run_root}/{LAYERS}/{sha256(key).hexdigest()}"


def _parent(path: str) -> str:
    """The directory of an absolute path the launcher built (no trailing '/')."""
    return path.rsplit("/", 1)[0] or "/"


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


def open_run_root(configured: str) -> str:
    """The run root (created if missing) and its layer database, both made root-only
    (0700; a run root an older launcher left 0755 is fixed). Returns its canonical path."""
    from ..paths import trust

    if any(char in configured for char in SEPARATORS):
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE, f"worker.launcher.oci.run-root "
                                                          f"{configured} may not contain , : \\ "
                                                          f"or space")
    fd, path, problem = trust.root_chain(configured)
    if fd is None and problem is None:
        parent, name = path.rsplit("/", 1)
        parent_fd, _, problem = trust.root_chain(parent or "/")
        if parent_fd is not None:
            try:
                os.mkdir(name, PRIVATE, dir_fd=parent_fd)
            except FileExistsError:
                pass
            finally:
                os.close(parent_fd)
            fd, path, problem = trust.root_chain(configured)
    if problem or fd is None:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                            f"run root {configured} is not safe: {problem or 'cannot create it'}")
    try:
        _make_private(fd, path)
        try:
            os.mkdir(LAYERS, PRIVATE, dir_fd=fd)
        except FileExistsError:
            pass
        layers_fd = os.open(LAYERS, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            _make_private(layers_fd, f"{path}/{LAYERS}")
        finally:
            os.close(layers_fd)
    except OSError as err:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                            f"cannot set up the run root {path}: {os_error_text(err)}") from None
    finally:
        os.close(fd)
    return path


def _make_private(fd: int, path: str) -> None:
    """The O_PATH `fd` must be a root-owned directory; make it 0700 (reopened through
    /proc/self/fd, which names the open directory itself, to fchmod it)."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE, f"{path} is not a root-owned directory")
    if stat.S_IMODE(st.st_mode) != PRIVATE:
        directory = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fchmod(directory, PRIVATE)
        finally:
            os.close(directory)


class LayerLock:
    """fcntl lock on <run-root>/layers/lock: shared to look at the layer database, exclusive
    to mount or unmount a layer (as the C launcher's read and write locks). A launch that
    finds its layers mounted holds it shared until its overlay is mounted on them (the C
    launcher lets go before): no reaper can unmount them in between, and once the overlay is
    mounted every reaper sees them in use. So launches of warm layers and reaps with nothing
    to unmount (Storm's keep count 100) never wait for each other. A reap's own container
    (its overlay, its run directory) is no other call's business: no lock.

    The wait is bounded: after `timeout` seconds (a stopped or stuck holder) it fails with
    one line naming the lock and its holder's pid, exit `code` (44 for a launch, 45 for a
    reap). F_SETLKW is ended by a one-shot timer (core.interrupts.waiting), so taking a free
    lock costs one fcntl and no timer. A cancel signal ends the wait as well."""

    def __init__(self, run_root: str, timeout: float = LOCK_TIMEOUT,
                 code: int = ExitCode.OCI_RUN_FAILED, shared: bool = False):
        self.path = f"{run_root}/{LAYERS}/{LOCK}"
        self.timeout = timeout
        self.code = code
        self.fd = None
        self.shared = shared

    def __enter__(self):
        make_dir(_parent(self.path), PRIVATE)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o600)
        try:
            self._take()
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def exclusive(self) -> None:
        """Give up a shared hold and wait for the exclusive lock (not converted in place: two
        holders converting at once would deadlock; fcntl grants a new shared hold while a
        writer waits, so the wait is bounded by the timeout, not by fairness). What was seen
        under the shared lock may have changed meanwhile: the caller looks again."""
        if self.shared:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            self.shared = False
            self._take()

    def _take(self) -> None:
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.lockf(self.fd, mode | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self._wait(mode)

    def _wait(self, mode: int) -> None:
        try:
            with interrupts.waiting(self.timeout):
                fcntl.lockf(self.fd, mode)
        except interrupts.TimedOut:
            try:  # the timer may have fired as the lock was granted (or we were stopped)
                fcntl.lockf(self.fd, mode | fcntl.LOCK_NB)
                return
            except OSError:
                pass
            holder = lock_holder(self.fd)
            held = f" (held by pid {holder})" if holder else ""
            raise LauncherError(self.code, f"timed out after {self.timeout:g} s waiting for the "
                                           f"layer lock {self.path}{held}") from None

    def __exit__(self, *exc_info):
        os.close(self.fd)  # closing releases the lock
        return False


def lock_holder(fd: int):
    """The pid of a process holding a lock that conflicts with an exclusive one on `fd`, or
    None (F_GETLK)."""
    import struct

    request = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0)  # SEEK_SET, whole file
    try:
        kind, _, _, _, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, request))
    except (OSError, struct.error):
        return None
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


def mounted_layer_dirs(run_root: str, layers: list):
    """The mount directories of `layers` ((path, fd) pairs) when every one is mounted
    already (marked most recently used), else None. Call with the LayerLock held, shared
    is enough."""
    mounted = mountinfo.mounted_at(mountinfo.read())
    found = []
    for path, fd in layers:
        mnt = _mounted_layer(run_root, path, fd, mounted)
        if mnt is None:
            return None
        found.append(mnt)
    for mnt in set(found):
        os.utime(_parent(mnt))  # most recently used: kept longest by reap
    return found


def mount_layers(run_root: str, layers: list, undo: list) -> list:
    """Mount (or reuse) every layer; call with the LayerLock held. `layers` are
    (path, fd) pairs. Returns the mount directories; appends an undo step for each layer
    this call mounted."""
    mounted = mountinfo.mounted_at(mountinfo.read())
    mount_dirs, this_call = [], {}
    for path, fd in layers:
        mnt = this_call.get(path) or _mounted_layer(run_root, path, fd, mounted)
        if mnt is not None:
            os.utime(_parent(mnt))  # most recently used: kept longest by reap
        else:
            mnt = _free_layer_dir(run_root, path, fd, mounted)
            directory = _parent(mnt)
            make_dir(directory, PRIVATE)
            make_dir(mnt, PRIVATE)
            try:
                mounts.mount_layer(fd, path, mnt)
            except OSError as err:
                raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                    f"cannot mount layer {path}: {err.strerror}") from None
            mounted[mnt] = None  # taken (by this very file)
            undo.append(lambda mnt=mnt: release_layer(run_root, mnt))
        this_call[path] = mnt
        mount_dirs.append(mnt)
    return mount_dirs


def _mounted_layer(run_root: str, path: str, fd: int, mounted: dict):
    """The mount of exactly this file (under either name), or None."""
    for directory in (layer_dir(run_root, path), file_layer_dir(run_root, path, os.fstat(fd))):
        entry = mounted.get(f"{directory}/mnt")
        if entry is not None and entry.fstype == "squashfs" \
                and mounts.backing_matches(entry.source, fd):
            return f"{directory}/mnt"
    return None


def _free_layer_dir(run_root: str, path: str, fd: int, mounted: dict) -> str:
    """Where to mount a file not mounted yet: Storm's name, or if another file (an older
    one at the same path) is mounted there, the file's own name."""
    for directory in (layer_dir(run_root, path), file_layer_dir(run_root, path, os.fstat(fd))):
        if f"{directory}/mnt" not in mounted:
            return f"{directory}/mnt"
    raise LauncherError(ExitCode.OCI_RUN_FAILED,
                        f"layer {path}: {directory}/mnt is mounted from another file")


def unmount_layer(mnt: str) -> None:
    mounts.unmount(mnt)
    for path in (mnt, _parent(mnt)):
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


def backing_deleted(source: str, sysfs: bool = False) -> bool:
    """The file behind loop device `source` (/dev/loopN; with `sysfs`, its directory in
    /sys) was deleted (the kernel marks it so)."""
    directory = source if sysfs else f"/sys/block/{source.rsplit('/', 1)[-1]}"
    try:
        with open(f"{directory}/loop/backing_file", "rb") as handle:
            return handle.read().rstrip(b"\n").endswith(b" (deleted)")
    except OSError:
        return False


def reap_layers(run_root: str, keep_count: int, lock) -> list:
    """Unmount layers no mounted overlay uses: those whose file was deleted, then the least
    recently used beyond `keep_count`. `lock` is the LayerLock, held: when it is held shared,
    it is made exclusive only if there is something to unmount or remove (and the layers are
    looked at again). A busy layer is skipped. Returns the problems met (empty when all went
    well)."""
    if lock.shared:
        if not _maybe_unused(run_root, keep_count) or not _unused_layers(run_root, keep_count):
            return []
        lock.exclusive()
    problems = []
    for mnt in _unused_layers(run_root, keep_count):
        try:
            unmount_layer(mnt)
        except OSError as err:
            if err.errno != errno.EBUSY:
                problems.append(f"cannot unmount layer {mnt}: {os_error_text(err)}")
    return problems


def _maybe_unused(run_root: str, keep_count: int) -> bool:
    """False when _unused_layers would find nothing, told without reading mountinfo (whose
    every line the kernel formats, ~2.6 us each: a node running many containers has hundreds):
    no more layer directories than the keep count, each with a mount (its mnt on another
    device than the directory) whose loop device's file was not deleted. Used by nothing that
    unmounts: a True only sends the reap on to the full look."""
    top = f"{run_root}/{LAYERS}"
    try:
        names = [name for name in os.listdir(top) if len(name) == 64]
    except FileNotFoundError:
        return False
    if len(names) > keep_count:
        return True
    for name in names:
        try:
            device = os.lstat(f"{top}/{name}/mnt").st_dev
            if device == os.lstat(f"{top}/{name}").st_dev:
                return True  # a directory left without a mount
        except OSError:
            return True
        if backing_deleted(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}", sysfs=True):
            return True
    return False


def _unused_layers(run_root: str, keep_count: int) -> list:
    """The layer directories reap_layers removes now: those left without a mount, those whose
    file was deleted, then the least recently used beyond `keep_count`, never one a mounted
    overlay lists (those count as kept). Reads mountinfo and the layer database only."""
    entries = mountinfo.read()
    in_use = mountinfo.layers_in_use(entries)
    mounted = mountinfo.mounted_at(entries)
    top = f"{run_root}/{LAYERS}"
    try:
        names = [name for name in os.listdir(top) if len(name) == 64]
    except FileNotFoundError:
        return []
    unused, layers = [], []
    for name in names:
        mnt = f"{top}/{name}/mnt"
        if mnt in mounted:
            layers.append((os.lstat(f"{top}/{name}").st_mtime, mnt, mounted[mnt]))
        else:
            unused.append(mnt)  # a directory left without a mount: removed
    layers.sort(key=lambda layer: layer[0], reverse=True)
    kept = 0
    for _, mnt, entry in layers:
        if mnt in in_use or (not backing_deleted(entry.source) and kept < keep_count):
            kept += 1
        else:
            unused.append(mnt)
    return unused
