"""A LangGraph agent whose checkpoints live in memscribe, runnable offline: copy it to start.

    memscribe migrate                                 # once: the durable schema
    python docs/examples/langgraph_agent.py           # the sync graph (invoke)
    python docs/examples/langgraph_agent.py --async   # the same saver under ainvoke

The settings come from the environment, as in every memscribe process: ``MEMSCRIBE_REDIS_URL``
and ``MEMSCRIBE_DATABASE_URL`` (config/settings.py). The chat model is a scripted fake from
langchain_core, so no API key and no network are needed; put a real model (``ChatOpenAI``,
``ChatAnthropic``, ... with ``.bind_tools([lookup_order])``) in its place and nothing else
changes.

Every checkpoint is one Redis round trip, and the WAL carries it to the database once a
``memscribe worker`` drains it. Without a worker everything below still works (reads see
Redis first); the checkpoints wait in the WAL until a worker comes.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from core.integrations.langgraph import MemscribeSaver

ORDERS = {"A-17": "shipped Monday, arriving Thursday", "B-42": "waiting for stock"}


@tool
def lookup_order(order_id: str) -> str:
    """The status of an order, by its id (such as A-17)."""
    return ORDERS.get(order_id.upper(), "no such order")


def scripted_model(*replies: AIMessage) -> GenericFakeChatModel:
    """A chat model that answers with ``replies`` in order (it does not read its input): the
    offline stand-in for a real one, scripted for the conversation it serves."""
    return GenericFakeChatModel(messages=iter(replies))


def calls_lookup(order_id: str) -> AIMessage:
    """The model's reply that asks for the tool."""
    call = {"name": "lookup_order", "args": {"order_id": order_id}, "id": f"call-{order_id}"}
    return AIMessage(content="", tool_calls=[{**call, "type": "tool_call"}])


def build_graph(
    model: GenericFakeChatModel,
    checkpointer: MemscribeSaver,
    *,
    interrupt_before: Sequence[str] = (),
) -> Any:
    """agent -> tools (when the model asks for one) -> agent -> ... -> the end."""

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([lookup_order]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)  # "tools", or the end
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer, interrupt_before=list(interrupt_before))


def thread_config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def new_thread_id(name: str) -> str:
    # A new thread per run, so running the example twice does not continue the last run.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def last_words(result: dict[str, Any]) -> str:
    return str(result["messages"][-1].content)


def steps(history: Sequence[Any]) -> str:
    """Each checkpoint as "<step> <node it waits for>", newest first."""
    return ", ".join(f"{s.metadata['step']} {s.next[0] if s.next else 'end'}" for s in history)


def run() -> None:
    saver = MemscribeSaver.from_settings()  # the MEMSCRIBE_* settings; share one per process
    thread = new_thread_id("orders")
    config = thread_config(thread)
    graph = build_graph(
        scripted_model(
            calls_lookup("A-17"),
            AIMessage("Order A-17 shipped Monday and arrives Thursday."),
            AIMessage("You're welcome!"),
        ),
        saver,
    )

    # Two turns on one thread: the second turn starts from the first one's messages.
    result = graph.invoke({"messages": [HumanMessage("Where is my order A-17?")]}, config)
    print(f"turn 1: {last_words(result)}")
    result = graph.invoke({"messages": [HumanMessage("Thanks!")]}, config)
    print(f"turn 2: {last_words(result)} ({len(result['messages'])} messages on the thread)")

    # Another saver and graph (another process, or after a restart) resume the thread.
    later = build_graph(
        scripted_model(AIMessage("It arrives Thursday.")), MemscribeSaver.from_settings()
    )
    state = later.get_state(config)
    print(
        f"resumed: {len(state.values['messages'])} messages, waiting for: {state.next or 'input'}"
    )
    history = list(later.get_state_history(config))
    print(f"history: {len(history)} checkpoints, newest first: {steps(history)}")
    result = later.invoke({"messages": [HumanMessage("When does it arrive?")]}, config)
    print(f"turn 3: {last_words(result)}")

    # Human in the loop: stop before any tool runs, look at the call, then resume. The pause
    # is a checkpoint like the others, so a different process may resume it.
    paused_thread = new_thread_id("approval")
    paused_config = thread_config(paused_thread)
    guarded = build_graph(scripted_model(calls_lookup("B-42")), saver, interrupt_before=["tools"])
    guarded.invoke({"messages": [HumanMessage("And order B-42?")]}, paused_config)
    paused = guarded.get_state(paused_config)
    call = paused.values["messages"][-1].tool_calls[0]
    print(f"paused before {paused.next[0]}: {call['name']}({call['args']['order_id']})")
    approved = build_graph(
        scripted_model(AIMessage("Order B-42 is waiting for stock.")),
        MemscribeSaver.from_settings(),
        interrupt_before=["tools"],
    )
    result = approved.invoke(None, paused_config)  # None: go on from the pause
    print(f"approved: {last_words(result)}")

    # delete_thread: gone for every reader at once; the purge deletes the rows later.
    for thread_id in (thread, paused_thread):
        saver.delete_thread(thread_id)
    left = len(list(saver.list(config))) + len(list(saver.list(paused_config)))
    print(f"deleted: {left} checkpoints left, state {later.get_state(config).values}")


async def run_async() -> None:
    """The same saver under ``ainvoke``: its async methods run on redis.asyncio."""
    saver = MemscribeSaver.from_settings()
    thread = new_thread_id("orders-async")
    config = thread_config(thread)
    graph = build_graph(
        scripted_model(calls_lookup("A-17"), AIMessage("A-17 arrives Thursday.")), saver
    )
    result = await graph.ainvoke({"messages": [HumanMessage("Where is A-17?")]}, config)
    print(f"async turn 1: {last_words(result)}")
    history = [snapshot async for snapshot in graph.aget_state_history(config)]
    print(f"async history: {len(history)} checkpoints, newest first: {steps(history)}")
    await saver.adelete_thread(thread)
    print(f"async deleted: state {(await graph.aget_state(config)).values}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--async", dest="use_async", action="store_true", help="use ainvoke")
    if parser.parse_args().use_async:
        asyncio.run(run_async())
    else:
        run()


if __name__ == "__main__":
    main()
