"""One taker process of the agent-results acceptance test: waits for the go file, then takes
a session's unconsumed results 50 at a time until none are left, writing every id it got
(one a line) to its output file.

    python -m tests.helpers.result_taker <session_id> <out_path> <ready_path> <go_path>

Settings come from the MEMSCRIBE_* environment (tests/conftest.py settings_env).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from config.settings import Settings
from core.client import MemoryClient, redis_from_url


def main(argv: list[str]) -> None:
    session_id, out_path, ready_path, go_path = argv
    settings = Settings()
    client = MemoryClient(redis=redis_from_url(settings.redis_url), settings=settings)
    client.redis.ping()
    Path(ready_path).touch()
    deadline = time.monotonic() + 60
    while not Path(go_path).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go file within 60 s")
        time.sleep(0.005)
    taken: list[str] = []
    while batch := client.take_unconsumed(session_id, limit=50):
        for result in batch:
            # The payload travels with its id: a mix-up would show here.
            assert result.result == {"n": int(result.result_id.removeprefix("r"))}
            taken.append(result.result_id)
    Path(out_path).write_text("".join(f"{result_id}\n" for result_id in taken))
    client.close()


if __name__ == "__main__":
    main(sys.argv[1:])
