"""Start-up stays lean: what a call imports is what it pays for, every call (issue 17).

The `os` module costs every call ~1.2 ms (it builds `os.environ` on `_collections_abc` and
imports `posixpath`): the package uses `posix`, the C module `os` re-exports, under the name
`os` (see worker_launcher/__init__.py)."""

import ast
import posix
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "worker_launcher"
# Standard modules that import os themselves.
LOADS_OS = {"os", "os.path", "posixpath", "genericpath", "shutil", "subprocess", "tempfile",
            "pathlib", "glob", "fnmatch", "socket", "locale", "platform"}


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def _top_level_imports(tree: ast.Module) -> set:
    """Modules a module imports when it is imported (not inside functions; the first branch
    of a try, whose fallback is for other interpreters), outside the package."""
    found, pending = set(), list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Try):
            pending += node.body
        elif isinstance(node, ast.If):
            pending += node.body + node.orelse
    return {name for name in found if not name.startswith(("worker_launcher", "__future__"))}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_posix_as_os_never_os(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name not in LOADS_OS, f"{path.name}:{node.lineno} imports {alias.name}"
                if alias.name == "posix":  # the layout test looks for os.<call>: keep the name
                    assert alias.asname == "os", f"{path.name}:{node.lineno}: import posix as os"
        elif isinstance(node, ast.ImportFrom) and not node.level:
            assert node.module not in LOADS_OS | {"posix"}, f"{path.name}:{node.lineno}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            assert hasattr(posix, node.attr), \
                f"{path.name}:{node.lineno}: os.{node.attr} is not in posix (os.py's own)"


def test_no_module_loads_os_when_imported():
    """What the package's modules import at their top, in a fresh interpreter started as the
    stub starts it: os is not among what that loads."""
    names = sorted(set().union(*(_top_level_imports(ast.parse(p.read_text()))
                                 for p in modules())))
    code = ("import sys\n" + "".join(f"import {name}\n" for name in names)
            + "print(sorted(name for name in ('os', 'posixpath') if name in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]", (names, out)


def _fresh(code: str) -> str:
    root = str(PACKAGE.parent)
    return subprocess.run([sys.executable, "-I", "-S", "-c", "import sys\nsys.path.insert(0, "
                           f"{root!r})\n" + code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_code_trust_check_and_the_config_read_load_neither_resolve_nor_policy():
    """Every call (signal too) runs them: paths.resolve only at a symlink on a chain."""
    out = _fresh("from worker_launcher.paths import trust\n"
                 "trust.code_problems()\ntrust.chain_problem('/usr/lib')\n"
                 "print(sorted(n for n in sys.modules if n.endswith(('.resolve', '.policy'))))")
    assert out == "[]"


def test_the_code_trust_check_covers_what_it_imports_itself(tmp_path):
    """A module imported while the check runs (resolve, at a symlink) is checked as well."""
    (tmp_path / "latecomer.py").write_text("")
    out = _fresh("from worker_launcher.paths import trust\n"
                 "real = trust._file_problem\n"
                 "def file_problem(name):\n"
                 "    if 'latecomer' not in sys.modules:\n"
                 f"        sys.path.append({str(tmp_path)!r})\n"
                 "        import latecomer\n"
                 "    return real(name)\n"
                 "trust._file_problem = file_problem\n"
                 f"print(any({str(tmp_path)!r} in problem for problem in trust.code_problems()))")
    assert out == "True"
