"""Storm's `signal <pid> <signal>`: signal a worker as the user who owns it.

As Storm: the process group -pid if it exists, else the pid alone; signal 0 probes liveness.
Root is dropped for good first (real ids too): the kernel lets a sender signal a process
whose real or saved uid equals the sender's real OR effective uid, so switching only the
effective uid would leave root's processes reachable through the real uid 0.
"""

import posix as os

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text

_SPACE = " \t\n\v\f\r"
INT_MAX = 2**31 - 1


def parse_c_long(text: str) -> "int | None":
    """strtol(text, &end, 10) with *end == '\\0' required, as Storm checks its arguments:
    leading white space and one sign allowed, then at least one digit and nothing else."""
    body = text.lstrip(_SPACE)
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not digits or not all("0" <= char <= "9" for char in digits):
        return None
    return int(body)


def signal(launch, pid_text: str, signal_text: str) -> int:
    pid = parse_c_long(pid_text)
    if pid is None:
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                            f"illegal argument for container pid {pid_text!r}")
    number = parse_c_long(signal_text)
    if number is None:
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                            f"illegal argument for signal {signal_text!r}")
    if not 0 < pid <= INT_MAX:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID, f"invalid container pid {pid_text}")
    identity.become(launch.user.identity, then_exec=False)
    return send(pid, number)


def send(pid: int, number: int) -> int:
    """Signal group -pid if it exists, else pid. No such process: exit 9; refused: exit 8.
    Never kill(-1, ...): for pid 1 that would not mean "group 1" but every process the user
    may signal, so pid 1 is only ever the process 1 (which the user may not signal)."""
    target = -pid
    try:
        if pid == 1:
            raise ProcessLookupError
        os.kill(-pid, 0)
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                                f"no process or process group {pid}") from None
        except OSError as err:
            raise LauncherError(ExitCode.UNABLE_TO_SIGNAL_CONTAINER,
                                f"cannot signal process {pid}: {os_error_text(err)}") from None
        target = pid
    what = f"process group {pid}" if target < 0 else f"process {pid}"
    if not 0 <= number <= INT_MAX:
        raise LauncherError(ExitCode.UNABLE_TO_SIGNAL_CONTAINER,
                            f"cannot signal {what} with {number}: Invalid argument")
    try:
        os.kill(target, number)
    except ProcessLookupError:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID, f"{what} no longer exists") from None
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_SIGNAL_CONTAINER,
                            f"cannot signal {what} with {number}: {os_error_text(err)}") from None
    return ExitCode.OK
