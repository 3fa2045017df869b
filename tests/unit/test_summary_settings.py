"""Summary settings: defaults from the issue, and refusals that keep one call per crossing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError as SettingsError

from config.settings import Settings


def test_summary_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trigger 3000, buffer caps 4000 tokens and 30 messages, local summarizer, no budget."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"MEMSCRIBE_{name.upper()}", raising=False)
    settings = Settings()
    assert (settings.summary_trigger_tokens, settings.buffer_max_tokens) == (3000, 4000)
    assert (settings.buffer_max_messages, settings.keep_recent_tokens) == (30, 1000)
    assert settings.summary_model_name == settings.model == "gpt-4o-mini"
    assert settings.openai_api_key.get_secret_value() == ""
    assert settings.tenant_daily_token_budget == 0


def test_keep_recent_must_stay_below_the_trigger() -> None:
    """Otherwise a crossing could find nothing to fold."""
    with pytest.raises(SettingsError, match="keep_recent_tokens"):
        Settings(summary_trigger_tokens=500, keep_recent_tokens=500)


def test_the_lease_must_outlive_the_llm_call() -> None:
    """A lease shorter than the call would let a second summarize start meanwhile."""
    with pytest.raises(SettingsError, match="summary_lease_s"):
        Settings(llm_timeout_s=60, summary_lease_s=100)
