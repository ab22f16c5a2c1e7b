"""The package's dependency direction, checked: the MMD core stands alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gmmn

MMD_DIR = Path(gmmn.__file__).parent / "mmd"


def _gmmn_imports(path: Path) -> list[str]:
    """Absolute ``gmmn...`` module names imported anywhere in ``path`` (relative imports stay
    inside the package they are written in)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "gmmn"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "gmmn":
                names.append(node.module)
    return names


def test_mmd_core_imports_nothing_else_from_the_package_statically():
    files = sorted(MMD_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "_kernels.py", "_blocked.py", "_perm.py"}
    outside = {f.name: [m for m in _gmmn_imports(f) if not m.startswith("gmmn.mmd")]
               for f in files}
    assert not any(outside.values()), outside


def test_importing_the_mmd_core_loads_no_other_gmmn_module():
    code = ("import sys, gmmn.mmd; print(sorted(m for m in sys.modules if m.startswith('gmmn.')"
            " and not m.startswith('gmmn.mmd')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_planted_import_is_found(tmp_path):
    # the static check must be able to fail: an absolute import of the package is caught
    planted = tmp_path / "x.py"
    planted.write_text("from gmmn.config import TrainConfig\nimport gmmn.data\nfrom . import y\n")
    assert _gmmn_imports(planted) == ["gmmn.config", "gmmn.data"]
