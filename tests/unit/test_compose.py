"""The deployment files (docker-compose.yml, Dockerfile) agree with the code they run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from config.celery import QUEUES, celery_config, family_queues
from config.settings import Settings
from worker.cli import build_parser
from worker.families import WorkerPlan, plan_from_args

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

WORKERS = {
    "worker-persist": "persist",
    "worker-llm": "llm",
    "worker-maintenance": "maintenance",
}
APP_SERVICES = {"migrate", *WORKERS, "beat", "flower"}
ENV_PREFIX = "MEMSCRIBE_"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    pairs = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        pairs.append((instruction.upper(), args.strip()))
    return pairs


def argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def option(args: list[str], name: str) -> str | None:
    """The value of ``name`` in ``args``, written either as ``name value`` or ``name=value``."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def memscribe_args(args: list[str]) -> Any:
    """``memscribe ...`` parsed by the real CLI: an unknown option or value fails here."""
    assert args[0] == "memscribe", args
    return build_parser().parse_args(args[1:])


def worker_plan(args: list[str]) -> WorkerPlan:
    """What ``memscribe worker ...`` runs with the default settings (worker/families.py)."""
    return plan_from_args(Settings(database_url="sqlite://"), memscribe_args(args))


def worker_queues(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    found = {}
    for name, service in services.items():
        args = argv(service) if "command" in service else []
        if args[:2] == ["memscribe", "worker"]:
            found[name] = worker_plan(args).queues
    return found


def test_all_services_exist(services: dict[str, dict[str, Any]]) -> None:
    """Every store and every process the design names has a service."""
    expected = {"redis", "postgres", "minio", *APP_SERVICES}
    assert expected <= set(services), expected - set(services)


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    """Redis runs with AOF fsync'd every second and the noeviction policy."""
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    args = argv(redis)
    assert args[0] == "redis-server"
    assert option(args, "--appendonly") == "yes"
    assert option(args, "--appendfsync") == "everysec"
    assert option(args, "--maxmemory-policy") == "noeviction"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ping" in redis["healthcheck"]["test"]


def test_postgres_has_database_volume_and_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    """PostgreSQL creates the memscribe database, keeps it on a volume and reports readiness."""
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    env = environment(postgres)
    assert env["POSTGRES_DB"] == env["POSTGRES_USER"] == env["POSTGRES_PASSWORD"] == "memscribe"
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_minio_serves_api_and_console(services: dict[str, dict[str, Any]]) -> None:
    """MinIO publishes the S3 API on 9000 and its console on 9001."""
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio")
    args = argv(minio)
    assert args[:2] == ["server", "/data"]
    assert option(args, "--console-address") == ":9001"
    assert {"127.0.0.1:9000:9000", "127.0.0.1:9001:9001"} <= {str(p) for p in minio["ports"]}


def test_backups_go_to_minio_through_s3(services: dict[str, dict[str, Any]]) -> None:
    """The app services back up to an s3:// URL on the MinIO service, with its credentials,
    and the maintenance worker starts only once the bucket exists."""
    env = environment(services["worker-maintenance"])
    assert env["MEMSCRIBE_BACKUP_URL"].startswith("${MEMSCRIBE_BACKUP_URL:-s3://memscribe-backups/")
    assert "http://minio:9000" in env["MEMSCRIBE_S3_ENDPOINT_URL"]
    minio_env = environment(services["minio"])
    assert minio_env["MINIO_ROOT_USER"] in env["AWS_ACCESS_KEY_ID"]
    assert minio_env["MINIO_ROOT_PASSWORD"] in env["AWS_SECRET_ACCESS_KEY"]
    bucket = services["minio-bucket"]
    assert "mc mb --ignore-existing local/memscribe-backups" in " ".join(bucket["command"])
    depends = services["worker-maintenance"]["depends_on"]
    assert depends["minio-bucket"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize(("name", "queue"), sorted(WORKERS.items()))
def test_worker_consumes_its_queue(
    services: dict[str, dict[str, Any]], name: str, queue: str
) -> None:
    """Each worker service runs a supervised ``memscribe worker`` on its family's queues."""
    args = argv(services[name])
    assert args[:2] == ["memscribe", "worker"]
    worker = worker_plan(args)
    assert (worker.family, worker.queues, worker.name) == (queue, family_queues(queue), queue)
    assert worker_queues(services)[name] == family_queues(queue)


def test_llm_worker_autoscales_and_others_are_fixed(services: dict[str, dict[str, Any]]) -> None:
    """The I/O-bound llm worker autoscales; persist and maintenance have fixed concurrency,
    all from the family settings (no pool flags hard-coded in the compose file)."""
    high, low = worker_plan(argv(services["worker-llm"])).autoscale or (0, 0)
    assert high > low >= 1
    for name in ("worker-persist", "worker-maintenance"):
        worker = worker_plan(argv(services[name]))
        assert worker.autoscale is None and worker.concurrency >= 1
    for name in WORKERS:
        args = argv(services[name])
        assert {"-c", "--concurrency", "--autoscale"}.isdisjoint(args), name


def test_beat_runs_once(services: dict[str, dict[str, Any]]) -> None:
    """One beat service, replicated for failover: its replicas share the leader lock, so one
    sends (worker/leader.py); no other service runs a scheduler of its own."""
    assert argv(services["beat"])[:2] == ["memscribe", "beat"]
    memscribe_args(argv(services["beat"]))
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 2
    beats = [n for n, s in services.items() if "command" in s and "beat" in argv(s)[:4]]
    assert beats == ["beat"]
    assert celery_config(Settings())["beat_scheduler"] == "worker.leader:LeaderScheduler"


def test_workers_and_beat_are_supervised(services: dict[str, dict[str, Any]]) -> None:
    """No service runs a bare Celery worker or beat: a worker that dies when its broker
    restarts, or stops consuming, must come back without anyone noticing (supervisor)."""
    for name, service in services.items():
        args = argv(service) if "command" in service else []
        if args[:1] == ["celery"]:
            assert args[3] == "flower", f"{name} runs a bare `celery {args[3]}`"
    for name in [*WORKERS, "beat"]:
        service = services[name]
        parsed = memscribe_args(argv(service))
        assert not parsed.no_progress_check, name
        # The supervisor's warm shutdown must finish before compose's SIGKILL.
        grace_s = int(str(service["stop_grace_period"]).removesuffix("s"))
        assert parsed.stop_timeout < grace_s, name
        # If the supervisor itself exits, the container comes back; tini is PID 1.
        assert service["restart"] in ("always", "unless-stopped"), name
        assert service.get("init") is True, name


@pytest.mark.parametrize(("name", "role"), [("worker-persist", "persist-worker"), ("beat", "beat")])
def test_healthchecks_run_the_progress_check(
    services: dict[str, dict[str, Any]], name: str, role: str
) -> None:
    """The persist worker and beat report health with the supervisor's own progress check."""
    test = services[name]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:] == ["memscribe", "health", role]
    assert memscribe_args(test[1:]).role == role


def test_flower_publishes_5555(services: dict[str, dict[str, Any]]) -> None:
    """Flower runs ``memscribe flower`` on 5555, published on the host's loopback only, and
    compose refuses to start it without a basic-auth password."""
    flower = services["flower"]
    args = argv(flower)
    assert args == ["memscribe", "flower"]
    assert memscribe_args(args).handler.__name__ == "cmd_flower"
    assert {str(p) for p in flower["ports"]} == {"127.0.0.1:5555:5555"}
    env = environment(flower)
    # Inside the container it listens on every interface, or the published port reaches nothing.
    assert (env["MEMSCRIBE_FLOWER_ADDRESS"], env["MEMSCRIBE_FLOWER_PORT"]) == ("0.0.0.0", "5555")
    assert re.fullmatch(
        r"\$\{MEMSCRIBE_FLOWER_PASSWORD:\?[^}]+\}", env["MEMSCRIBE_FLOWER_PASSWORD"]
    )
    assert env.get("MEMSCRIBE_FLOWER_AUTH", "true").lower() not in {"false", "0", "no"}
    # The shared settings are merged in, not replaced by Flower's own.
    assert (
        env["MEMSCRIBE_BROKER_URL"] == environment(services["worker-llm"])["MEMSCRIBE_BROKER_URL"]
    )


def test_migrate_is_one_shot_after_postgres(services: dict[str, dict[str, Any]]) -> None:
    """migrate runs ``memscribe migrate`` once, after PostgreSQL is healthy."""
    migrate = services["migrate"]
    assert argv(migrate) == ["memscribe", "migrate"]
    assert depends_on(migrate).get("postgres") == "service_healthy"
    assert str(migrate.get("restart", "no")) in {"no", "False"}


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_workers_wait_for_schema_and_redis(services: dict[str, dict[str, Any]], name: str) -> None:
    """Workers start only after migrate succeeded and Redis is healthy."""
    deps = depends_on(services[name])
    assert deps.get("migrate") == "service_completed_successfully"
    assert deps.get("redis") == "service_healthy"


def test_app_services_build_the_image_and_share_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    """Every app service is built from this repository and points at the compose stores."""
    for name in sorted(APP_SERVICES):
        service = services[name]
        assert service.get("build") in (".", {"context": "."}), name
        env = environment(service)
        assert urlsplit(env["MEMSCRIBE_REDIS_URL"]).hostname == "redis", name
        assert urlsplit(env["MEMSCRIBE_BROKER_URL"]).hostname == "redis", name
        db = urlsplit(env["MEMSCRIBE_DATABASE_URL"])
        assert db.scheme.startswith("postgresql"), name
        assert (db.hostname, db.username, db.password, db.path) == (
            "postgres",
            "memscribe",
            "memscribe",
            "/memscribe",
        ), name
        # The broker is kept apart from the data (another logical database).
        assert env["MEMSCRIBE_BROKER_URL"] != env["MEMSCRIBE_REDIS_URL"], name


def test_env_names_are_real_settings(
    services: dict[str, dict[str, Any]], dockerfile: list[tuple[str, str]]
) -> None:
    """Every MEMSCRIBE_* name in the deployment files is a field of Settings (no silent typos)."""
    names = {key for s in services.values() for key in environment(s) if key.startswith(ENV_PREFIX)}
    names |= set(re.findall(r"\bMEMSCRIBE_[A-Z0-9_]+", DOCKERFILE.read_text(encoding="utf-8")))
    assert names, "no MEMSCRIBE_* settings found"
    unknown = {n for n in names if n.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields}
    assert not unknown, f"not fields of Settings: {sorted(unknown)}"


def test_worker_queues_match_celery_queues(services: dict[str, dict[str, Any]]) -> None:
    """Every queue a worker consumes is declared, and every declared queue has a worker."""
    consumed = {q for queues in worker_queues(services).values() for q in queues}
    assert consumed <= set(QUEUES), consumed - set(QUEUES)
    assert set(QUEUES) <= consumed, set(QUEUES) - consumed


def test_dockerfile_installs_project_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    """The image is python:3.11-slim, pip-installs the project and flower, and runs as non-root."""
    instructions = [i for i, _ in dockerfile]
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    assert ("WORKDIR", "/app") in dockerfile

    copied = " ".join(args for i, args in dockerfile if i == "COPY")
    for needed in (
        "pyproject.toml",
        "README.md",
        "core/",
        "tasks/",
        "worker/",
        "config/",
        "bench/",
    ):
        assert needed in copied, needed

    installs = [
        (n, args) for n, (i, args) in enumerate(dockerfile) if i == "RUN" and "pip install" in args
    ]
    assert installs, "no pip install"
    install_at, install = installs[0]
    pip_args = shlex.split(install.split("pip install", 1)[1].split("&&", 1)[0])
    assert "." in pip_args
    assert any(a.startswith("flower") for a in pip_args)

    users = [(n, args) for n, (i, args) in enumerate(dockerfile) if i == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user_at, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    assert user_at > install_at
    assert instructions.index("CMD") > user_at


def test_dockerfile_default_command_is_persist_worker(dockerfile: list[tuple[str, str]]) -> None:
    """Without a command override the image runs a supervised persist worker."""
    cmds = [args for i, args in dockerfile if i == "CMD"]
    assert len(cmds) == 1
    command = yaml.safe_load(cmds[0])  # the exec form is a JSON array
    assert command[:2] == ["memscribe", "worker"]
    assert worker_plan(command).family == "persist"
    assert "TIKTOKEN_CACHE_DIR" in {args.split("=")[0] for i, args in dockerfile if i == "ENV"}


# --- observability: the metrics service (docs/observability.md) ----------------------------


def test_metrics_service_exports_on_loopback_with_a_readyz_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    """`memscribe metrics` on 9808, published on 127.0.0.1 only, healthy when /readyz is 200."""
    metrics = services["metrics"]
    args = argv(metrics)
    assert args[:2] == ["memscribe", "metrics"]
    parsed = build_parser().parse_args(args[1:])
    assert (parsed.host, parsed.port) == ("0.0.0.0", 9808)
    assert [str(p) for p in metrics["ports"]] == ["127.0.0.1:9808:9808"]
    test = metrics["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:9808/readyz" in test[3]
    assert metrics.get("build") in (".", {"context": "."})


def test_every_app_service_shares_the_metrics_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    """Workers, beat and the exporter write and read samples in one volume, named in settings."""
    for name in sorted({*APP_SERVICES, "metrics"}):
        service = services[name]
        directory = environment(service)["MEMSCRIBE_METRICS_DIR"]
        assert f"metrics:{directory}" in service.get("volumes", []), name
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert "metrics" in compose["volumes"]
