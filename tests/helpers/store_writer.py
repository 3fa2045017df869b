"""Process B of the store's cross-process tests: one MemscribeStore call, then exit (its return
is the moment after which process A must not read stale data).

    python -m tests.helpers.store_writer <redis_url> <tenant> <namespace> mset <tagged json pairs>
    python -m tests.helpers.store_writer <redis_url> <tenant> <namespace> mdelete <json keys>
"""

from __future__ import annotations

import json
import sys

from config.settings import Settings
from core.cache.codec import decode_tagged
from core.integrations.langchain import MemscribeStore


def main(argv: list[str]) -> None:
    url, tenant, namespace, action, payload = argv
    store = MemscribeStore.from_settings(
        Settings(redis_url=url), tenant=tenant, namespace=namespace
    )
    if action == "mset":
        store.mset([(key, value) for key, value in decode_tagged(payload)])
    elif action == "mdelete":
        store.mdelete(json.loads(payload))
    else:
        raise SystemExit(f"unknown action {action!r}")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
