"""The task stack of a conversation state: ordered tasks, each with ordered checkpoints.

A task and a checkpoint go pending -> in_progress -> evaluating -> complete; evaluating may go
back to in_progress (the evaluation failed); anything not complete may be paused and resumed
(back to in_progress). The stack is bounded: ``MEMSCRIBE_STATE_MAX_TASKS`` tasks (10) and
``MEMSCRIBE_STATE_MAX_CHECKPOINTS`` checkpoints per task (50). Tasks are plain JSON objects
(``{"id", "title", "status", "checkpoints": [{"id", "title", "status"}], "data"}``) so the
stack is stored, patched and read back like every other field.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from core.errors import ValidationError

STATUSES = ("pending", "in_progress", "evaluating", "complete", "paused")
# status -> the statuses it may move to
MOVES: dict[str, set[str]] = {
    "pending": {"in_progress", "paused", "complete"},
    "in_progress": {"evaluating", "paused", "complete"},
    "evaluating": {"in_progress", "complete", "paused"},
    "paused": {"in_progress", "pending"},
    "complete": set(),
}


def _check_move(what: str, current: str, status: str) -> None:
    if status not in STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(STATUSES)}; got {status!r}")
    if status != current and status not in MOVES[current]:
        raise ValidationError("status", f"{what} cannot go from {current} to {status}")


def new_task(
    title: str,
    checkpoints: Iterable[str],
    *,
    max_checkpoints: int,
    task_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if not isinstance(title, str) or not title.strip():
        raise ValidationError("title", "must be a non-empty string")
    names = list(checkpoints)
    if len(names) > max_checkpoints:
        raise ValidationError(
            "checkpoints",
            f"{len(names)} checkpoints (limit {max_checkpoints}, MEMSCRIBE_STATE_MAX_CHECKPOINTS)",
        )
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"checkpoints[{index}]", "must be a non-empty string")
    if data is not None and not isinstance(data, dict):
        raise ValidationError("data", "must be a JSON object (dict)")
    return {
        "id": task_id or uuid.uuid4().hex,
        "title": title,
        "status": "pending",
        "checkpoints": [
            {"id": str(index + 1), "title": name, "status": "pending"}
            for index, name in enumerate(names)
        ],
        "data": data or {},
    }


def push(stack: list[dict[str, Any]], task: dict[str, Any], *, max_tasks: int) -> None:
    if len(stack) >= max_tasks:
        raise ValidationError(
            "tasks",
            f"the stack holds {len(stack)} tasks (limit {max_tasks}, MEMSCRIBE_STATE_MAX_TASKS)",
        )
    if any(existing["id"] == task["id"] for existing in stack):
        raise ValidationError("task_id", f"{task['id']!r} is already on the stack")
    stack.append(task)


def find(stack: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    for task in stack:
        if task["id"] == task_id:
            return task
    raise ValidationError("task_id", f"no task {task_id!r} on the stack")


def set_status(stack: list[dict[str, Any]], task_id: str, status: str) -> None:
    task = find(stack, task_id)
    _check_move(f"task {task_id!r}", task["status"], status)
    task["status"] = status


def set_checkpoint(
    stack: list[dict[str, Any]], task_id: str, checkpoint_id: str, status: str
) -> None:
    task = find(stack, task_id)
    for checkpoint in task["checkpoints"]:
        if checkpoint["id"] == checkpoint_id:
            _check_move(f"checkpoint {checkpoint_id!r}", checkpoint["status"], status)
            checkpoint["status"] = status
            if status == "in_progress" and task["status"] == "pending":
                task["status"] = "in_progress"
            if all(c["status"] == "complete" for c in task["checkpoints"]):
                task["status"] = "complete"
            return
    raise ValidationError("checkpoint_id", f"task {task_id!r} has no checkpoint {checkpoint_id!r}")


def current(stack: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The top of the stack that is not complete (the task being worked on)."""
    for task in reversed(stack):
        if task["status"] != "complete":
            found: dict[str, Any] = task
            return found
    return None


def progress(task: dict[str, Any]) -> float:
    """The share of the task's checkpoints that are complete (a task without any: 0 or 1)."""
    checkpoints: list[dict[str, Any]] = task["checkpoints"]
    if not checkpoints:
        return 1.0 if task["status"] == "complete" else 0.0
    done = sum(1 for c in checkpoints if c["status"] == "complete")
    return done / len(checkpoints)


def check_stack(stack: Any, *, max_tasks: int, max_checkpoints: int) -> None:
    """A whole stack (e.g. assigned by the app) against the bounds and the shapes."""
    if not isinstance(stack, list):
        raise ValidationError("tasks", "must be a list of tasks")
    if len(stack) > max_tasks:
        raise ValidationError(
            "tasks", f"{len(stack)} tasks (limit {max_tasks}, MEMSCRIBE_STATE_MAX_TASKS)"
        )
    for index, task in enumerate(stack):
        where = f"tasks[{index}]"
        if not isinstance(task, dict) or not isinstance(task.get("id"), str):
            raise ValidationError(where, "must be an object with a string id")
        if task.get("status") not in STATUSES:
            raise ValidationError(f"{where}.status", f"must be one of {', '.join(STATUSES)}")
        checkpoints = task.get("checkpoints", [])
        if not isinstance(checkpoints, list) or len(checkpoints) > max_checkpoints:
            raise ValidationError(
                f"{where}.checkpoints",
                f"must be a list of at most {max_checkpoints} (MEMSCRIBE_STATE_MAX_CHECKPOINTS)",
            )
        for position, checkpoint in enumerate(checkpoints):
            if not isinstance(checkpoint, dict) or checkpoint.get("status") not in STATUSES:
                raise ValidationError(
                    f"{where}.checkpoints[{position}].status",
                    f"must be one of {', '.join(STATUSES)}",
                )
