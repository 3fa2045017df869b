"""No glob from input: nothing in core/cache or core/integrations walks Redis with SCAN MATCH
(or KEYS); the store's prefix walk is its own index. Checked on the code, Python and Lua."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = [ROOT / "core" / "cache", ROOT / "core" / "integrations"]
SCANS = {"scan", "scan_iter", "hscan", "hscan_iter", "sscan", "sscan_iter", "zscan", "zscan_iter"}
# redis.call('SCAN', ...) / redis.call("KEYS", ...) in a script, whatever the case.
LUA_WALK = re.compile(r"""redis\.p?call\(\s*['"](scan|keys)['"]""", re.IGNORECASE)
# The scripts the cache layer runs (core/lua is shared; these are the cache's).
LUA = sorted((ROOT / "core" / "lua").glob("cache_*.lua"))


def pattern_walks(source: str) -> list[str]:
    """Calls in ``source`` that walk keys by pattern: a SCAN-family method with ``match=``,
    or a raw SCAN/KEYS command."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        if name in SCANS and any(keyword.arg == "match" for keyword in node.keywords):
            found.append(f"line {node.lineno}: {name}(match=...)")
        if name == "keys" and isinstance(node.func, ast.Attribute) and node.args:
            found.append(f"line {node.lineno}: .keys(<pattern>)")
        if name == "execute_command" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and str(first.value).upper() in {"SCAN", "KEYS"}:
                found.append(f"line {node.lineno}: raw {first.value}")
    return found


def test_the_check_catches_what_it_looks_for() -> None:
    """The checker is not vacuous: each forbidden shape is reported."""
    bad = (
        "r.scan_iter(match=prefix + '*')\n"
        "r.scan(0, match=p)\n"
        "r.keys(p)\n"
        "r.execute_command('SCAN', 0, 'MATCH', p)\n"
        "r.execute_command('keys', p)\n"
    )
    assert len(pattern_walks(bad)) == 5
    assert pattern_walks("d.keys()\nr.zrangebylex(k, lo, hi)\nr.scan_iter(count=10)\n") == []
    assert LUA_WALK.search("redis.call('SCAN', 0, 'MATCH', ARGV[1])")
    assert LUA_WALK.search('redis.pcall("keys", ARGV[1])')


def test_cache_and_integrations_never_walk_keys_by_pattern() -> None:
    """No SCAN MATCH, no KEYS, in Python or in the cache's Lua."""
    wrong = []
    for folder in CHECKED:
        for path in sorted(folder.rglob("*.py")):
            hits = pattern_walks(path.read_text())
            wrong += [f"{path.relative_to(ROOT)} {hit}" for hit in hits]
    assert LUA, "the cache's scripts moved"
    for path in LUA:
        hits = [match.group(0) for match in LUA_WALK.finditer(path.read_text())]
        wrong += [f"{path.relative_to(ROOT)}: {hit}" for hit in hits]
    assert wrong == []
