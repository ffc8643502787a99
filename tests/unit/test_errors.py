"""The exit codes (a contract with Storm) and the one-line messages."""

from worker_launcher.core.errors import MAX_MESSAGE_CHARS, exit_code_names, one_line

# Storm's worker-launcher.h numbers plus the container ones; these are a contract.
STORM_CODES = {
    "INVALID_ARGUMENT_NUMBER": 1, "INVALID_USER_NAME": 2, "INVALID_COMMAND_PROVIDED": 3,
    "INVALID_NM_ROOT_DIRS": 5, "SETUID_OPER_FAILED": 6, "UNABLE_TO_EXECUTE_CONTAINER_SCRIPT": 7,
    "UNABLE_TO_SIGNAL_CONTAINER": 8, "INVALID_CONTAINER_PID": 9, "UNABLE_TO_STAT_FILE": 12,
    "INITIALIZE_USER_FAILED": 20, "UNABLE_TO_BUILD_PATH": 21,
    "INVALID_CONTAINER_EXEC_PERMISSIONS": 22, "INVALID_CONFIG_FILE": 24, "SETSID_OPER_FAILED": 25,
    "WRITE_PIDFILE_FAILED": 26, "DOCKER_RUN_FAILED": 29, "CANNOT_OPEN_FILE": 30,
    "CANNOT_READ_FILE": 31, "DOCKER_COMMAND_REJECTED": 39, "INVALID_DOCKER_IMAGE": 40,
    "INVALID_CONTAINER_NAME": 41, "CANNOT_CHANGE_USER": 43, "OCI_RUN_FAILED": 44,
    "OCI_REAP_FAILED": 45,
}


def test_exit_codes_are_frozen():
    assert exit_code_names() == dict(STORM_CODES, OK=0)


def test_one_line_escapes_line_breaks_and_terminal_controls():
    assert one_line("a\nb\rc\x1b[2Jd\u2028e") == "a\\nb\\rc\\x1b[2Jd\\u2028e"
    assert one_line("/storm/local/wid: No such file") == "/storm/local/wid: No such file"


def test_one_line_is_bounded():
    line = one_line("x" * 200_000)
    assert len(line) < MAX_MESSAGE_CHARS + 40 and line.endswith("(199000 more characters)")
