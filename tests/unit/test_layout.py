"""The shape of core/: packages by concern, imports in one direction, small modules.

    client ─▶ log ─▶ sessions ─▶ summaries ─▶ store      (models and errors: anyone)
                 └──▶ memories ─┘

A capability added later (memories, state, retention, backups) gets a package of its own and
a line in ALLOWED.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
SHARED = {"core.models", "core.errors"}
# package -> the core packages its modules may import (besides itself and SHARED)
ALLOWED = {
    "store": set(),
    # Low rooms every writer and reader may use: data keys and ciphers (crypto), the retention
    # policy and purge (retention).
    "crypto": {"store"},
    "retention": {"store"},
    "summaries": {"store", "crypto", "retention"},
    "sessions": {"summaries", "store", "crypto"},
    "memories": {"summaries", "store", "crypto", "retention"},
    "log": {"sessions", "memories", "state", "checkpoints", "store", "crypto", "retention"},
    "cache": {"store"},
    "state": {"cache", "store", "crypto", "retention"},
    # Backups read and write the durable tables as stored, sealed under the subjects' keys.
    "backups": {"store", "crypto"},
    # Erasure reaches every store and every kind of data.
    "erasure": {
        "log",
        "checkpoints",
        "sessions",
        "summaries",
        "memories",
        "state",
        "cache",
        "store",
        "crypto",
        "retention",
    },
    # Observability reads the WAL, dead letters and backoff (log), meters the drainer and the
    # budgets (log, summaries) and reads the last backup's record (store).
    "observability": {"log", "summaries", "store"},
    # LangGraph checkpoints: their own WAL kinds, tables and Redis keys, sealed like messages,
    # deleted through the retention policy's floors.
    "checkpoints": {"store", "crypto", "retention"},
    # The LangChain and LangGraph adapters sit in front of the client (the front door), like an
    # app does; nothing in core imports them.
    "integrations": {
        "client",
        "async_client",
        "checkpoints",
        "cache",
        "state",
        "store",
        "crypto",
        "log",
    },
}
MAX_LINES = 400


def _core_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
            found.add(node.module)
            if node.module == "core":
                found |= {f"core.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("core")}
    return found


def test_imports_point_one_way() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((CORE / package).rglob("*.py")):
            for module in _core_imports(path):
                if module in SHARED:
                    continue
                target = module.split(".")[1]
                if target != package and target not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_every_package_is_in_the_map_and_no_module_is_large() -> None:
    packages = {p.name for p in CORE.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"migrations"} == set(ALLOWED)
    large = [
        f"{path.relative_to(ROOT)}: {length} lines"
        for path in CORE.rglob("*.py")
        if (length := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert large == []
