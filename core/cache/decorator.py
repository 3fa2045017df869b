"""``@cached``: a function's JSON results kept in a ``Cache``, keyed by its arguments."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import TransientError, ValidationError

if TYPE_CHECKING:
    from core.cache.multilevel import Cache

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def default_key(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``<module>.<qualname>:<sha256 of the JSON arguments>`` (arguments must be JSON too)."""
    try:
        arguments = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            "arguments", f"@cached needs JSON arguments or a key= function: {exc}"
        ) from None
    digest = hashlib.sha256(arguments.encode()).hexdigest()[:32]
    # "<locals>" and friends are outside the key alphabet; the name is for humans anyway.
    name = re.sub(r"[^A-Za-z0-9_.]", "_", f"{func.__module__}.{func.__qualname__}")[-150:]
    return f"fn:{name}:{digest}"


def cached(
    cache: Cache,
    ttl_s: float | None = None,
    *,
    tags: Iterable[str] = (),
    key: Callable[..., str] | None = None,
) -> Callable[[F], F]:
    """Keep ``func``'s results in ``cache`` for ``ttl_s`` under ``tags``. ``key(*args,
    **kwargs)`` names the entry (default: see ``default_key``). Results must be JSON
    (``ValidationError`` otherwise; a tuple comes back as a list from the cache); None is not
    cached. While Redis is unavailable the function's result is returned uncached."""
    tags = tuple(tags)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name = key(*args, **kwargs) if key is not None else default_key(func, args, kwargs)
            found = cache.lookup(name)
            if found.found:
                return found.value
            result = func(*args, **kwargs)
            if result is None:
                return None
            try:
                cache.set(name, result, ttl_s=ttl_s, tags=tags)
            except TransientError as exc:
                # Documented degradation: the caller gets a fresh result, the cache skips it.
                log.warning("cache: @cached result of %s not kept: %s", func.__qualname__, exc)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate
