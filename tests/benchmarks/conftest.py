"""The scripts under benchmarks/ import each other as top-level modules (``python benchmarks/x.py`` puts that folder
first on sys.path); their tests do the same."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
