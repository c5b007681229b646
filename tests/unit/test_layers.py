"""The packages are layers: each imports only those below it, and what is installed is the
product, not its tests.

``dsp`` <- ``streamer`` <- ``server`` <- ``dashboard`` <- ``analysis`` <- ``dyadsync``
(the command line and the wiring). Every import counts, also those inside functions
(the lazy imports that keep ``dyadsync --help`` fast), so a cycle cannot hide in one.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["dsp", "streamer", "server", "dashboard", "analysis", "dyadsync"]
OURS = {*LAYERS, "device_configs", "tests"}


def _imported_packages(path: Path) -> set[str]:
    """Our top-level packages that ``path`` imports anywhere in its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add(path.parent.name)  # relative: the module's own package
    return found & OURS


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_imports_only_the_layers_below(package: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(package) + 1]) | {"device_configs"}
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) - allowed)
        for path in sorted((ROOT / package).glob("*.py"))
        if _imported_packages(path) - allowed
    }
    assert not wrong, f"{package} may import only {sorted(allowed)}: {wrong}"


def test_the_installed_distribution_ships_no_tests_package() -> None:
    top_level = importlib.metadata.distribution("dyadsync").read_text("top_level.txt") or ""
    packages = set(top_level.split())
    assert "tests" not in packages and "bench" not in packages, packages
    assert set(LAYERS) <= packages, packages


def test_dsp_holds_no_io_exceptions() -> None:
    """The one exception tree is rooted in dsp, but failures of streams, files and
    connections are defined where that I/O happens."""
    import dsp.exceptions

    names = {name for name in dir(dsp.exceptions) if name.endswith("Error")}
    assert names == {"DyadsyncError", "ConfigError", "SignalError"}, names
