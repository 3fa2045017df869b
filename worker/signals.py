"""Celery signal handlers: start-up checks and fork safety."""

from __future__ import annotations

from typing import Any

from celery.signals import after_task_publish, worker_init, worker_process_init

from config.settings import get_settings
from core.store.tokens import token_counter
from worker import progress
from worker.runtime import reset_runtime, runtime


@worker_init.connect
def _tokenizer_loads_at_start_up(**_kwargs: Any) -> None:
    # Fail now, with the message that says how to fix it (TIKTOKEN_CACHE_DIR or
    # MEMSCRIBE_TOKENIZER=estimate), rather than dead-letter the first summary.
    settings = get_settings()
    token_counter(settings.tokenizer, settings.model)


@worker_process_init.connect
def _fresh_clients_after_fork(**_kwargs: Any) -> None:
    reset_runtime()


@after_task_publish.connect
def _beat_ticked(sender: str | None = None, **_kwargs: Any) -> None:
    # Only beat sends persist.flush from a memscribe process (apps that send it themselves do
    # not load this module), so this marks beat's ticks for its supervisor.
    if sender == "persist.flush":
        current = runtime()
        progress.record(current.redis, current.settings, progress.Marker.BEAT)
