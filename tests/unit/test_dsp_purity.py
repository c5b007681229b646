"""dsp/ is sans-I/O: it must import with every I/O library blocked."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ["asyncio", "pylsl", "websockets", "aiomqtt", "bokeh", "tornado", "pyxdf"]

SCRIPT = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ImportError('dsp must not import ' + name)
        return None
for name in list(sys.modules):
    if name.split('.')[0] in {BLOCKED!r}:
        del sys.modules[name]
sys.meta_path.insert(0, Blocker())
import pkgutil, importlib, dsp
for module in pkgutil.iter_modules(dsp.__path__):
    importlib.import_module('dsp.' + module.name)
print('ok', len(dsp.__all__))
"""


def test_dsp_imports_with_io_libraries_blocked() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_public_entry_points_are_importable_from_the_top_level() -> None:
    import dsp

    for name in ("detect_r_peaks", "eda_features", "windowed_cross_correlation", "DyadPipeline"):
        assert callable(getattr(dsp, name))
