"""A launch request: oci-config.json validated (spec.py), then every host object it names
resolved to a file descriptor and checked, before anything is mounted, attached, created or
started. The launch then acts only through these descriptors:

- the workdir (Storm's workers/<worker id>), located with the supervisor's rights;
- the container script, a regular file of the supervisor's directly in the workdir;
- the worker's artifacts directory, reached through Storm's `workers/<id>/artifacts` link
  (or named directly): see `_artifacts`;
- the directory of the pid file: the artifacts directory or the workdir;
- the layer files, opened beneath the layer store, and the bind sources (sources.py);
- the seccomp profile the policy requires, the container's cgroup and runc's state.
"""

import posix as os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, by_policy, os_error_text
from ..core.policy import is_within, normalize
from ..paths import files, resolve
from . import spec as oci_spec
from .spec_rules import refuse

RUNC_STATE_ROOT = "/run/runc"  # runc's --root default for root, which the launcher uses
PID_DIRECTORY_RULE = "must be in the worker's artifacts directory or the workdir"


def _deny(message: str) -> LauncherError:
    return LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, message)


class Request:
    """The validated spec and the descriptors of what it names (closed by `close`)."""

    def __init__(self, launch, config_path: str, workdir: str = None):
        self.launch = launch
        self.fds = []
        self.workdir_fd = self.artifacts_fd = self.pid_dir_fd = None
        self.artifacts_path = self.pid_name = self.container_dir = None
        self.layer_fds, self.bind_fds, self.bind_sources = [], [], None
        normal = None
        if workdir is not None:
            normal = normalize(workdir)
            if normal is None or normal == "/":
                raise _deny(f"workdir {workdir!r} is not an absolute path without '.' or '..'")
        policy = launch.policy
        expect = oci_spec.Expect(launch.user.name, normal,
                                 policy.cgroup_parent or oci_spec.DEFAULT_CGROUP_PARENT,
                                 policy.cgroup_root)
        data = files.read_as_caller(config_path, oci_spec.MAX_BYTES)
        self.spec = oci_spec.parse(oci_spec.decode(data), expect)

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds, self.layer_fds, self.bind_fds = [], [], []

    # --- the worker's own files -----------------------------------------------------------
    def check_worker_files(self, artifacts_arg: str) -> None:
        """Workdir, script, artifacts directory and pid file, by descriptor (run-oci-container,
        before the workdir is set up: the script and link must still be the supervisor's)."""
        from ..classic.dirs import locate_confined

        spec = self.spec
        entry = locate_confined(self.launch, spec.workdir, owned=True)
        try:
            if entry.st is None or not stat.S_ISDIR(entry.st.st_mode):
                raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH,
                                    f"workdir {spec.workdir} is not a directory")
            self.workdir_fd = self._keep(resolve.open_entry(entry, resolve.DIR_PATH_FLAGS))
        finally:
            entry.close()
        self._check_script()
        self._artifacts(artifacts_arg)
        self._pid_file(artifacts_arg)

    def _check_script(self) -> None:
        # RuncLibContainerManager writes it (ServerUtils.writeScript) as the supervisor; the
        # C launcher opened it as the supervisor to test it is readable: so do we, once it
        # is known (on an O_PATH descriptor) to be a regular file of the supervisor's.
        spec, caller = self.spec, self.launch.caller
        where, name = "$.containerScriptPath", spec.script.rsplit("/", 1)[1]
        try:
            with identity.acting_as(caller):
                fd = resolve.open_beneath(self.workdir_fd, name, os.O_PATH, spec.script)
        except LauncherError as err:
            raise refuse(where, err.message) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise refuse(where, f"{spec.script} is not a regular file")
            if st.st_uid != caller.uid:
                raise refuse(where, f"{spec.script} belongs to uid {st.st_uid}, not to the "
                                    f"supervisor account")
            with identity.acting_as(caller):
                os.close(os.open(resolve.fd_path(fd), os.O_RDONLY | os.O_CLOEXEC))
        except OSError as err:
            raise refuse(where, f"cannot read {spec.script}: {os_error_text(err)}") from None
        finally:
            os.close(fd)

    def _artifacts(self, argument: str) -> None:
        """The worker's artifacts directory, `<artifacts root>/<topology id>/<port>`, owned by
        the user (as artifacts-dir leaves it). Storm passes its link `<workdir>/artifacts`
        (Container.createArtifactsLink, an absolute target): the link must be the supervisor
        account's, directly in the workdir; it is read on the workdir descriptor and its
        target resolved by descriptor (paths.resolve). The directory may also be named
        directly. Anything else is refused, naming the link and its target."""
        spec = self.spec
        named = normalize(argument)
        if named is None:
            raise _deny(f"artifacts directory {argument!r} is not an absolute path without "
                        f"'.' or '..'")
        parent, name = named.rsplit("/", 1)
        what = f"artifacts directory {named}"
        target = named
        if parent == spec.workdir:
            target = self._read_link(name, named)
            what = f"artifacts link {named} -> {target}"
        with identity.acting_as(self.launch.caller):
            try:
                entry = resolve.locate(target)
            except LauncherError as err:
                raise _deny(f"{what}: {err.message}") from None
        try:
            if entry.st is None or not stat.S_ISDIR(entry.st.st_mode):
                raise _deny(f"{what}: not a directory")
            fd = self._keep(self._open_artifacts(entry, what))
        finally:
            entry.close()
        st = os.fstat(fd)
        if st.st_uid != self.launch.user.identity.uid:
            raise _deny(f"{what}: belongs to uid {st.st_uid}, not to {self.launch.user.name} "
                        f"(artifacts-dir gives it to the user)")
        self.artifacts_fd, self.artifacts_path = fd, entry.path

    def _read_link(self, name: str, named: str) -> str:
        """The target of the link `name` in the workdir, read on the link's own descriptor
        (O_PATH|O_NOFOLLOW), so its owner and its target are the same link's."""
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.workdir_fd)
        except OSError as err:
            raise _deny(f"artifacts link {named}: {os_error_text(err)}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISLNK(st.st_mode):
                raise _deny(f"artifacts link {named}: not a symlink (Storm's link to the "
                            f"worker's artifacts directory)")
            target = os.readlink("", dir_fd=fd)
        except OSError as err:
            raise _deny(f"artifacts link {named}: {os_error_text(err)}") from None
        finally:
            os.close(fd)
        if st.st_uid != self.launch.caller.uid:
            raise _deny(f"artifacts link {named} -> {target}: made by uid {st.st_uid}, not by "
                        f"the supervisor account")
        if normalize(target) is None:
            raise _deny(f"artifacts link {named} -> {target}: the target is not an absolute "
                        f"path without '.' or '..'")
        return normalize(target)

    def _open_artifacts(self, entry, what: str) -> int:
        """The located directory, opened by descriptor and placed: exactly two levels below
        the policy's artifacts root (opened beneath the root's descriptor), its name the
        container's port. Without a policy: any directory not protected."""
        policy, port = self.launch.policy, str(self.spec.port)
        if entry.path.rsplit("/", 1)[1] != port:
            raise _deny(f"{what}: not the directory of port {port}")
        root = policy.artifacts_dir
        if root is None:
            if policy.configured:
                raise _deny(f"{what}: the policy {policy.source} names no artifacts root "
                            f"(storm.workers.artifacts.dir, storm.log.dir or storm.home)")
            refusal = policy.directory_refusal(entry.path)
            if refusal:
                raise by_policy(_deny(f"{what}: {refusal}"))
            return resolve.open_entry(entry, resolve.DIR_PATH_FLAGS)
        relative = entry.path[len(root) + 1:] if is_within(entry.path, root) else ""
        if len(relative.split("/")) != 2 or not relative:
            raise _deny(f"{what}: not <topology id>/<port> below the artifacts root {root}")
        with identity.acting_as(self.launch.caller):
            try:
                root_fd, _ = resolve.open_path(root, resolve.DIR_PATH_FLAGS)
                try:
                    fd = resolve.open_beneath(root_fd, relative, resolve.DIR_PATH_FLAGS, what)
                finally:
                    os.close(root_fd)
            except LauncherError as err:
                raise _deny(err.message if what in err.message else f"{what}: {err.message}") \
                    from None
        if not resolve.same_file(os.fstat(fd), entry.st):
            os.close(fd)
            raise _deny(f"{what}: changed while it was checked")
        return fd

    def _pid_file(self, artifacts_arg: str) -> None:
        """Storm's pidFile is <workdir>/artifacts/container-<worker id>.pid (through the link);
        runc's pid is copied there by the user at the end. It must be in the artifacts
        directory (as named through the link, or by its own path) or in the workdir, must not
        exist (as the C launcher required), and may not take a name the launch writes."""
        spec = self.spec
        parent, name = spec.pid_file.rsplit("/", 1)
        directories = {spec.workdir: self.workdir_fd, normalize(artifacts_arg): self.artifacts_fd,
                       self.artifacts_path: self.artifacts_fd}
        if parent not in directories:
            raise refuse("$.pidFile", f"{spec.pid_file} {PID_DIRECTORY_RULE}")
        cid = spec.container_id
        reserved = {"config.json", "oci-config.json", spec.script.rsplit("/", 1)[1], "tmp",
                    f"runc-{cid}.out", f"runc-{cid}.err", artifacts_arg.rsplit("/", 1)[1]}
        if name in reserved:
            raise refuse("$.pidFile", f"{spec.pid_file} is a file the launch itself uses")
        fd = directories[parent]
        try:  # one name in a directory held open, no symlink followed: safe as root
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            self.pid_dir_fd, self.pid_name = fd, name
            return
        except OSError as err:
            raise refuse("$.pidFile", f"cannot check {spec.pid_file}: {os_error_text(err)}") \
                from None
        raise refuse("$.pidFile", f"{spec.pid_file} already exists")

    # --- policy, cgroup, runc ---------------------------------------------------------------
    def check_seccomp_policy(self) -> None:
        """When the policy names storm.oci.seccomp.profile, the request must carry exactly
        that profile (as parsed JSON: Storm embeds the file's bytes verbatim). The file is
        read by descriptor, root-owned all the way up (paths.trust)."""
        from ..core.jsontext import JsonError, parse
        from ..paths import trust

        profile = self.launch.policy.seccomp_profile
        if not profile:
            return
        where = "$.ociRuntimeConfig.linux.seccomp"
        resolved, text = trust.read_root_file(profile, "seccomp profile", oci_spec.MAX_BYTES,
                                              ExitCode.INVALID_CONFIG_FILE)
        try:
            wanted = parse(text, oci_spec.MAX_DEPTH)
        except JsonError as err:
            raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                                f"seccomp profile {resolved} is not valid JSON: {err}") from None
        if self.spec.seccomp is None:
            raise by_policy(refuse(where, f"is missing; the policy requires the profile "
                                          f"{resolved}"))
        if self.spec.seccomp != wanted:
            raise by_policy(refuse(where, f"is not the profile {resolved} the policy requires"))

    def check_runc_state(self) -> None:
        """runc must not know the container yet: a failed launch deletes what it created,
        and must never delete someone else's container of the same name."""
        cid = self.spec.container_id
        try:
            os.lstat(f"{RUNC_STATE_ROOT}/{cid}")  # root's own directory (runc's state)
        except FileNotFoundError:
            return
        raise refuse("$.containerId", f"runc already has a container {cid}")

    def check_cgroup(self) -> None:
        from . import cgroups

        cgroups.require_absent(self.spec.cgroups_path, "$.ociRuntimeConfig.linux.cgroupsPath")

    # --- layers and binds (sources.py) ---------------------------------------------------------
    def open_layers(self) -> list:
        """(path, fd) of every layer, in order, each opened beneath the layer store."""
        from . import sources

        if not self.layer_fds:
            for fd in sources.open_layers(self.launch, self.spec.layers):
                self.layer_fds.append(self._keep(fd))
        return list(zip(self.spec.layers, self.layer_fds))

    def open_binds(self) -> None:
        """Every bind source located and allowed (after the workdir set-up, which creates
        workdir/tmp, Storm's /tmp)."""
        from . import sources

        for index, mount in enumerate(self.spec.mounts):
            self.bind_fds.append(self._keep(sources.bind_source(self.launch, mount, index)))
