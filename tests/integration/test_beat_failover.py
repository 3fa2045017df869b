"""Beat that fails over (worker/leader.py): one sending beat among several, a standby that takes
over within 15 s of a kill -9, one send per schedule slot throughout, and a lock renewed only
by its owner."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from core.store.keys import Keys
from worker import leader, processes, runtime

SettingsFactory = Callable[..., Settings]
FLUSH = "persist-flush"
INTERVAL_S = 0.5
TAKEOVER_BOUND_S = 15.0


def _wait(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _flush_sends(client: redis.Redis, settings: Settings) -> list[dict[str, str]]:
    return [send for send in leader.sends(client, settings) if send["entry"] == FLUSH]


def _other_owner(client: redis.Redis, settings: Settings, *, than: str) -> str | None:
    """The lock's owner if it is not ``than``."""
    owner = leader.beat_owner(client, settings)
    return owner if owner != than else None


def _assert_one_send_per_slot(sends: list[dict[str, str]]) -> None:
    per_entry_slot = Counter((send["entry"], send["slot"]) for send in sends)
    twice = {slot: n for slot, n in per_entry_slot.items() if n > 1}
    assert not twice, f"slots sent more than once: {twice}"


def _assert_rate_kept(sends: list[dict[str, str]]) -> None:
    """The sends fill about every slot between the first and the last: no doubling (the
    slot check), and no beat silently sending half the ticks either."""
    slots = sorted(int(send["slot"]) for send in sends)
    span = slots[-1] - slots[0] + 1
    assert len(slots) <= span
    assert len(slots) >= 0.8 * span, f"{len(slots)} sends over {span} slots"


def test_two_beats_send_each_slot_once_and_a_standby_takes_over_a_kill_9(
    redis_client: redis.Redis, make_settings: SettingsFactory, spawn: Any
) -> None:
    """Two beats for ~60 s at a 0.5 s flush interval: one sends, each slot once, at the
    interval's rate; kill -9 of the active one: the other owns the lock and sends within
    15 s, and no slot was sent twice over the whole run."""
    settings = make_settings(flush_interval_s=INTERVAL_S)
    beats = [
        spawn(processes.beat_command(loglevel="INFO"), settings=settings, name=f"beat{n}")
        for n in range(2)
    ]
    owner = _wait(
        lambda: leader.beat_owner(redis_client, settings), timeout_s=30, what="a beat owner"
    )
    _wait(lambda: _flush_sends(redis_client, settings), timeout_s=15, what="the first send")

    time.sleep(25)
    before = _flush_sends(redis_client, settings)
    assert {send["owner"] for send in before} == {owner}  # the standby sent nothing
    assert leader.beat_owner(redis_client, settings) == owner
    _assert_one_send_per_slot(before)
    _assert_rate_kept(before)
    assert len(before) >= 0.8 * 25 / INTERVAL_S

    active = next(beat for beat in beats if beat.pid == leader.owner_pid(owner))
    standby = next(beat for beat in beats if beat is not active)
    processes.kill(active)
    killed_at = time.monotonic()
    last_old = len(_flush_sends(redis_client, settings))

    new_owner = _wait(
        lambda: _other_owner(redis_client, settings, than=owner),
        timeout_s=TAKEOVER_BOUND_S,
        what="the standby to take the lock",
    )
    assert leader.owner_pid(new_owner) == standby.pid
    _wait(
        lambda: any(s["owner"] == new_owner for s in _flush_sends(redis_client, settings)),
        timeout_s=TAKEOVER_BOUND_S - (time.monotonic() - killed_at),
        what="the new owner's first send",
    )
    assert standby.poll() is None

    time.sleep(max(0.0, 20 - (time.monotonic() - killed_at)))
    every = leader.sends(redis_client, settings)
    flushes = [send for send in every if send["entry"] == FLUSH]
    _assert_one_send_per_slot(every)  # every entry, not only the flush tick
    after = [send for send in flushes[last_old:] if send["owner"] == new_owner]
    assert {send["owner"] for send in flushes} == {owner, new_owner}
    assert all(send["owner"] == new_owner for send in flushes[last_old:])
    _assert_rate_kept(after)


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_supervised_beats_hand_over_at_once_on_sigterm(
    redis_client: redis.Redis, make_settings: SettingsFactory, spawn: Any
) -> None:
    """Two `memscribe beat`: SIGTERM of the sending one releases its lock (its own), and the
    other sends within a renewal interval rather than a whole TTL."""
    settings = make_settings(flush_interval_s=INTERVAL_S)
    supervisors = [
        spawn(processes.supervised_beat_command(stop_timeout_s=10), settings=settings, name=f"b{n}")
        for n in range(2)
    ]
    owner = _wait(
        lambda: leader.beat_owner(redis_client, settings), timeout_s=30, what="a beat owner"
    )
    _wait(lambda: _flush_sends(redis_client, settings), timeout_s=15, what="the first send")
    parent = _parent_pid(leader.owner_pid(owner))
    active = next(s for s in supervisors if s.pid == parent)
    processes.stop(active, timeout_s=15)
    assert active.returncode is not None
    stopped_at = time.monotonic()

    new_owner = _wait(
        lambda: _other_owner(redis_client, settings, than=owner),
        timeout_s=settings.beat_lock_ttl_s,
        what="the standby to take the released lock",
    )
    assert _parent_pid(leader.owner_pid(new_owner)) != parent
    assert time.monotonic() - stopped_at < settings.beat_lock_ttl_s
    _wait(
        lambda: any(s["owner"] == new_owner for s in _flush_sends(redis_client, settings)),
        timeout_s=10,
        what="the new owner's first send",
    )
    _assert_one_send_per_slot(leader.sends(redis_client, settings))


@pytest.fixture
def in_process_runtime(
    redis_client: redis.Redis, make_settings: SettingsFactory
) -> Iterator[Settings]:
    """The task runtime of this process built from test settings (a long flush interval, so
    a slot boundary does not fall inside a test)."""
    settings = make_settings(flush_interval_s=3600.0)
    runtime._current = runtime.Runtime(settings=settings)
    yield settings
    runtime._current.redis.close()
    runtime._current = None


def _scheduler(settings: Settings) -> leader.LeaderScheduler:
    app = Celery("beat-test", set_as_current=False)
    app.config_from_object(celery_config(settings))
    return leader.LeaderScheduler(app=app)


def test_a_lock_whose_token_changed_is_not_renewed(
    redis_client: redis.Redis, in_process_runtime: Settings
) -> None:
    """A leader whose lock now holds another token neither extends it nor sends again."""
    settings = in_process_runtime
    scheduler = _scheduler(settings)
    assert scheduler.tick() <= settings.beat_lock_ttl_s / 3
    assert scheduler.leading
    assert leader.beat_owner(redis_client, settings) == scheduler.lock.token

    key = Keys.of(settings).beat_leader()
    redis_client.set(key, "other-host:1:abcd", px=4000)
    time.sleep(scheduler.renew_gap_s)  # due for renewal
    assert scheduler.tick() == pytest.approx(settings.beat_lock_ttl_s / 3)
    assert not scheduler.leading
    assert redis_client.get(key) == "other-host:1:abcd"
    assert 0 < redis_client.pttl(key) <= 4000  # not extended to our TTL
    sent = len(leader.sends(redis_client, settings))
    scheduler.apply_entry(scheduler.schedule[FLUSH])
    assert len(leader.sends(redis_client, settings)) == sent

    # Once that lock is gone, the old leader takes it again like any standby.
    redis_client.delete(key)
    scheduler.tick()
    assert scheduler.leading and redis_client.get(key) == scheduler.lock.token
    scheduler.close()
    assert redis_client.get(key) is None  # released on shutdown: its own lock only


def test_a_new_leader_does_not_resend_the_old_leaders_slot(
    redis_client: redis.Redis, in_process_runtime: Settings
) -> None:
    """After a failover within one slot, the new leader's first due entry is skipped, so the
    entry is sent once for the slot."""
    settings = in_process_runtime
    first, second = _scheduler(settings), _scheduler(settings)
    assert first.tick() is not None and first.leading
    first.apply_entry(first.schedule[FLUSH])
    first.close()  # the old leader goes; its slot claim stays

    second.tick()
    assert second.leading
    second.apply_entry(second.schedule[FLUSH])
    sends = _flush_sends(redis_client, settings)
    assert [send["owner"] for send in sends] == [first.lock.token]
    second.close()


def test_a_leader_cut_off_from_redis_stops_then_takes_its_own_lock_back(
    redis_client: redis.Redis, in_process_runtime: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal that fails on a Redis error stops the leader at once; when Redis answers
    again and the lock still holds its token, it leads again without waiting for the TTL."""
    settings = in_process_runtime
    scheduler = _scheduler(settings)
    scheduler.tick()
    assert scheduler.leading
    real_renew = scheduler.lock.renew

    def cut_off() -> bool:
        raise redis.ConnectionError("Redis is unreachable")

    monkeypatch.setattr(scheduler.lock, "renew", cut_off)
    time.sleep(scheduler.renew_gap_s)
    assert scheduler.tick() == pytest.approx(settings.beat_lock_ttl_s / 3)
    assert not scheduler.leading

    monkeypatch.setattr(scheduler.lock, "renew", real_renew)
    scheduler.tick()
    assert scheduler.leading
    assert leader.beat_owner(redis_client, settings) == scheduler.lock.token
    scheduler.close()
