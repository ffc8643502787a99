"""The host files a request names besides the worker's own: its layer files and its bind
sources, each opened by descriptor with the supervisor account's rights and judged on that
descriptor, before anything is mounted."""

import posix as os
import stat

from ..core import identity
from ..core.errors import LauncherError, os_error_text
from ..paths import resolve
from .spec_rules import refuse


def open_layers(launch, paths) -> list:
    """An O_RDONLY fd of every layer file (see `_layer`), in order; all or none."""
    store = _layer_store(launch)
    fds = []
    try:
        for index, path in enumerate(paths):
            fds.append(_layer(launch, path, store, f"$.layers[{index}].path"))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        if store is not None:
            os.close(store[0])
    return fds


def _layer_store(launch):
    """(fd, path) of the layer store, or None without a policy."""
    policy = launch.policy
    if not policy.configured:
        return None
    if not policy.layer_store:
        raise refuse("$.layers", f"the policy {policy.source} names no layer store "
                                 f"(storm.oci.resources.local.dir or storm.local.dir)")
    try:
        with identity.acting_as(launch.caller):
            return resolve.open_path(policy.layer_store, resolve.DIR_PATH_FLAGS)
    except LauncherError as err:
        raise refuse("$.layers", f"layer store: {err.message}") from None


def _layer(launch, path: str, store, where: str) -> int:
    """A layer file Storm's localiser made: `<store>/layers/<name>` (HdfsOciResourcesLocalizer),
    the store being the policy's storm.oci.resources.local.dir (Storm's default
    <storm.local.dir>/supervisor/oci-resources). It is opened beneath the store's descriptor
    (no symlink, no '..') with the supervisor's rights, and must be a regular file of root's
    or the supervisor's: no other account chooses what the kernel parses as a squashfs
    image. Without a policy the rule is the same, the store being whatever directory holds
    the `layers` directory the file is in. Only O_PATH is used until the file is known to be
    a regular file, so a device or a fifo is never opened."""
    caller = launch.caller
    parent, name = path.rsplit("/", 1)
    try:
        with identity.acting_as(caller):
            if store is None:
                if parent.rsplit("/", 1)[-1] != "layers":
                    raise refuse(where, f"{path} is not in a layers directory (a layer store's "
                                        f"layers/<name>)")
                fd, _ = resolve.open_path(path, os.O_PATH)
            else:
                if resolve.canonical(parent) != f"{store[1]}/layers":
                    raise refuse(where, f"{path} is not in the layer store's directory "
                                        f"{store[1]}/layers")
                fd = resolve.open_beneath(store[0], f"layers/{name}", os.O_PATH, path)
    except LauncherError as err:
        if err.message.startswith("oci-config.json"):
            raise
        raise refuse(where, err.message) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(where, f"{path} is not a regular file")
        if st.st_uid not in (0, caller.uid):
            raise refuse(where, f"{path} belongs to uid {st.st_uid}, not to root or the "
                                f"supervisor account")
        with identity.acting_as(caller):  # the open file itself, for reading
            try:
                return os.open(resolve.fd_path(fd), os.O_RDONLY | os.O_CLOEXEC)
            except OSError as err:
                raise refuse(where, f"cannot read {path}: {os_error_text(err)}") from None
    finally:
        os.close(fd)


def bind_source(launch, mount, index: int) -> int:
    """The host object to bind, as an O_PATH fd (binds.stage pins it for runc): see
    paths.sources, located with the supervisor account's rights."""
    from ..paths.sources import open_bind_source

    try:
        fd, _ = open_bind_source(launch.policy, launch.caller, mount.source, mount.writable)
    except LauncherError as err:
        refused = refuse(f"$.ociRuntimeConfig.mounts[{index}].source", err.message)
        refused.outcome = err.outcome
        raise refused from None
    return fd
