"""Workers per family: the celery argv each family gets from the settings, and its limits."""

from __future__ import annotations

import pytest
from celery import Celery

import tasks.backups
import tasks.erasure
import tasks.llm
import tasks.persist
import tasks.retention
from config.celery import FAMILIES, celery_config
from config.settings import Settings
from worker.cli import build_parser
from worker.families import plan, plan_from_args

DB = "sqlite:///./var/test-families.db"


def argv_of(settings: Settings, *cli: str) -> list[str]:
    """The celery argv ``memscribe worker <cli>`` would supervise."""
    args = build_parser().parse_args(["worker", *cli])
    return plan_from_args(settings, args).command(loglevel="INFO", hostname="host")


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_each_family_gets_its_queues_pool_and_name() -> None:
    """persist: -c 2; llm: --autoscale 8,1; maintenance: -c 1; each with its .retry queue."""
    settings = Settings(database_url=DB)
    persist = argv_of(settings, "persist")
    llm = argv_of(settings, "llm")
    maintenance = argv_of(settings, "maintenance")
    assert persist[:5] == [persist[0], "-m", "celery", "-A", "worker.app"]
    for argv, family in ((persist, "persist"), (llm, "llm"), (maintenance, "maintenance")):
        assert argv[5] == "worker"
        assert option(argv, "-Q") == f"{family},{family}.retry"
        assert option(argv, "-n") == f"{family}@host"
        assert option(argv, "-P") == "prefork"
    assert (option(persist, "-c"), option(persist, "--autoscale")) == ("2", None)
    assert (option(llm, "-c"), option(llm, "--autoscale")) == (None, "8,1")
    assert (option(maintenance, "-c"), option(maintenance, "--autoscale")) == ("1", None)


def test_family_settings_choose_the_pool() -> None:
    """MEMSCRIBE_*_CONCURRENCY and MEMSCRIBE_LLM_AUTOSCALE (empty: fixed) set the pool."""
    settings = Settings(
        database_url=DB,
        persist_concurrency=6,
        maintenance_concurrency=3,
        llm_autoscale="4,2",
    )
    assert option(argv_of(settings, "persist"), "-c") == "6"
    assert option(argv_of(settings, "maintenance"), "-c") == "3"
    assert option(argv_of(settings, "llm"), "--autoscale") == "4,2"
    fixed = Settings(database_url=DB, llm_autoscale="", llm_concurrency=5)
    llm = argv_of(fixed, "llm")
    assert (option(llm, "-c"), option(llm, "--autoscale")) == ("5", None)


def test_options_override_the_settings() -> None:
    """--families, -Q, -c, --autoscale and -n still work and win over the family settings."""
    settings = Settings(database_url=DB)
    assert option(argv_of(settings, "llm", "-c", "3"), "-c") == "3"
    assert option(argv_of(settings, "llm", "-c", "3"), "--autoscale") is None
    assert option(argv_of(settings, "persist", "--autoscale", "5,2"), "--autoscale") == "5,2"
    both = argv_of(settings, "--families", "persist,llm", "-n", "mixed")
    assert option(both, "-Q") == "persist,persist.retry,llm,llm.retry"
    assert (option(both, "-n"), option(both, "-c")) == ("mixed@host", "2")
    exact = argv_of(settings, "-Q", "llm.retry")
    assert (option(exact, "-Q"), option(exact, "-n")) == ("llm.retry", "llm@host")
    assert option(exact, "--autoscale") == "8,1"
    assert option(argv_of(settings), "-Q") == "persist,persist.retry"


def test_family_and_families_are_exclusive() -> None:
    """A positional family and --families (or -Q) cannot both be given; unknown ones fail."""
    parser = build_parser()
    for bad in (["persist", "--families", "llm"], ["llm", "-Q", "llm"], ["cache"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["worker", *bad])


def test_bad_autoscale_setting_fails_at_start_up() -> None:
    """MEMSCRIBE_LLM_AUTOSCALE must be MAX,MIN with MAX >= MIN >= 1 (or empty)."""
    for bad in ("1,4", "0,0", "8", "a,b"):
        with pytest.raises(ValueError, match="llm_autoscale"):
            Settings(database_url=DB, llm_autoscale=bad)
    assert Settings(database_url=DB, llm_autoscale=" 4 , 1 ").llm_autoscale_range == (4, 1)
    # Beat sends the llm queue a tick a minute: a keepalive that long would never shrink.
    with pytest.raises(ValueError, match="autoscale_keepalive_s"):
        Settings(database_url=DB, autoscale_keepalive_s=60)


def test_time_limits_per_family_are_in_the_celery_config() -> None:
    """Each task gets its family's hard limit and a 90 % soft limit; backup keeps its own."""
    settings = Settings(
        database_url=DB,
        persist_time_limit_s=60,
        llm_time_limit_s=300,
        maintenance_time_limit_s=7200,
    )
    assert tasks.backups and tasks.erasure and tasks.llm and tasks.persist and tasks.retention
    app = Celery("limits")  # the shared tasks of the modules imported above
    app.config_from_object(celery_config(settings))
    app.finalize()
    expected = {"persist": (60, 54), "llm": (300, 270), "maintenance": (7200, 6480)}
    names = [name for name in app.tasks if name.split(".")[0] in FAMILIES]
    assert {name.split(".")[0] for name in names} == set(FAMILIES)
    for name in names:
        task = app.tasks[name]
        if name in ("maintenance.backup", "maintenance.prune_backups"):
            continue
        limits = (task.time_limit, task.soft_time_limit)
        assert limits == expected[name.split(".")[0]], name
    # A task's own limit is not shortened by its family's.
    assert app.tasks["maintenance.backup"].time_limit == 6 * 3600
    assert app.tasks["maintenance.prune_backups"].time_limit == 3600
    # The global limit stays the fallback of anything outside a family.
    assert app.conf.task_time_limit == settings.task_time_limit_s
    assert app.conf.worker_autoscaler == "worker.autoscale:Autoscaler"


def test_family_limits_must_fit_the_visibility_timeout() -> None:
    """A persist or llm limit at or above the visibility timeout is refused at start-up."""
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        Settings(database_url=DB, visibility_timeout_s=600, llm_time_limit_s=600)
    Settings(database_url=DB, visibility_timeout_s=600, maintenance_time_limit_s=7200)


def test_plan_defaults_to_persist() -> None:
    """With no family, queues or options the worker is a persist worker from its settings."""
    worker = plan(Settings(database_url=DB, persist_concurrency=3))
    assert (worker.family, worker.queues, worker.concurrency, worker.name) == (
        "persist",
        ["persist", "persist.retry"],
        3,
        "persist",
    )
