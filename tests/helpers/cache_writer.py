"""Process B of the cross-process tests: one cache call, then exit (its return is the moment
after which process A must not read stale data).

    python -m tests.helpers.cache_writer <redis_url> set <key> <json> [tag ...]
    python -m tests.helpers.cache_writer <redis_url> delete <key>
    python -m tests.helpers.cache_writer <redis_url> invalidate_tag <tag>
"""

from __future__ import annotations

import json
import sys

from config.settings import Settings
from core.cache import Cache
from core.store.connections import redis_from_url


def main(argv: list[str]) -> None:
    url, action, name, *rest = argv
    client = redis_from_url(url)
    cache = Cache(redis=client, settings=Settings(redis_url=url))
    if action == "set":
        cache.set(name, json.loads(rest[0]), tags=rest[1:])
    elif action == "delete":
        cache.delete(name)
    elif action == "invalidate_tag":
        print(cache.invalidate_tag(name))
    else:
        raise SystemExit(f"unknown action {action!r}")
    client.close()


if __name__ == "__main__":
    main(sys.argv[1:])
