"""Celery signal handlers: start-up checks and fork safety."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_process_init

from config.settings import get_settings
from core.tokens import token_counter
from worker.runtime import reset_runtime


@worker_init.connect
def _tokenizer_loads_at_start_up(**_kwargs: Any) -> None:
    # Fail now, with the message that says how to fix it (TIKTOKEN_CACHE_DIR or
    # MEMSCRIBE_TOKENIZER=estimate), rather than dead-letter the first summary.
    settings = get_settings()
    token_counter(settings.tokenizer, settings.model)


@worker_process_init.connect
def _fresh_clients_after_fork(**_kwargs: Any) -> None:
    reset_runtime()
