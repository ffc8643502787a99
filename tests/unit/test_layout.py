"""The architecture, enforced: packages import only downward, only the privileged layer makes
the system calls that need root, and every row of the dispatch table reaches a real verb."""

import ast
import inspect
from pathlib import Path

import pytest

from worker_launcher import commands

PACKAGE = Path(__file__).resolve().parents[2] / "worker_launcher"

# Lower ranks are imported by higher ones, never the other way round; packages of the same
# rank (the two runtimes) never import each other.
RANKS = {
    "core": 0,
    "paths": 1,
    "privileged": 2,
    "launch": 3,
    "classic": 3,
    "oci": 4,
    "docker": 4,
    "admin": 5,
    "entry": 6,  # main.py and commands.py
    "_build": 0,
    "__init__": 0,
}
TOP_LEVEL_UNITS = {"main": "entry", "commands": "entry"}

# Calls that act as root on the system: only privileged/ makes them.
ROOT_CALLS = {"os.fchown", "os.chown", "os.lchown", "os.posix_spawn", "os.posix_spawnp",
              "os.fork", "os.execve", "os.execv", "os.execvp", "os.system", "os.popen",
              "os.setns", "os.unshare"}
ROOT_MODULES = {"subprocess", "ctypes", "worker_launcher.privileged._sys",
                "worker_launcher.privileged._umount", "cffi"}
# module -> calls it may make outside privileged/, and why
EXCEPTIONS = {
    "classic/worker.py": {"os.execv"},  # execs the worker script after identity.become
}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def unit_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    name = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    return TOP_LEVEL_UNITS.get(name, name)


def imported(path: Path) -> set:
    """Absolute names of the worker_launcher modules `path` imports, anywhere in it."""
    package = "worker_launcher." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    package = package.rstrip(".")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                names.add(f"{module}.{alias.name}" if module else alias.name)
                names.add(module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("worker_launcher")}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downward_only(path):
    own = unit_of(path)
    for name in imported(path):
        parts = name.split(".")
        if len(parts) < 2:
            continue
        target = TOP_LEVEL_UNITS.get(parts[1], parts[1])
        if target == own or target not in RANKS:
            continue
        assert RANKS[target] < RANKS[own], f"{path.name} ({own}) imports {name}"


def calls(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if isinstance(value, ast.Name):
                found.add(f"{value.id}.{node.func.attr}")
    return found


@pytest.mark.parametrize("path", [p for p in modules() if unit_of(p) != "privileged"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_privileged_layer_acts_as_root(path):
    relative = str(path.relative_to(PACKAGE))
    made = (calls(path) & ROOT_CALLS) - EXCEPTIONS.get(relative, set())
    assert not made, f"{relative} calls {sorted(made)}: that belongs in worker_launcher/privileged"
    names = imported(path) | plain_imports(path)
    shims = {n for n in names
             if n.endswith(("privileged.kernel", "privileged._sys", "privileged._umount"))}
    if relative != "paths/resolve.py":
        shims |= {n for n in names if n.endswith("paths._resolve")}
    assert not shims and not names & ROOT_MODULES, f"{relative} imports {shims or names & ROOT_MODULES}"


def plain_imports(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
    return found


def handler_targets(function) -> list:
    """(module, name) of the verb functions a dispatch handler imports."""
    tree = ast.parse(inspect.getsource(function))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "worker_launcher." + node.module if node.level else node.module
            found += [(module, alias.name) for alias in node.names]
    return found


def verb_arity(module: str, name: str) -> int:
    """The parameter count of function `name` in `module`, read from its source (importing
    the runtimes needs the native shims, which a source tree has not built)."""
    path = PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return len(node.args.args)
    raise AssertionError(f"{module} has no function {name}")


@pytest.mark.parametrize("command", commands.COMMANDS, ids=lambda c: c.name)
def test_every_row_reaches_a_verb_with_its_arguments(command):
    handler_arity = len(inspect.signature(command.handler).parameters) - 1
    assert handler_arity == len(command.args), command.name
    targets = handler_targets(command.handler)
    if not targets:  # a handler that chooses between other handlers (nsenter)
        targets = [t for name in ("_profile_oci_container", "_profile_docker_container")
                   for t in handler_targets(getattr(commands, name))]
    for module, name in targets:
        assert verb_arity(module, name) == len(command.args) + 1, (module, name)


def test_nothing_enters_a_namespace():
    """The launcher never enters another namespace (runc starts the profiler in a container):
    no module calls setns or unshare, and the cffi shim declares neither."""
    entering = {"os.setns", "os.unshare", "lib.setns", "lib.unshare", "kernel.setns"}
    for path in modules():
        assert not calls(path) & entering, path
    for native in ("sys_build.py", "umount.c"):
        shim = (PACKAGE.parent / "native" / native).read_text()
        assert "setns" not in shim and "unshare" not in shim, native
