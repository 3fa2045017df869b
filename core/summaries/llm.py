"""Summarizer backends: OpenAI chat completions (or any OpenAI-compatible server), and the local
extractive summarizer that is the embedded default when no API key is configured.

Errors are translated here, at the edge: timeouts, connection failures, 408/409/429 and 5xx
become ``LLMUnavailable`` (a ``TransientError``, with ``retry_after_s`` from the server's
``Retry-After``), so the ``llm`` task family retries them with backoff; any other refusal is a
``PermanentError`` (dead-lettered). The openai client's own retries are off: one attempt is one
HTTP request, and the retry policy is declared once, in ``tasks/base.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

import openai

from config.settings import Settings
from core.errors import ConfigurationError, PermanentError, TransientError
from core.models import Message
from core.store.tokens import TokenCounter
from core.summaries.extractive import LocalExtractiveSummarizer

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """\
You maintain the running summary of a conversation between a user and an assistant. You get \
the previous summary (it may be empty) and the messages that came after it. Write one new \
summary that replaces the previous one and covers both.

Keep: the names of people, companies, products and places; numbers, amounts, dates, times and \
identifiers, exactly as written; facts the user stated about themselves and their preferences; \
decisions that were made and by whom; open questions and tasks still to do, with their owner \
and due date. Drop greetings, small talk and anything a later message replaced. Write plain \
sentences in the third person, no preamble, no headings, at most {max_words} words."""

# The statuses worth retrying: the openai client's own list (timeout, conflict, rate limit, 5xx).
RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class SummaryText:
    """A backend's answer and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class SummaryBackend(Protocol):
    """Folds messages into a summary. ``paid`` backends spend tokens (budgets apply)."""

    name: str
    paid: bool

    def describe(self) -> str: ...

    def summarize(self, *, previous: str | None, messages: Sequence[Message]) -> SummaryText: ...


class LLMUnavailable(TransientError):
    """The LLM did not answer this time (timeout, 429, 5xx); worth retrying later."""

    def __init__(self, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds a server asked us to wait: ``retry-after-ms`` (OpenAI), else ``Retry-After`` as
    seconds or an HTTP date. 0 when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def openai_client(*, api_key: str, base_url: str, timeout_s: float) -> openai.OpenAI:
    """An ``openai`` client for OpenAI or any compatible server (``base_url``), without its own
    retries: one attempt is one HTTP request; retries belong to the task that asked (backoff,
    dead letters)."""
    return openai.OpenAI(
        api_key=api_key, base_url=base_url or None, timeout=timeout_s, max_retries=0
    )


@contextmanager
def openai_errors(
    what: str,
    *,
    timeout_s: float,
    retry_after_cap_s: float,
    unavailable: type[LLMUnavailable] | None = None,
) -> Iterator[None]:
    """The ``openai`` client's errors as memscribe's: a timeout, a connection failure, 408,
    409, 429 and 5xx become ``unavailable`` (``LLMUnavailable``, transient, with the server's
    ``Retry-After``); any other refusal a ``PermanentError``. ``what`` names the call."""
    transient = unavailable or LLMUnavailable
    try:
        yield
    except openai.APITimeoutError:
        raise transient(f"{what} timed out after {timeout_s:g}s") from None
    except openai.APIConnectionError as exc:
        raise transient(f"{what} unreachable: {exc.__cause__ or exc}") from None
    except openai.APIStatusError as exc:
        status = exc.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            wait_s = min(retry_after_cap_s, retry_after_s(exc.response.headers))
            raise transient(
                f"{what} answered HTTP {status}" + (f", retry after {wait_s:g}s" if wait_s else ""),
                retry_after_s=wait_s,
            ) from None
        # The server's message names the problem (model, key, quota); it never echoes the
        # input, but keep it short anyway.
        raise PermanentError(f"{what} refused: HTTP {status}: {exc.message[:200]}") from None
    except openai.OpenAIError as exc:
        raise PermanentError(f"{what} call failed: {exc.__class__.__name__}") from None


def fold_prompt(previous: str | None, messages: Sequence[Message]) -> str:
    """The user turn of a summarize call: the previous summary, then the folded messages."""
    lines = ["Previous summary:", previous or "(none)", "", "Messages after it:"]
    lines += [f"[{message.seq}] {message.role}: {message.content}" for message in messages]
    return "\n".join(lines)


class OpenAISummarizer:
    """Chat completions at temperature 0 through the ``openai`` client (any compatible server)."""

    paid = True

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = "",
        timeout_s: float = 30.0,
        max_tokens: int = 512,
        retry_after_cap_s: float = 300.0,
        tokens: TokenCounter | None = None,
    ) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.retry_after_cap_s = retry_after_cap_s
        self._tokens = tokens
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s)

    def describe(self) -> str:
        return f"openai (model {self.model}, {self.base_url or 'api.openai.com'})"

    def summarize(self, *, previous: str | None, messages: Sequence[Message]) -> SummaryText:
        prompt = fold_prompt(previous, messages)
        system = SYSTEM_PROMPT.format(max_words=max(20, self.max_tokens * 3 // 4))
        with openai_errors(
            "LLM", timeout_s=self.timeout_s, retry_after_cap_s=self.retry_after_cap_s
        ):
            completion = self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": prompt},
                ],
                temperature=0,
                max_completion_tokens=self.max_tokens,
            )
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        if not text:
            raise PermanentError("LLM returned an empty summary")
        usage = completion.usage
        if usage is not None:
            return SummaryText(text, usage.prompt_tokens, usage.completion_tokens)
        # No usage reported (some compatible servers): count it ourselves, so budgets hold.
        counter = self._tokens
        if counter is None:
            return SummaryText(text)
        return SummaryText(
            text,
            counter.count_message("system", system) + counter.count_message("user", prompt) + 3,
            counter.count(text),
        )


class ExtractiveBackend:
    """``LocalExtractiveSummarizer`` behind the backend interface."""

    paid = False

    def __init__(self, *, tokens: TokenCounter, max_tokens: int) -> None:
        self._summarizer = LocalExtractiveSummarizer(tokens=tokens, max_tokens=max_tokens)
        self.name = self._summarizer.name

    def describe(self) -> str:
        return self._summarizer.describe()

    def summarize(self, *, previous: str | None, messages: Sequence[Message]) -> SummaryText:
        return SummaryText(self._summarizer.summarize(previous=previous, messages=messages))


def build_backend(settings: Settings, tokens: TokenCounter) -> SummaryBackend:
    """The configured backend (``MEMSCRIBE_SUMMARIZER``); says in the log which one it is."""
    key = settings.openai_api_key.get_secret_value()
    choice = settings.summarizer
    backend: SummaryBackend
    if choice == "openai" or (choice == "auto" and key):
        if not key and not settings.openai_base_url:
            raise ConfigurationError(
                "MEMSCRIBE_SUMMARIZER=openai needs MEMSCRIBE_OPENAI_API_KEY (or "
                "MEMSCRIBE_OPENAI_BASE_URL for a server that takes no key)"
            )
        backend = OpenAISummarizer(
            # A keyless OpenAI-compatible server still gets a bearer header from the client.
            api_key=key or "no-key",
            model=settings.summary_model_name,
            base_url=settings.openai_base_url,
            timeout_s=settings.llm_timeout_s,
            max_tokens=settings.summary_max_tokens,
            retry_after_cap_s=settings.retry_cap_s,
            tokens=tokens,
        )
    else:
        backend = ExtractiveBackend(tokens=tokens, max_tokens=settings.summary_max_tokens)
    log.info("summarizer: %s", describe_backend(settings))
    return backend


def describe_backend(settings: Settings) -> str:
    """Which backend the settings select, without building it (for status)."""
    key = settings.openai_api_key.get_secret_value()
    if settings.summarizer == "openai" or (settings.summarizer == "auto" and key):
        where = settings.openai_base_url or "api.openai.com"
        return f"openai (model {settings.summary_model_name}, {where})"
    reason = "no API key" if settings.summarizer == "auto" else "MEMSCRIBE_SUMMARIZER=local"
    return f"local-extractive ({reason}: sentences picked locally, nothing generated)"
