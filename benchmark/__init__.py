"""dmlbench: a plugin-based benchmark suite for deep metric learning and deep hashing."""

from benchmark.errors import BenchError
from benchmark.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["BenchError", "__version__", "hookimpl"]
