"""Makes `bench_pml` importable from this checkout before the plugin is pip-installed."""

import sys
from pathlib import Path

PLUGIN_ROOT = str(Path(__file__).resolve().parent)
if PLUGIN_ROOT not in sys.path:
    sys.path.insert(0, PLUGIN_ROOT)
