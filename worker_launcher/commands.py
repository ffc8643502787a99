"""The fixed set of commands: our verb names, Storm's names, argument lists and handlers.

A handler is "module:function" under worker_launcher; it is imported only when its command
runs, and called as function(launch, *args) with a Launch context. Verb issues add rows here.
"""

from typing import NamedTuple


class Command(NamedTuple):
    name: str
    args: tuple  # argument names, for usage lines
    handler: str
    summary: str
    ours: bool = False  # one of our five verb names (listed first in --help)


COMMANDS = (
)

BY_NAME = {command.name: command for command in COMMANDS}


def find(name: str) -> Command | None:
    """Storm matches command names case-insensitively."""
    return BY_NAME.get(name.lower())


def usage_line(command: Command) -> str:
    args = " ".join(f"<{arg}>" for arg in command.args)
    return f"worker-launcher <user> {command.name} {args}".rstrip()
