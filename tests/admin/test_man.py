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


def test_page_documents_everything():
    text = rendered()
    for section in ("SYNOPSIS", "COMMANDS", "CONFIGURATION", "POLICY", "EXIT STATUS", "FILES",
                    "SECURITY", "EXAMPLES"):
        assert section in text, section
    for command in commands.COMMANDS:
        usage = " ".join([command.name, *command.args])
        assert usage in " ".join(text.split()), usage
    for key in list(config.DEFAULTS) + list(policy.PATH_KEYS) + list(policy.LIST_KEYS):
        assert key in text, key
    for key, default in config.DEFAULTS.items():
        if default is not None:
            assert default in text, (key, default)
    table = {int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s{2,}\w", text, re.M)}
    assert table == set(errors.exit_code_names().values())
