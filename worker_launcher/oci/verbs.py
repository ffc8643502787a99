"""mount-layers, runc-run (Storm: run-oci-container) and reap-layers (reap-oci-container).

Order of a launch: read and validate everything with the supervisor account's rights;
then, under the layer lock, mount layers and the container's overlay; write config.json;
run `runc run -d`. Every step after the first mount registers its undo, and a failure runs
them all, so a failed launch leaves no mount, loop device or directory behind.
"""

import os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text
from ..paths import files, resolve
from ..privileged import mounts
from . import binds, layers, spec as oci_spec


class Request:
    """A validated request: the spec, its layer fds and resolved bind sources."""

    def __init__(self, launch, config_path: str):
        self.launch = launch
        data = files.read_as_caller(config_path, oci_spec.MAX_BYTES)
        self.spec = oci_spec.parse(oci_spec.decode(data), launch.user.name)
        _check_cgroup(launch.policy, self.spec.cgroups_path)
        self.layer_fds, self.bind_fds = [], []
        self.run_root = self.container_dir = self.bind_sources = None

    def resolve(self, binds: bool = True) -> "Request":
        """The host side: the run root, and every bind source located and allowed (not for
        mount-layers, which starts no container). Done after the workdir set-up, which
        creates workdir/tmp (Storm binds it as /tmp)."""
        launch = self.launch
        self.run_root = _checked_run_root(launch.config.run_root)
        self.container_dir = f"{self.run_root}/{self.spec.container_id}"
        if binds:
            for index, mount in enumerate(self.spec.mounts):
                self.bind_fds.append(_bind_source(launch, mount, index))
        return self

    def open_layers(self) -> list:
        for index, path in enumerate(self.spec.layers):
            try:
                with identity.acting_as(self.launch.caller):
                    fd, found = resolve.open_path(path, os.O_RDONLY)
                if found != path:
                    os.close(fd)
                    raise LauncherError(ExitCode.INVALID_CONFIG_FILE, f"{path} is a symlink")
            except LauncherError as err:
                raise oci_spec.refuse(f"$.layers[{index}].path", err.message) from None
            self.layer_fds.append(fd)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise oci_spec.refuse(f"$.layers[{index}].path", f"{path} is not a regular file")
        return list(zip(self.spec.layers, self.layer_fds))

    def close(self) -> None:
        for fd in self.layer_fds + self.bind_fds:
            os.close(fd)
        self.layer_fds, self.bind_fds = [], []


def _checked_run_root(run_root: str) -> str:
    from ..paths.trust import chain_problem

    if any(char in run_root for char in ",:\\ "):
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                            f"worker.launcher.oci.run-root {run_root} may not contain , : \\ or space")
    if not os.path.isdir(run_root):
        layers.make_dir(run_root, 0o755)
    problem = chain_problem(run_root)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE, f"run root {run_root} is not safe: {problem}")
    return os.path.realpath(run_root)


def _bind_source(launch, mount, index: int) -> int:
    """The host object to bind, as an O_PATH fd (binds.stage pins it for runc): located with
    the supervisor's rights (trusted root symlinks only), allowed by the policy for the
    requested mode."""
    where = f"$.ociRuntimeConfig.mounts[{index}].source"
    policy = launch.policy
    refusal = policy.bind_refusal(mount.source, mount.writable)  # as named: the clearest line
    if refusal:
        raise oci_spec.refuse(where, refusal)
    # Storm binds the cgroup root (a pseudo file system) read-only: only that one, as named.
    pseudo_ok = not mount.writable and mount.source == policy.cgroup_root
    try:
        with identity.acting_as(launch.caller):
            entry = resolve.locate(mount.source, pseudo_ok=pseudo_ok)
    except LauncherError as err:
        raise oci_spec.refuse(where, err.message) from None
    try:
        if entry.st is None:
            raise oci_spec.refuse(where, f"{mount.source} does not exist")
        if stat.S_ISLNK(entry.st.st_mode):
            raise oci_spec.refuse(where, f"{mount.source} is a symlink")
        refusal = policy.bind_refusal(entry.path, mount.writable)  # as found
        if refusal:
            raise oci_spec.refuse(where, refusal)
        with identity.acting_as(launch.caller):
            return resolve.open_entry(entry, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    finally:
        entry.close()


def _check_cgroup(policy, cgroups_path: str) -> None:
    from ..core.policy import is_within

    parent = policy.cgroup_parent
    if parent and (cgroups_path == parent or not is_within(cgroups_path, parent)):
        raise oci_spec.refuse("$.ociRuntimeConfig.linux.cgroupsPath",
                              f"{cgroups_path} is not below the cgroup parent {parent}")


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
        while self:
            try:
                self.pop()()
            except (OSError, LauncherError):
                pass  # keep undoing; reap-layers cleans what is left
        if issubclass(kind, OSError):
            raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                f"cannot {self.what}: {os_error_text(error)}") from None
        return False


def mount_rootfs(request: Request, undo: list) -> str:
    """Layers and the container's overlay; returns the rootfs path."""
    cdir = request.container_dir
    with layers.LayerLock(request.run_root):
        layer_dirs = layers.mount_layers(request.run_root, request.open_layers(), undo)
        if not layers.make_dir(cdir, 0o700):
            raise LauncherError(ExitCode.OCI_RUN_FAILED,
                                f"container {request.spec.container_id} already exists in {cdir}")
        undo.append(lambda: _remove_tree(cdir))
        for name, mode in (("rootfs", 0o755), ("upper", 0o755), ("work", 0o700)):
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
    """A container's run directory: its staged binds detached first (raises if one stays,
    so the user's files behind it are never deleted), then the rest, by unlinkat relative
    to directory fds: no symlink followed, no other file system (a root still mounted)
    entered."""
    from ..paths import tree

    binds.release(path)
    try:
        fd = os.open(path, tree.DIR_READ_FLAGS)
    except FileNotFoundError:
        return
    errors = []
    try:
        tree.remove_below(fd, path, errors, _open_subdir)
    finally:
        os.close(fd)
    if not errors:
        try:
            os.rmdir(path)
        except OSError as err:
            errors.append(f"cannot remove {path}: {os_error_text(err)}")
    if errors:
        raise LauncherError(ExitCode.OCI_REAP_FAILED, errors[0])


def _open_subdir(parent_fd: int, name: str, where: str):
    from ..paths import tree

    try:
        fd = os.open(name, tree.DIR_READ_FLAGS, dir_fd=parent_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return fd, os.fstat(fd)


def mount_layers_verb(launch, config_path: str) -> int:
    """`mount-layers <oci-config.json>`: mount the container's root and print its path."""
    request = Request(launch, config_path).resolve(binds=False)
    try:
        with Undo(f"mount the root of {request.spec.container_id}") as undo:
            rootfs = mount_rootfs(request, undo)
    finally:
        request.close()
    print(rootfs)
    return ExitCode.OK


def run_oci_container(launch, workdir: str, config_path: str, artifacts_dir: str) -> int:
    """`runc-run <workdir> <oci-config.json> <artifacts-dir>`."""
    from . import launch as runc_launch
    from ..classic.dirs import prepare_workdir

    request = Request(launch, config_path)
    prepare_workdir(launch, workdir)
    request.resolve()
    try:
        with Undo(f"launch container {request.spec.container_id}") as undo:
            runc_launch.check_pid_file_absent(launch, request.spec.pid_file)
            outputs = runc_launch.open_runc_outputs(launch, artifacts_dir,
                                                    request.spec.container_id)
            rootfs = mount_rootfs(request, undo)
            request.bind_sources = binds.stage(request.container_dir, request.bind_fds, undo)
            request.close()
            runc_launch.write_configs(launch, request, rootfs, workdir)
            undo.append(lambda: runc_launch.runc_delete(launch, request.spec.container_id))
            runc_launch.runc_run(launch, request, outputs)
            runc_launch.publish_pid(launch, request)
    finally:
        request.close()
    return ExitCode.OK


def reap_oci_container(launch, container_id: str, keep_text: str) -> int:
    """`reap-layers <container-id> <keep-count>`: everything of the container goes; layers
    nobody uses are unmounted beyond the keep count. An unknown id is a clean no-op."""
    from . import launch as runc_launch

    if not oci_spec.valid_container_id(container_id):
        raise LauncherError(ExitCode.INVALID_CONTAINER_NAME,
                            f"invalid container id {container_id!r}: expected <port>-<uuid>")
    if not keep_text.isdigit() or not keep_text.isascii() or len(keep_text) > 9:
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                            f"invalid layer keep count {keep_text!r}")
    run_root = _checked_run_root(launch.config.run_root)
    runc_launch.runc_delete(launch, container_id)
    cdir = f"{run_root}/{container_id}"
    with layers.LayerLock(run_root):
        try:
            mounts.unmount(f"{cdir}/rootfs")
            _remove_tree(cdir)
        except OSError as err:
            raise LauncherError(ExitCode.OCI_REAP_FAILED,
                                f"cannot remove container {container_id}: {os_error_text(err)}") from None
        problems = layers.reap_layers(run_root, int(keep_text))
    if problems:
        raise LauncherError(ExitCode.OCI_REAP_FAILED, problems[0])
    return ExitCode.OK
