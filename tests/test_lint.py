"""The code base passes ruff with the rules in pyproject.toml (ASYNC, bugbear, imports, ...)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install 'voxline[test]')")
    result = subprocess.run([ruff, "check", "--no-cache", "--exclude", ".venv", "."],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


# What each folder must not import (docs/architecture.md, "Folders"): lower layers never reach up.
FORBIDDEN_IMPORTS = {
    "config": {"models", "pipeline", "agent", "worker", "transports", "bus", "auth", "dashboard",
               "bots", "bench", "voxline"},
    "bus": {"models", "pipeline", "agent", "worker", "transports", "auth", "dashboard", "bots",
            "bench", "voxline"},
    "models": {"pipeline", "agent", "worker", "transports", "bus", "auth", "dashboard", "bots",
               "bench", "voxline"},
    "pipeline": {"agent", "worker", "transports", "auth", "dashboard", "bots", "bench", "voxline"},
    "agent": {"worker", "transports", "auth", "dashboard", "bots", "bench", "voxline"},
    "dashboard": {"pipeline", "agent", "worker", "transports", "bots", "bench", "voxline"},
    "worker": {"transports", "bots", "bench", "voxline"},
    "transports": {"bots", "bench", "voxline"},
    "bots": {"transports", "bench", "voxline"},
}
PACKAGES = {"config", "models", "pipeline", "agent", "worker", "transports", "bus", "auth",
            "dashboard", "bots", "bench"}


def _imported_folders(path: Path) -> set[str]:
    """The voxline folders a module imports (`voxline.x...` → x; `voxline.cli` → voxline)."""
    folders = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "voxline" and len(parts) > 1:
                folders.add(parts[1] if parts[1] in PACKAGES else "voxline")
    return folders


def test_folders_import_only_what_the_architecture_allows():
    wrong = []
    for folder, forbidden in FORBIDDEN_IMPORTS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if reached := _imported_folders(path) & forbidden:
                wrong.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(reached))}")
    assert not wrong, "\n".join(wrong)
