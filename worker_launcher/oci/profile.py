"""Storm's `profile-oci-container <pid> <command-file>`: the profiler in a runc worker."""

from ..classic.profiler import enter
from ..core.errors import ExitCode, LauncherError


def profile_oci_container(launch, pid: str, command_file: str) -> int:
    if not (pid.isdigit() and pid.isascii() and len(pid) <= 10 and str(int(pid)) == pid):
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID, f"invalid container pid {pid!r}")
    return enter(launch, int(pid), command_file)
