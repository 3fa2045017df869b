"""The OpenAI backend through the real ``openai`` client against the local fake server:
the request it sends, and how each failure is classified (transient with Retry-After, or
permanent)."""

from __future__ import annotations

import pytest

from config.settings import Settings
from core.errors import ConfigurationError, PermanentError
from core.models import Message
from core.store.tokens import token_counter
from core.summaries.llm import LLMUnavailable, OpenAISummarizer, build_backend, retry_after_s
from tests.fakes.openai_server import Answer, FakeOpenAI, rate_limited, server_error, slow
from tests.unit.test_extractive import _messages

MESSAGES: list[Message] = _messages(["Ana booked room 12 for Friday.", "Confirmed, see you then."])


def _backend(fake: FakeOpenAI, **options: object) -> OpenAISummarizer:
    return OpenAISummarizer(
        api_key="sk-test",
        model="gpt-4o-mini",
        base_url=fake.url,
        timeout_s=2.0,
        **options,  # type: ignore[arg-type]
    )


def test_one_request_at_temperature_zero_with_usage(fake_openai: FakeOpenAI) -> None:
    """One chat completion: model, temperature 0, the prompt rules, the messages; usage back."""
    answer = _backend(fake_openai, max_tokens=200).summarize(
        previous="Earlier: Ana is a guest.", messages=MESSAGES
    )
    [request] = fake_openai.requests()
    system, user = request.body["messages"]
    assert request.authorized and request.body["temperature"] == 0
    assert request.body["model"] == "gpt-4o-mini" and request.body["max_completion_tokens"] == 200
    for rule in ("names", "numbers", "decisions", "open questions and tasks"):
        assert rule in system["content"]
    assert "Earlier: Ana is a guest." in user["content"]
    assert "[1] user: Ana booked room 12 for Friday." in user["content"]
    assert answer.text == "Summary of 2 messages."
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0


def test_rate_limit_is_transient_and_carries_retry_after(fake_openai: FakeOpenAI) -> None:
    """429 with Retry-After (seconds) or retry-after-ms: LLMUnavailable with that wait."""
    fake_openai.script(rate_limited("7"), rate_limited(None, **{"retry-after-ms": "250"}))
    backend = _backend(fake_openai)
    with pytest.raises(LLMUnavailable) as first:
        backend.summarize(previous=None, messages=MESSAGES)
    assert first.value.retry_after_s == 7.0 and "429" in str(first.value)
    with pytest.raises(LLMUnavailable) as second:
        backend.summarize(previous=None, messages=MESSAGES)
    assert second.value.retry_after_s == 0.25
    assert len(fake_openai.requests()) == 2  # the client's own retries are off


def test_a_huge_retry_after_is_capped(fake_openai: FakeOpenAI) -> None:
    """A server asking for an hour is capped to the retry cap (kombu would redeliver)."""
    fake_openai.script(rate_limited("3600"))
    with pytest.raises(LLMUnavailable) as error:
        _backend(fake_openai, retry_after_cap_s=30.0).summarize(previous=None, messages=MESSAGES)
    assert error.value.retry_after_s == 30.0


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
def test_server_errors_are_transient(fake_openai: FakeOpenAI, status: int) -> None:
    """5xx, 408 and 409 are worth retrying."""
    fake_openai.script(server_error(status))
    with pytest.raises(LLMUnavailable, match=str(status)):
        _backend(fake_openai).summarize(previous=None, messages=MESSAGES)


def test_a_timeout_is_transient(fake_openai: FakeOpenAI) -> None:
    """No answer within the timeout: LLMUnavailable naming the timeout."""
    fake_openai.script(slow(1.0))
    backend = OpenAISummarizer(api_key="k", model="m", base_url=fake_openai.url, timeout_s=0.2)
    with pytest.raises(LLMUnavailable, match=r"timed out after 0\.2s"):
        backend.summarize(previous=None, messages=MESSAGES)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_refusals_are_permanent(fake_openai: FakeOpenAI, status: int) -> None:
    """A request the server will never accept is dead-lettered, not retried."""
    fake_openai.script(server_error(status))
    with pytest.raises(PermanentError, match=f"HTTP {status}"):
        _backend(fake_openai).summarize(previous=None, messages=MESSAGES)


def test_an_empty_answer_is_refused(fake_openai: FakeOpenAI) -> None:
    """An empty completion never replaces a summary."""
    fake_openai.script(Answer(text="  "))
    with pytest.raises(PermanentError, match="empty"):
        _backend(fake_openai).summarize(previous=None, messages=MESSAGES)


def test_retry_after_accepts_an_http_date() -> None:
    """Retry-After may be a date; unreadable values mean no wait."""
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480) == 10
    assert retry_after_s({"retry-after": "soon"}) == 0.0
    assert retry_after_s({}) == 0.0


def test_backend_choice(fake_openai: FakeOpenAI) -> None:
    """auto: OpenAI with a key, else local; openai without key or base URL is refused."""
    counter = token_counter("tiktoken", "gpt-4o-mini")
    assert build_backend(Settings(), counter).name == "local-extractive"
    keyed = Settings(openai_api_key="sk-x", openai_base_url=fake_openai.url)  # type: ignore[arg-type]
    assert build_backend(keyed, counter).name == "openai:gpt-4o-mini"
    assert "sk-x" not in repr(keyed) and "sk-x" not in str(keyed)
    keyless = Settings(summarizer="openai", openai_base_url=fake_openai.url, summary_model="llama3")
    assert build_backend(keyless, counter).name == "openai:llama3"
    with pytest.raises(ConfigurationError, match="MEMSCRIBE_OPENAI_API_KEY"):
        build_backend(Settings(summarizer="openai"), counter)


def test_the_fake_serves_embeddings_to_the_real_client(fake_openai: FakeOpenAI) -> None:
    """For later (consolidation): /v1/embeddings answers the openai client, deterministically."""
    import openai

    client = openai.OpenAI(api_key="k", base_url=fake_openai.url, max_retries=0)
    first = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=4)
    again = client.embeddings.create(model="text-embedding-3-small", input="a", dimensions=4)
    client.close()
    assert [len(item.embedding) for item in first.data] == [4, 4]
    assert first.data[0].embedding == again.data[0].embedding != first.data[1].embedding
    assert first.usage.prompt_tokens > 0
    assert [r.path for r in fake_openai.requests("/v1/embeddings")] == ["/v1/embeddings"] * 2
