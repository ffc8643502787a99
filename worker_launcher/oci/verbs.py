"""mount-layers, runc-run (Storm: run-oci-container) and reap-layers (reap-oci-container).

Order of a launch: read and validate the request, and resolve and check by descriptor
everything it names on the host (request.py), with the supervisor account's rights; only
then set up the workdir, and, under the layer lock, mount layers and the container's
overlay; write config.json; run `runc run -d`. Every step after the first mount registers
its undo, and a failure runs them all, so a failed launch leaves no mount, loop device,
directory, cgroup or runc container behind.
"""

import posix as os

from ..core import interrupts
from ..core.errors import ExitCode, LauncherError, os_error_text
from ..privileged import mounts
from . import binds, layers


class Undo(list):
    """The undo steps of a launch, run newest first when the body fails (whatever the
    failure, so nothing is left behind); an OSError, e.g. a full run root, becomes one line."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            return False
        interrupts.undoing()  # a cancel signal from now on is only recorded
        while self:
            try:
                self.pop()()
            except (OSError, LauncherError):
                pass  # keep undoing; reap-layers cleans what is left
        if issubclass(kind, OSError):
            raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                f"cannot {self.what}: {os_error_text(error)}") from None
        return False


def mount_rootfs(request, run_root: str, undo: list) -> str:
    """Layers and the container's overlay; returns the rootfs path."""
    cdir = request.container_dir = f"{run_root}/{request.spec.container_id}"
    with layers.LayerLock(run_root, request.launch.config.lock_timeout, shared=True) as lock:
        layer_dirs = layers.mounted_layer_dirs(run_root, request.open_layers())
        if layer_dirs is None:
            lock.exclusive()
            layer_dirs = layers.mount_layers(run_root, request.open_layers(), undo)
        if not layers.make_dir(cdir, 0o700):
            raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                f"container {request.spec.container_id} already exists in {cdir}")
        undo.append(lambda: _remove_tree(cdir))
        mounts.container_tmpfs(cdir)
        for name, mode in (("rootfs", 0o700), ("upper", 0o755), ("work", 0o700)):
            os.mkdir(f"{cdir}/{name}", mode)
        try:
            mounts.mount_overlay(list(reversed(layer_dirs)), f"{cdir}/upper", f"{cdir}/work",
                                 f"{cdir}/rootfs")
        except OSError as err:
            raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                f"cannot mount the root of {request.spec.container_id}: "
                                f"{err.strerror}") from None
        undo.append(lambda: mounts.unmount(f"{cdir}/rootfs"))
    return f"{cdir}/rootfs"


def _remove_tree(path: str) -> None:
    """A container's run directory. This launcher's is a tmpfs of its own: with its root
    unmounted, one lazy unmount takes the tmpfs and the binds staged on it (mounts.detach),
    leaving the empty directory it was mounted on, which is then only rmdir'ed: anything
    found in it was put there by another call on the same container id (a launch that went
    on by path after its tmpfs was detached), so it is reported, never walked. An older
    launcher's directory: its staged binds detached first (raises if one stays), then what
    is left, by unlinkat relative to directory fds: no symlink followed, no mount point (a
    root still mounted, a bind) entered, so the user's files behind a bind are never
    deleted."""
    from ..paths import tree

    if not _root_mounted(path) and mounts.detach(path):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise LauncherError(ExitCode.OCI_REAP_FAILED,
                                f"cannot remove {path}: {os_error_text(err)}") from None
        return
    binds.release(path)
    try:
        fd = os.open(path, tree.DIR_READ_FLAGS)
    except FileNotFoundError:
        return
    errors = []
    try:
        tree.remove_below(fd, path, errors, _open_subdir, one_mount=True)
    finally:
        os.close(fd)
    if not errors:
        try:
            os.rmdir(path)
        except OSError as err:
            errors.append(f"cannot remove {path}: {os_error_text(err)}")
    if errors:
        raise LauncherError(ExitCode.OCI_REAP_FAILED, errors[0])


def _root_mounted(path: str) -> bool:
    """Whether the container's root is still mounted (an undo that could not unmount it):
    then its directory is not detached, and the walk reports the root it cannot enter."""
    try:
        return os.lstat(f"{path}/rootfs").st_dev != os.lstat(path).st_dev
    except OSError:
        return False


def _open_subdir(parent_fd: int, name: str, where: str):
    from ..paths import tree

    try:
        fd = os.open(name, tree.DIR_READ_FLAGS, dir_fd=parent_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return fd, os.fstat(fd)


def mount_layers_verb(launch, config_path: str) -> int:
    """`mount-layers <oci-config.json>`: mount the container's root and print its path."""
    from .request import Request

    request = Request(launch, config_path)
    try:
        request.open_layers()
        run_root = layers.open_run_root(launch.config.run_root)
        _note(request)
        with Undo(f"mount the root of {request.spec.container_id}") as undo:
            rootfs = mount_rootfs(request, run_root, undo)
    finally:
        request.close()
    print(rootfs)
    return ExitCode.OK


def run_oci_container(launch, workdir: str, config_path: str, artifacts: str) -> int:
    """`runc-run <workdir> <oci-config.json> <artifacts>`; Storm passes its link
    <workdir>/artifacts as the third argument."""
    from . import launch as runc_launch
    from ..classic.dirs import prepare_workdir
    from .request import Request

    from ..privileged.spawn import require_root_program

    require_root_program(launch.config.runc)
    request = Request(launch, config_path, workdir)
    try:
        _note(request)
        request.check_worker_files(artifacts)
        request.check_seccomp_policy()
        request.check_runc_state()
        request.check_cgroup()
        request.open_layers()
        run_root = layers.open_run_root(launch.config.run_root)
        prepare_workdir(launch, request.spec.workdir)
        _same_workdir(launch, request)
        request.open_binds()
        with Undo(f"launch container {request.spec.container_id}") as undo:
            outputs = runc_launch.open_runc_outputs(launch, request)
            rootfs = mount_rootfs(request, run_root, undo)
            read_only = ["ro" in mount.options for mount in request.spec.mounts]
            request.bind_sources = binds.stage(request.container_dir, request.bind_fds,
                                               read_only, undo)
            runc_launch.write_configs(launch, request, rootfs)
            undo.append(lambda: _delete_container(launch, request.spec))
            runc_launch.runc_run(launch, request, outputs)
            runc_launch.publish_pid(launch, request)
    finally:
        request.close()
    return ExitCode.OK


def _note(request) -> None:
    from ..core import audit

    audit.note(container=request.spec.container_id, layers=request.spec.layers)


def _same_workdir(launch, request) -> None:
    """prepare_workdir locates the workdir again by its path: it must still be the
    directory everything was checked in (the supervisor owns workers/ and could rename)."""
    from ..classic.dirs import locate_confined
    from ..paths import resolve

    entry = locate_confined(launch, request.spec.workdir)
    try:
        if entry.st is None or not resolve.same_file(entry.st, os.fstat(request.workdir_fd)):
            raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS,
                                f"workdir {request.spec.workdir} changed while it was checked")
    finally:
        entry.close()


def _delete_container(launch, spec) -> None:
    """Undo of `runc run`: runc's container and its cgroup."""
    from . import cgroups, launch as runc_launch

    try:
        runc_launch.runc_delete(launch, spec.container_id)
    finally:
        cgroups.remove(spec.cgroups_path)


def reap_oci_container(launch, container_id: str, keep_text: str) -> int:
    """`reap-layers <container-id> <keep-count>`: everything of the container goes (runc's
    container, its cgroup, its overlay and run directory); layers nobody uses are unmounted
    beyond the keep count. An unknown id is a clean no-op."""
    from . import cgroups, runc_state
    from .spec_rules import DEFAULT_CGROUP_PARENT, valid_container_id

    if not valid_container_id(container_id):
        raise LauncherError(ExitCode.INVALID_CONTAINER_NAME,
                            f"invalid container id {container_id!r}: expected <port>-<uuid>")
    if not keep_text.isdigit() or not keep_text.isascii() or len(keep_text) > 9:
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                            f"invalid layer keep count {keep_text!r}")
    from ..core import audit
    from ..launch import load_policy

    audit.note(container=container_id)
    run_root = layers.open_run_root(launch.config.run_root)
    # Of the policy, a reap uses only the cgroup parent: its paths are not resolved (~1 ms).
    policy = load_policy(launch.config, resolve_paths=False)
    parent = (policy.cgroup_parent or DEFAULT_CGROUP_PARENT).rstrip("/")
    cgroups_path = f"{parent}/{container_id}"
    forgotten = runc_state.forget_stopped(container_id, cgroups_path)
    if forgotten == runc_state.NEEDS_RUNC:
        from . import launch as runc_launch

        runc_launch.runc_delete(launch, container_id)
    problems = [] if forgotten == runc_state.FORGOTTEN else cgroups.remove(cgroups_path)
    cdir = f"{run_root}/{container_id}"
    try:  # the container's own directory: no other launch or reap touches it
        mounts.unmount(f"{cdir}/rootfs")
        _remove_tree(cdir)
    except OSError as err:
        raise LauncherError(ExitCode.OCI_REAP_FAILED,
                            f"cannot remove container {container_id}: {os_error_text(err)}") from None
    with layers.LayerLock(run_root, launch.config.lock_timeout, ExitCode.OCI_REAP_FAILED,
                          shared=True) as lock:
        problems += layers.reap_layers(run_root, int(keep_text), lock)
    if problems:
        raise LauncherError(ExitCode.OCI_REAP_FAILED, problems[0])
    return ExitCode.OK
