"""Exit codes (Storm's numbers, frozen) and the one error type of the launcher.

Plain int constants rather than an IntEnum: importing enum costs every invocation ~3 ms.
"""


class ExitCode:
    OK = 0
    INVALID_ARGUMENT_NUMBER = 1
    INVALID_USER_NAME = 2
    INVALID_COMMAND_PROVIDED = 3
    INVALID_NM_ROOT_DIRS = 5
    SETUID_OPER_FAILED = 6
    UNABLE_TO_EXECUTE_CONTAINER_SCRIPT = 7
    UNABLE_TO_SIGNAL_CONTAINER = 8
    INVALID_CONTAINER_PID = 9
    UNABLE_TO_STAT_FILE = 12
    INITIALIZE_USER_FAILED = 20
    UNABLE_TO_BUILD_PATH = 21
    INVALID_CONTAINER_EXEC_PERMISSIONS = 22
    INVALID_CONFIG_FILE = 24
    SETSID_OPER_FAILED = 25
    WRITE_PIDFILE_FAILED = 26
    DOCKER_RUN_FAILED = 29
    CANNOT_OPEN_FILE = 30
    CANNOT_READ_FILE = 31
    DOCKER_COMMAND_REJECTED = 39
    INVALID_DOCKER_IMAGE = 40
    INVALID_CONTAINER_NAME = 41
    CANNOT_CHANGE_USER = 43
    OCI_RUN_FAILED = 44
    OCI_REAP_FAILED = 45


# The outcome classes of the audit log: a request refused as invalid, refused by the policy
# (well-formed, but not allowed), or accepted and then failed.
REFUSED, REFUSED_BY_POLICY, FAILED = "refused", "refused(policy)", "failed"
# Exit codes that mean the request was refused (input, user, command, config or binary);
# every other code of a LauncherError means it failed.
REFUSED_CODES = frozenset((
    ExitCode.INVALID_ARGUMENT_NUMBER, ExitCode.INVALID_USER_NAME,
    ExitCode.INVALID_COMMAND_PROVIDED, ExitCode.INVALID_NM_ROOT_DIRS,
    ExitCode.INVALID_CONTAINER_PID, ExitCode.UNABLE_TO_BUILD_PATH,
    ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS, ExitCode.INVALID_CONFIG_FILE,
    ExitCode.CANNOT_OPEN_FILE, ExitCode.CANNOT_READ_FILE, ExitCode.DOCKER_COMMAND_REJECTED,
    ExitCode.INVALID_DOCKER_IMAGE, ExitCode.INVALID_CONTAINER_NAME))


class LauncherError(Exception):
    """A refusal or failure: one line for the operator and the exit code Storm expects.
    `outcome` is its class in the audit log; None: derived from the code (outcome_of)."""

    def __init__(self, code: int, message: str, outcome: str = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.outcome = outcome

    def __str__(self) -> str:
        return self.message


def by_policy(error: LauncherError) -> LauncherError:
    """Mark `error` as a policy refusal (`raise by_policy(LauncherError(...))`)."""
    error.outcome = REFUSED_BY_POLICY
    return error


def outcome_of(error: LauncherError) -> str:
    if error.outcome:
        return error.outcome
    return REFUSED if error.code in REFUSED_CODES else FAILED


def os_error_text(err: OSError) -> str:
    """`strerror` of an OSError without Python's '[Errno N]' decoration."""
    return err.strerror or str(err)


def exit_code_names() -> dict:
    """name -> number of every exit code, for documentation and the pinning test."""
    return {name: value for name, value in vars(ExitCode).items() if name.isupper()}


MAX_MESSAGE_CHARS = 1000


def one_line(message: str) -> str:
    """`message` made safe for one line of the supervisor's log: control and line-breaking
    characters (which caller-chosen paths may hold) escaped, at most MAX_MESSAGE_CHARS."""
    text = "".join(char if char.isprintable() or char == " " else
                   char.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for char in str(message))
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + f"... ({len(text) - MAX_MESSAGE_CHARS} more characters)"
    return text
