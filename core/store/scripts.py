"""The Lua scripts in ``core/lua``, read from disk once per process and registered per client."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script


@cache
def lua_source(name: str) -> str:
    return resources.files("core").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """Registered scripts. ``Script`` sends EVALSHA and reloads itself after a NOSCRIPT reply
    (a restarted Redis), so the steady state is a single EVALSHA per call."""

    append: Script
    context: Script
    history: Script
    ack_trim: Script
    lease: Script
    replay: Script
    summary_begin: Script
    summary_commit: Script
    summary_end: Script
    summary_request: Script
    remember: Script
    memory_change: Script
    memory_touch: Script
    memory_warm: Script
    state_patch: Script
    state_read: Script
    results_put: Script
    results_take: Script
    session_clear: Script
    subject_erase: Script
    message_delete: Script
    purge_buffer: Script
    checkpoint_put: Script
    checkpoint_writes: Script
    checkpoint_read: Script
    checkpoint_delete: Script

    @classmethod
    def register(cls, client: redis.Redis, *, preload: bool = True) -> Scripts:
        scripts = cls(**{name: client.register_script(lua_source(name)) for name in cls.__slots__})
        if preload:
            # Load now so the first append is already a single EVALSHA.
            for name in cls.__slots__:
                client.script_load(lua_source(name))
        return scripts


@dataclass(frozen=True, slots=True)
class AsyncScripts:
    """The scripts of the async request paths (AsyncMemoryClient's, the async checkpoint
    store's) registered on a ``redis.asyncio`` client.

    ``AsyncScript`` sends EVALSHA and reloads itself after NOSCRIPT like ``Script``. Nothing is
    loaded here (SCRIPT LOAD would need an await in a constructor): the sync client beside it
    has loaded the same sources, so the SHA1s are known to the server and a first append is
    already a single EVALSHA."""

    append: AsyncScript
    context: AsyncScript
    checkpoint_put: AsyncScript
    checkpoint_writes: AsyncScript
    checkpoint_read: AsyncScript
    checkpoint_delete: AsyncScript

    @classmethod
    def register(cls, client: redis.asyncio.Redis) -> AsyncScripts:
        return cls(**{name: client.register_script(lua_source(name)) for name in cls.__slots__})
