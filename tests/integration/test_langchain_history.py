"""MemscribeChatMessageHistory: LangChain's chat history on memscribe. Messages come back equal,
a batch is one append_many, adds are idempotent, the summary leads as a SystemMessage, and
RunnableWithMessageHistory works sync and async. Real Redis, real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from config.settings import Settings
from core.async_client import AsyncMemoryClient
from core.client import MemoryClient
from core.errors import ValidationError
from core.integrations.langchain import MemscribeChatMessageHistory
from core.log.drainer import Drainer
from core.summaries.llm import ExtractiveBackend
from core.summaries.summarizer import SessionSummarizer
from tests.conftest import ROOT, assert_exactly_once, settings_env

# LangChain deprecated RunnableWithMessageHistory in langchain-core 1.3.3 (for LangGraph's
# persistence); it still works and is what these tests exercise.
runnable_history = pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated:DeprecationWarning"
)


@pytest_asyncio.fixture
async def aclient(client: MemoryClient) -> AsyncIterator[AsyncMemoryClient]:
    memory = AsyncMemoryClient.from_client(client)
    yield memory
    await memory.aclose()


@pytest.fixture
def history(client: MemoryClient) -> MemscribeChatMessageHistory:
    return MemscribeChatMessageHistory("chat-1", client=client)


def _every_kind() -> list[BaseMessage]:
    return [
        SystemMessage("You are terse.", id="m-system"),
        HumanMessage("What is 6 x 7?", id="m-human", name="alice"),
        AIMessage(
            "",
            id="m-call",
            tool_calls=[{"name": "multiply", "args": {"a": 6, "b": 7}, "id": "call-1"}],
            usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
            response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
            additional_kwargs={"refusal": None},
        ),
        ToolMessage("42", tool_call_id="call-1", name="multiply", id="m-tool", artifact=[6, 7]),
        AIMessage("42.", id="m-answer"),
        ChatMessage("a user turn, role as text", role="user", id="m-chat"),
        AIMessageChunk("streamed", id="m-chunk"),
        HumanMessage(
            [{"type": "text", "text": "and "}, {"type": "text", "text": "this picture?"}],
            id="m-blocks",
        ),
    ]


def test_every_kind_of_message_comes_back_equal(
    history: MemscribeChatMessageHistory, client: MemoryClient
) -> None:
    """Types, tool calls, names, kwargs, metadata and content blocks survive the round trip."""
    sent = _every_kind()
    history.add_messages(sent)
    assert history.messages == sent
    assert history.get_messages() == sent
    stored = client.context("chat-1").messages
    assert [m.role for m in stored] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert [m.message_id for m in stored] == [m.id for m in sent]
    assert stored[-1].content == "and this picture?"  # the text of the blocks is what counts
    assert stored[1].metadata is None or "content" not in stored[1].metadata["langchain"]


def test_a_batch_is_one_append_many(
    history: MemscribeChatMessageHistory, client: MemoryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """add_messages sends the whole batch in one append_many; add_message sends one."""
    calls: list[int] = []
    real = client.append_many

    def counted(session_id: str, messages: Any, **kwargs: Any) -> Any:
        calls.append(len(messages))
        return real(session_id, messages, **kwargs)

    monkeypatch.setattr(client, "append_many", counted)
    history.add_messages([HumanMessage(f"turn {i}") for i in range(5)])
    history.add_message(AIMessage("one more"))
    history.add_user_message("and a user line")
    assert calls == [5, 1, 1]
    assert [m.seq for m in client.context("chat-1").messages] == list(range(1, 8))


def test_adding_the_same_messages_twice_stores_them_once(
    history: MemscribeChatMessageHistory, client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """Messages without an id get one, on the object, so a retry is a duplicate."""
    sent: list[BaseMessage] = [HumanMessage("hello"), AIMessage("hi there")]
    history.add_messages(sent)
    assert all(m.id and len(m.id) == 36 and m.id[14] == "7" for m in sent)  # UUIDv7
    history.add_messages(sent)
    history.add_message(sent[1])
    assert history.messages == sent
    assert drainer.flush(timeout_s=30) == 0
    stored = client.context("chat-1").messages
    assert_exactly_once(
        settings.database_url,
        {m.message_id: ("default", "chat-1", m.seq, m.content) for m in stored},
    )


def test_bad_messages_name_the_field_and_write_nothing(
    history: MemscribeChatMessageHistory, client: MemoryClient, settings: Settings
) -> None:
    """A message memscribe cannot store is a ValidationError naming it; nothing is written."""
    cases: list[tuple[list[BaseMessage], str]] = [
        ([HumanMessage("ok"), ChatMessage("x", role="robot")], "messages[1].role"),
        ([HumanMessage("ok", id="has:colon")], "messages[0].message_id"),
        ([HumanMessage("ok"), RemoveMessage(id="m-1")], "messages[1].type"),
        (
            [AIMessage("ok", response_metadata={"blob": "x" * settings.max_metadata_bytes})],
            "messages[0].metadata",
        ),
    ]
    for messages, field in cases:
        with pytest.raises(ValidationError) as caught:
            history.add_messages(messages)
        assert caught.value.field == field
    assert str(settings.max_metadata_bytes) in str(caught.value)
    with pytest.raises(ValidationError) as bad_session:
        MemscribeChatMessageHistory("a b", client=client)
    assert bad_session.value.field == "session_id"
    assert client.redis.dbsize() == 0


@pytest.fixture
def summary_settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(
        database_url=database_url, summary_trigger_tokens=100, keep_recent_tokens=30
    )


def test_the_summary_leads_as_a_system_message(
    summary_settings: Settings, redis_client: Any
) -> None:
    """Once summarized, messages is [SystemMessage(summary), recent...]; the summary read back
    and added again is not stored as a message."""
    client = MemoryClient(redis=redis_client, settings=summary_settings)
    history = MemscribeChatMessageHistory("chat-1", client=client)
    assert history.summary is None
    sent = [
        (HumanMessage if i % 2 == 0 else AIMessage)(f"note {i}: about order {1000 + i} today")
        for i in range(12)
    ]
    history.add_messages(sent)
    drainer = Drainer(
        redis=client.redis, engine=client.engine, settings=summary_settings, consumer="t"
    )
    assert drainer.flush(timeout_s=30) == 0
    outcome = SessionSummarizer(
        redis=client.redis,
        engine=client.engine,
        settings=summary_settings,
        backend=ExtractiveBackend(tokens=client.tokens, max_tokens=60),
    ).summarize("default", "chat-1")
    assert outcome.status == "summarized"

    context = client.context("chat-1")
    messages = history.messages
    assert isinstance(messages[0], SystemMessage)
    assert messages[0].content == context.summary == history.summary
    assert messages[1:] == [m for m in sent if m.id in {s.message_id for s in context.messages}]
    assert len(messages) - 1 < len(sent)

    history.add_messages(messages)  # what RunnableWithMessageHistory may write back
    assert client.context("chat-1").messages == context.messages
    with pytest.raises(ValidationError) as caught:  # errors count the summary's place too
        history.add_messages([messages[0], HumanMessage("fine"), HumanMessage("x", id="a:b")])
    assert caught.value.field == "messages[2].message_id"
    assert client.context("chat-1").messages == context.messages
    client.engine.dispose()


def test_clear_and_read_through(
    history: MemscribeChatMessageHistory, client: MemoryClient, drainer: Drainer
) -> None:
    """After Redis forgets a drained session the history reads through; clear empties it."""
    sent: list[BaseMessage] = [HumanMessage("remember me"), AIMessage("I will")]
    history.add_messages(sent)
    assert drainer.flush(timeout_s=30) == 0
    client.redis.flushdb()
    assert history.messages == sent
    history.clear()
    assert history.messages == []
    history.add_messages([HumanMessage("a new start")])
    assert [m.seq for m in client.context("chat-1").messages] == [3]


@pytest.mark.asyncio
async def test_async_methods_use_the_async_client(
    client: MemoryClient, aclient: AsyncMemoryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aadd_messages is one AsyncMemoryClient.append_many; aget_messages and aclear go there too."""
    history = MemscribeChatMessageHistory(
        "chat-1", client=client, async_client=aclient, subject_id="alice"
    )
    calls: list[int] = []
    real = aclient.append_many

    async def counted(session_id: str, messages: Any, **kwargs: Any) -> Any:
        calls.append(len(messages))
        return await real(session_id, messages, **kwargs)

    monkeypatch.setattr(aclient, "append_many", counted)
    sent = _every_kind()
    await history.aadd_messages(sent)
    await history.aadd_messages(sent)  # a retry: duplicates
    assert calls == [len(sent), len(sent)]
    assert await history.aget_messages() == sent
    assert history.messages == sent
    assert await history.aget_summary() is None
    await history.aclear()
    assert await history.aget_messages() == []


def _chain(model: GenericFakeChatModel, histories: Callable[[str], Any]) -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a helpful assistant."),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ]
    )
    return RunnableWithMessageHistory(
        prompt | model,
        histories,
        input_messages_key="question",
        history_messages_key="history",
    )


class Prompts(BaseCallbackHandler):
    """Records the messages each model call was given."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.calls.append(messages[0])


def _replies(count: int, label: str) -> Iterator[AIMessage]:
    return iter([AIMessage(f"{label} reply {i}") for i in range(count)])


def _check_stored(client: MemoryClient, session: str, questions: list[str], label: str) -> None:
    stored = client.context(session).messages
    assert [(m.role, m.content) for m in stored] == [
        pair
        for i, question in enumerate(questions)
        for pair in (("user", question), ("assistant", f"{label} reply {i}"))
    ]


@runnable_history
def test_runnable_with_message_history_sync(
    client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """Several invoke() turns: each sees the turns before and adds its own, stored once."""
    seen: list[int] = []
    model = GenericFakeChatModel(messages=_replies(3, "sync"))

    def histories(session_id: str) -> MemscribeChatMessageHistory:
        history = MemscribeChatMessageHistory(session_id, client=client)
        seen.append(len(history.messages))
        return history

    chain = _chain(model, histories)
    prompts = Prompts()
    questions = ["Hi, I am Ada.", "What is my name?", "Thanks!"]
    for question in questions:
        config: Any = {"configurable": {"session_id": "chat-s"}, "callbacks": [prompts]}
        reply = chain.invoke({"question": question}, config)
        assert isinstance(reply, AIMessage)
    assert seen == [0, 2, 4]
    # The third call saw the system prompt, both earlier turns from memscribe, the question.
    assert [(m.type, m.content) for m in prompts.calls[2]] == [
        ("system", "You are a helpful assistant."),
        ("human", "Hi, I am Ada."),
        ("ai", "sync reply 0"),
        ("human", "What is my name?"),
        ("ai", "sync reply 1"),
        ("human", "Thanks!"),
    ]
    _check_stored(client, "chat-s", questions, "sync")
    assert drainer.flush(timeout_s=30) == 0
    stored = client.context("chat-s").messages
    assert_exactly_once(
        settings.database_url,
        {m.message_id: ("default", "chat-s", m.seq, m.content) for m in stored},
    )


@runnable_history
@pytest.mark.asyncio
async def test_runnable_with_message_history_async(
    client: MemoryClient, aclient: AsyncMemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """Several ainvoke() turns through the async client, also without a history key."""
    model = GenericFakeChatModel(messages=_replies(3, "async"))

    def histories(session_id: str) -> MemscribeChatMessageHistory:
        return MemscribeChatMessageHistory(session_id, client=client, async_client=aclient)

    chain = _chain(model, histories)
    questions = ["Hello.", "Remember the number 7.", "Which number?"]
    for question in questions:
        await chain.ainvoke({"question": question}, {"configurable": {"session_id": "chat-a"}})
    _check_stored(client, "chat-a", questions, "async")

    # The model alone: history and input go in as one list, the history is sliced off after.
    bare = RunnableWithMessageHistory(GenericFakeChatModel(messages=_replies(2, "bare")), histories)
    for question in ("one", "two"):
        await bare.ainvoke(question, {"configurable": {"session_id": "chat-b"}})
    _check_stored(client, "chat-b", ["one", "two"], "bare")

    assert drainer.flush(timeout_s=30) == 0
    stored = {
        m.message_id: ("default", session, m.seq, m.content)
        for session in ("chat-a", "chat-b")
        for m in client.context(session).messages
    }
    assert_exactly_once(settings.database_url, stored)


@pytest.mark.asyncio
async def test_from_settings(settings: Settings) -> None:
    """from_settings builds a sync and an async client for the configured stores."""
    history = MemscribeChatMessageHistory.from_settings("chat-f", settings, tenant="acme")
    try:
        history.add_messages([HumanMessage("sync")])
        await history.aadd_messages([AIMessage("async")])
        assert [m.content for m in await history.aget_messages()] == ["sync", "async"]
        assert history.client.context("chat-f", tenant="acme").messages[1].role == "assistant"
    finally:
        assert history.async_client is not None
        await history.async_client.aclose()
        history.client.close()


def test_the_example_chat_app_runs(
    client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """docs/examples/langchain_chat.py, as a newcomer runs it: three turns, then its history;
    the drainer makes the six messages durable once."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "langchain_chat.py"), "example-chat"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr  # LangChain's deprecation notice is filtered, on purpose
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        "user: Hi! My name is Ada.",
        "assistant: Nice to meet you, Ada.",
        "user: What is a good name for a cat?",
        "assistant: How about Pixel?",
        "user: And what was my name again?",
        "assistant: You told me: Ada.",
    ]
    assert lines[6:8] == ["history of example-chat: 6 messages", "summary: (none yet)"]
    assert lines[8] == "  human: Hi! My name is Ada."
    stored = client.context("example-chat").messages
    assert [m.role for m in stored] == ["user", "assistant"] * 3
    assert drainer.flush(timeout_s=30) == 0
    assert_exactly_once(
        settings.database_url,
        {m.message_id: ("default", "example-chat", m.seq, m.content) for m in stored},
    )
