"""A chat app with memory: LangChain's ``RunnableWithMessageHistory`` on memscribe.

Every turn reads the conversation from Redis (one call), sends it to the model with the new
question, and appends the question and the answer to Redis in one call; memscribe's workers
make them durable in PostgreSQL. The model is LangChain's offline fake, so this runs without
an API key; swap in a real one (``ChatOpenAI(model="gpt-4o-mini")``) in ``make_model``.

    pip install 'memscribe[langchain]'
    export MEMSCRIBE_REDIS_URL=redis://127.0.0.1:6379/0
    export MEMSCRIBE_DATABASE_URL=postgresql+psycopg2://postgres@127.0.0.1:5432/memscribe
    memscribe migrate                               # once: the durable schema
    python docs/examples/langchain_chat.py [session-id]
    memscribe flush                                 # or keep a worker running: durable now

Run it twice with the same session id: the second run starts from the first one's history.
See docs/langchain-history.md.
"""

from __future__ import annotations

import asyncio
import sys
import warnings

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from core.async_client import AsyncMemoryClient
from core.client import MemoryClient
from core.integrations.langchain import MemscribeChatMessageHistory

# LangChain has deprecated RunnableWithMessageHistory (langchain-core 1.3.3) in favour of
# LangGraph's persistence; it still works, and many chat apps are written with it.
warnings.filterwarnings("ignore", message="RunnableWithMessageHistory is deprecated")

QUESTIONS = ["Hi! My name is Ada.", "What is a good name for a cat?"]
ASYNC_QUESTION = "And what was my name again?"


def make_model() -> GenericFakeChatModel:
    """The chat model: a fake that answers from a list, so the example runs offline."""
    replies = ["Nice to meet you, Ada.", "How about Pixel?", "You told me: Ada."]
    return GenericFakeChatModel(messages=iter([AIMessage(reply) for reply in replies]))


def make_chain(
    memory: MemoryClient, model: GenericFakeChatModel, amemory: AsyncMemoryClient | None = None
) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a friendly assistant. Keep answers short."),
            MessagesPlaceholder("history"),  # the summary (once there is one), then the turns
            ("human", "{question}"),
        ]
    )

    def history_for(session_id: str) -> MemscribeChatMessageHistory:
        # Cheap: the clients (and their connection pools) are shared, made once per process.
        return MemscribeChatMessageHistory(session_id, client=memory, async_client=amemory)

    return RunnableWithMessageHistory(
        prompt | model,
        history_for,
        input_messages_key="question",
        history_messages_key="history",
    )


async def ask_async(
    memory: MemoryClient, model: GenericFakeChatModel, session_id: str, question: str
) -> str:
    """One turn from asyncio code (a web handler): reads and writes on redis.asyncio."""
    async with AsyncMemoryClient.from_client(memory) as amemory:
        chain = make_chain(memory, model, amemory)
        reply = await chain.ainvoke(
            {"question": question}, {"configurable": {"session_id": session_id}}
        )
    return str(reply.content)


def main(argv: list[str]) -> int:
    session_id = argv[1] if len(argv) > 1 else "langchain-example"
    memory = MemoryClient.from_settings()  # MEMSCRIBE_REDIS_URL, MEMSCRIBE_DATABASE_URL, ...
    try:
        model = make_model()
        chain = make_chain(memory, model)
        config = {"configurable": {"session_id": session_id}}
        for question in QUESTIONS:
            reply = chain.invoke({"question": question}, config)
            print(f"user: {question}")
            print(f"assistant: {reply.content}")
        answer = asyncio.run(ask_async(memory, model, session_id, ASYNC_QUESTION))
        print(f"user: {ASYNC_QUESTION}")
        print(f"assistant: {answer}")

        history = MemscribeChatMessageHistory(session_id, client=memory)
        messages = history.messages
        print(f"history of {session_id}: {len(messages)} messages")
        print(f"summary: {history.summary or '(none yet)'}")
        for message in messages:
            print(f"  {message.type}: {message.content}")
    finally:
        memory.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
