"""Python 3.9 and newer: the core compiles with 3.9, and every module of the installed core
imports with the interpreter it was installed for (tools/test installs it with each)."""

import os
import subprocess

from support.env import LAUNCHER_PYTHON, REPO, require

PYTHON39 = "/root/.pyenv/versions/3.9.18/bin/python3"


def test_core_compiles_with_python_3_9():
    require(os.access(PYTHON39, os.X_OK), f"{PYTHON39} (pyenv's Python 3.9) is not installed")
    script = ("import pathlib, sys\n"
              "files = [*pathlib.Path('worker_launcher').rglob('*.py'), "
              "*pathlib.Path('native').glob('*.py')]\n"
              "for path in files:\n"
              "    compile(path.read_text(), str(path), 'exec', dont_inherit=True)\n"
              "print(len(files))\n")
    result = subprocess.run([PYTHON39, "-I", "-c", script], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 40


def test_every_installed_module_imports(launcher):
    """Evaluated annotations, new syntax or library calls at import time fail here first."""
    lib = launcher.prefix / "lib" / "worker-launcher"
    names = sorted(".".join(path.relative_to(lib).with_suffix("").parts).replace(".__init__", "")
                   for path in (lib / "worker_launcher").rglob("*.py"))
    script = (f"import importlib, sys\nsys.path.insert(0, {str(lib)!r})\n"
              f"for name in {names!r}:\n    importlib.import_module(name)\n"
              "print(sys.version_info[:2] >= (3, 9))\n")
    result = subprocess.run([LAUNCHER_PYTHON, "-I", "-B", "-c", script], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"
    assert len(names) > 40
