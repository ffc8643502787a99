"""The audit line: sudo-style fields, escaped so no value can end its field or forge one,
and the outcome class of every refusal and failure."""

import pytest

from worker_launcher.core import audit
from worker_launcher.core.errors import (ExitCode, LauncherError, REFUSED_CODES, by_policy,
                                         exit_code_names, outcome_of)


def fields(line: str) -> tuple:
    """(caller, [(key, value)...]) as a security team's parser would split the line."""
    caller, _, rest = line.partition(" : ")
    return caller, [tuple(field.split("=", 1)) for field in rest.split(" ; ")]


def test_fields_in_order():
    line = audit.format_line(
        "wlsuper", 1901, ["wlalice", "run-oci-container", "/w", "/w/oci-config.json", "/w/a"],
        "runc-run", "ok", 0, [("runc run", 0), ("runc delete", -9), ("docker", None)],
        {"container": "6700-x", "layers": ["/l/a.sqsh", "/l/b.sqsh"]}, None)
    assert fields(line) == ("wlsuper", [
        ("UID", "1901"), ("USER", "wlalice"), ("COMMAND", "run-oci-container"),
        ("VERB", "runc-run"), ("OUTCOME", "ok"), ("EXIT", "0"),
        ("CHILD", "runc run:0,runc delete:signal 9,docker:timed out"),
        ("CONTAINER", "6700-x"), ("LAYERS", "/l/a.sqsh,/l/b.sqsh"),
        ("ARGS", "/w /w/oci-config.json /w/a")])


def test_refusal_before_the_command_is_known():
    line = audit.format_line("wlsuper", 1901, ["wlalice"], None, "refused", 1, [], {}, "")
    assert fields(line) == ("wlsuper", [("UID", "1901"), ("USER", "wlalice"), ("COMMAND", ""),
                                        ("OUTCOME", "refused"), ("EXIT", "1"), ("ARGS", "")])
    assert audit.format_line("x", 5, [], None, "refused", 1, [], {}, None).startswith(
        "x : UID=5 ; USER= ; COMMAND= ; OUTCOME=refused")


@pytest.mark.parametrize("hostile", [
    "/tmp/x ; OUTCOME=ok ; EXIT=0", "/tmp/x\nJan  1 host worker-launcher[1]: root : UID=0",
    "a\\x3b", "\x1b[2J", "\u2028", "\udcff", "bell\a"])
def test_no_value_can_forge_a_field_or_a_line(hostile):
    line = audit.format_line(hostile, 1901, ["wlalice", "rmr", hostile], "rmr", "refused", 5,
                             [], {"path": hostile}, f"refusing {hostile}")
    caller, parsed = fields(line)
    assert "\n" not in line and "\r" not in line and line.isprintable()
    assert [key for key, _ in parsed] == ["UID", "USER", "COMMAND", "VERB", "OUTCOME", "EXIT",
                                          "PATH", "ARGS", "ERROR"]
    assert dict(parsed)["OUTCOME"] == "refused" and dict(parsed)["EXIT"] == "5"
    assert caller == audit.escape(hostile).replace(":", "\\x3a")


def test_escapes_are_unambiguous():
    assert audit.escape("a;b\\c\nd\te") == "a\\x3bb\\x5cc\\x0ad\\x09e"
    assert audit.escape(["x", 1]) == "x,1"


def test_values_are_capped():
    line = audit.format_line("wlsuper", 1901, ["wlalice", "rmr", "/" + "a" * 50000], "rmr",
                             "failed", 12, [], {}, "b" * 50000)
    assert len(line) < 3 * audit.MAX_VALUE
    assert "OUTCOME=failed ; EXIT=12" in line


@pytest.mark.parametrize("name, code", sorted(exit_code_names().items()))
def test_outcome_by_exit_code(name, code):
    if code == 0:
        return
    expected = "refused" if code in REFUSED_CODES else "failed"
    assert outcome_of(LauncherError(code, "x")) == expected


def test_refused_codes_are_the_input_and_installation_refusals():
    assert {ExitCode.INVALID_ARGUMENT_NUMBER, ExitCode.INVALID_USER_NAME,
            ExitCode.INVALID_COMMAND_PROVIDED, ExitCode.INVALID_CONFIG_FILE,
            ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
            ExitCode.DOCKER_COMMAND_REJECTED} <= REFUSED_CODES
    assert not {ExitCode.OCI_RUN_FAILED, ExitCode.OCI_REAP_FAILED, ExitCode.DOCKER_RUN_FAILED,
                ExitCode.SETUID_OPER_FAILED, ExitCode.UNABLE_TO_SIGNAL_CONTAINER} & REFUSED_CODES


def test_policy_and_explicit_outcomes_win():
    assert outcome_of(by_policy(LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, "x"))) == \
        "refused(policy)"
    assert outcome_of(LauncherError(ExitCode.INVALID_CONFIG_FILE, "x", outcome="failed")) == "failed"
