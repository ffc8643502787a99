"""worker-launcher(8) renders cleanly and documents every command, key and exit code."""

import re
import shutil
import subprocess

from support.env import REPO, require
from worker_launcher import commands
from worker_launcher.core import config, errors, policy

PAGE = REPO / "packaging" / "worker-launcher.8"


def rendered() -> str:
    require(shutil.which("groff") is not None, "groff is not installed")
    check = subprocess.run(["groff", "-t", "-man", "-Tutf8", "-ww", "-z", str(PAGE)],
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    require(shutil.which("man") is not None, "man-db is not installed")
    page = subprocess.run(["man", "-l", str(PAGE)], capture_output=True, text=True,
                          env={"MANWIDTH": "200", "PATH": "/usr/bin:/bin", "MAN_KEEP_FORMATTING": ""})
    assert page.returncode == 0, page.stderr
    return re.sub(r".\x08", "", page.stdout).replace("\u2010", "-")


def sections(text: str) -> dict:
    """Section title -> its text (man's rendering: titles in capitals at column 0)."""
    found, title = {}, None
    for line in text.splitlines():
        if re.fullmatch(r"[A-Z][A-Z -]+", line):
            title = line
            found[title] = []
        elif title:
            found[title].append(line)
    return {name: " ".join(" ".join(lines).split()) for name, lines in found.items()}


def test_page_documents_everything():
    text = rendered()
    for section in ("SYNOPSIS", "COMMANDS", "CONFIGURATION", "POLICY", "EXIT STATUS",
                    "TROUBLESHOOTING", "COMPATIBILITY", "FILES", "MANUAL CLEAN-UP", "SECURITY",
                    "EXAMPLES"):
        assert section in text, section
    for command in commands.COMMANDS:
        usage = " ".join([command.name, *command.args])
        assert usage in " ".join(text.split()), usage
    for key in list(config.DEFAULTS) + list(policy.PATH_KEYS) + list(policy.LIST_KEYS):
        assert key in text, key
    for key, default in config.DEFAULTS.items():
        if default is not None:
            assert default in text, (key, default)
    status = text[text.index("EXIT STATUS"):text.index("TROUBLESHOOTING")]
    table = {int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s{2,}\w", status, re.M)}
    assert table == set(errors.exit_code_names().values())


def test_every_exit_status_has_what_to_check():
    text = sections(rendered())["TROUBLESHOOTING"]
    explained = {int(number) for number in re.findall(r"\bexit (\d+) ", text)}
    assert explained == set(errors.exit_code_names().values()) - {0}
    assert "--check-config" in text and "--list-state" in text


def test_operator_options_are_documented():
    page = sections(rendered())
    for option in ("--check-config [file [policy]] [--json]", "--list-state [--json]",
                   "--version [--json]", "--checksetup", "--help"):
        assert option in page["SYNOPSIS"], option
    options = page["OPTIONS"]
    for fragment in ("in any order", "did you mean", "visudo -cf", "ORPHANED", "binds/n",
                     "interpreter", "storm.local.dirs"):
        assert fragment in options, fragment


def test_run_root_layout_and_safe_clean_up():
    page = sections(rendered())
    files = page["FILES"]
    for entry in ("run-root/layers/sha256/mnt", "run-root/layers/lock", "container-id/rootfs",
                  "container-id/binds/n", "container-id/config.json"):
        assert entry in files, entry
    assert "Never rm -rf a container directory" in files
    clean_up = page["MANUAL CLEAN-UP"]
    assert "worker-launcher --list-state" in clean_up
    assert "reap-oci-container id keep-count" in clean_up
    assert "Never remove a container directory with rm -rf" in clean_up


def test_differences_from_storms_c_launcher():
    compatibility = sections(rendered())["COMPATIBILITY"]
    assert "exits 2; the C launcher exits 255" in compatibility
    assert "exits 0, 1 (runc delete failed) or 18 (no memory) in the C launcher" in compatibility
