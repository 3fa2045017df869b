"""A real LangGraph graph on MemscribeSaver: the checkpoints its loop writes, trigger channels
versioned without a value among them, go in and come back out."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest
import redis
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from config.settings import Settings
from core.integrations.langgraph import MemscribeSaver


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: Annotated[int, operator.add]


def _agent(state: Chat) -> dict[str, Any]:
    return {"messages": [AIMessage(content=f"reply {len(state['messages'])}")], "turns": 1}


@pytest.fixture
def saver(settings: Settings, redis_client: redis.Redis) -> Iterator[MemscribeSaver]:
    built = MemscribeSaver.from_settings(settings, tenant="graph")
    yield built
    built.store.redis.close()


def test_a_graph_runs_two_turns_and_reads_its_state(saver: MemscribeSaver) -> None:
    """Two invocations of START -> agent -> END keep the whole conversation."""
    builder = StateGraph(Chat)
    builder.add_node("agent", _agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    graph = builder.compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "chat-1"}}
    graph.invoke({"messages": [HumanMessage(content="hello")], "turns": 0}, config)
    graph.invoke({"messages": [HumanMessage(content="again")]}, config)
    state = graph.get_state(config)
    assert [m.content for m in state.values["messages"]] == [
        "hello",
        "reply 1",
        "again",
        "reply 3",
    ]
    assert state.values["turns"] == 2
    assert len(list(graph.get_state_history(config))) == 6


def test_a_channel_versioned_without_a_value_reads_back_absent(saver: MemscribeSaver) -> None:
    """new_versions may name a channel the checkpoint holds no value for (a trigger)."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": [HumanMessage(content="hi")]}
    version = saver.get_next_version(None, None)
    checkpoint["channel_versions"] = {"messages": version, "branch:to:agent": version}
    stored = saver.put(
        {"configurable": {"thread_id": "t-1", "checkpoint_ns": ""}},
        checkpoint,
        {"source": "loop", "step": 0, "parents": {}},
        {"messages": version, "branch:to:agent": version},
    )
    found = saver.get_tuple(stored)
    assert found is not None and found.checkpoint["id"] == checkpoint["id"]
    assert set(found.checkpoint["channel_values"]) == {"messages"}
    saver.copy_thread("t-1", "t-2")
    copied = saver.get_tuple({"configurable": {"thread_id": "t-2"}})
    assert copied is not None and copied.checkpoint["id"] == checkpoint["id"]
