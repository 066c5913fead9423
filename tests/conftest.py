from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# support/side_by_side.py: the tests of a module marked side_by_side run at once.
pytest_plugins = ["support.side_by_side"]
