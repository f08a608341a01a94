"""``lvbao``: the one command for running and operating the system."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from lvbao import registry
from shared.config import DEFAULT_PORT, Settings
from shared.db import Database
from shared.logs import configure_logging


@contextmanager
def _database(service: str, settings: Settings) -> Iterator[Database]:
    db = registry.database(service, settings)
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def _redis(settings: Settings) -> Iterator[redis.Redis]:
    from shared.parts import make_redis

    client = make_redis(settings)
    try:
        yield client
    finally:
        client.close()


def _settings() -> Settings:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_json)
    return settings


# -- database ----------------------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade

    settings = _settings()
    services = args.services or registry.SERVICES
    for service in services:
        registry.module(service, "config")  # unknown names fail before anything is migrated
    for service in services:
        with _database(service, settings) as db:
            upgrade(service, db)
            if service == "points":
                # The province's default rules ship as data; activities learns their limits through the outbox.
                from services.points.rules import install_default_rules

                installed = install_default_rules(db)
                if installed:
                    print(f"installed {installed} default rule(s)")
        print(f"migrated {service}")
    return 0


def cmd_revision(args: argparse.Namespace) -> int:
    from shared.migrations import revision

    with _database(args.service, _settings()) as db:
        revision(args.service, db, args.message)
    return 0


# -- processes ----------------------------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    """An RQ worker for the named services' queues (see shared.worker)."""
    from shared.parts import make_redis
    from shared.worker import run_worker

    settings = _settings()
    queues = args.queues or list(registry.SERVICES)
    for name in queues:
        registry.module(name, "tasks")  # fail now, not at the first job, on an unknown service
    run_worker(lambda: make_redis(settings), queues, burst=args.burst, logging_level=settings.log_level)
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    """Relay every service's outbox to the queues and run every service's chores (see each ``parts.py``:
    device revocations, redemptions waiting for points, uncollected pickups, board updates a worker left
    behind), plus redelivery of unacknowledged events and pruning of old infrastructure rows."""
    from shared.outbox import OutboxRelay, run_relays

    settings = _settings()
    parts = [registry.build(name, settings) for name in registry.SERVICES]
    redis_client = parts[0].redis
    relays = [OutboxRelay(p.name, p.db, p.models, redis_client) for p in parts]
    if args.once:
        print(json.dumps({relay.service: relay.relay_once() for relay in relays}))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    chores = [chore for p, relay in zip(parts, relays, strict=True) for chore in p.relay_chores(relay)]
    run_relays(relays, poll_interval=args.poll_interval, should_stop=stop.is_set, chores=chores)
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    """Queue lengths and failed jobs; ``--requeue`` re-drives the failed ones."""
    from rq.registry import FailedJobRegistry

    from shared.outbox import queue_for

    report = {}
    with _redis(_settings()) as redis_client:
        for name in registry.SERVICES:
            queue = queue_for(name, redis_client)
            failed = FailedJobRegistry(queue=queue)
            requeued = 0
            if args.requeue:
                for job_id in failed.get_job_ids():
                    failed.requeue(job_id)
                    requeued += 1
            report[name] = {"queued": queue.count, "failed": failed.count, "requeued": requeued}
    print(json.dumps(report, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Reconcile actions, redemptions, ledger entries, balances and stock; exit 1 naming every mismatch (2: only
    work in flight)."""
    from lvbao.verify import reconcile
    from lvbao.verify_rewards import reconcile_redemptions

    settings = _settings()
    with _database("activities", settings) as activities, _database("points", settings) as points, \
            _database("rewards", settings) as rewards:
        deadline = time.monotonic() + args.wait
        while True:
            report = reconcile_redemptions(rewards, points, reconcile(activities, points))
            if report.exit_code != 2 or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    print("\n".join(report.lines()))
    return report.exit_code


def cmd_boards(args: argparse.Namespace) -> int:
    """``rebuild``: recompute boards from the ledger (after Redis lost them); ``check``: exit 1 naming every
    board that differs from the ledger."""
    from datetime import date

    from services.points.board_rebuild import differences, institutions, rebuild, snapshot

    day = date.fromisoformat(args.date) if args.date else None
    settings = _settings()
    with _database("points", settings) as db, _redis(settings) as redis_client:
        if args.action == "rebuild":
            for result in rebuild(db, redis_client, args.institution or None, day):
                print(json.dumps(result))
            return 0
        if args.institution:
            ids = args.institution
        else:
            with snapshot(db) as session:
                ids = institutions(session)
        found = {i: differences(db, redis_client, i, day) for i in ids}
        for institution_id, lines in found.items():
            print(f"institution {institution_id}: " + ("boards equal the ledger" if not lines else "DIFFERENT"))
            for line in lines:
                print(f"  {line}")
        return 1 if any(found.values()) else 0


# -- accounts and keys ----------------------------------------------------------------------------------------------


def cmd_admin_create(args: argparse.Namespace) -> int:
    settings = _settings()
    with _database("gateway", settings) as db, _redis(settings) as redis_client:
        return _admin_create(args, settings, db, redis_client)


def _admin_create(args: argparse.Namespace, settings: Settings, db: Database, redis_client: redis.Redis) -> int:
    from sqlalchemy import select

    from services.gateway.admins import AdminAccounts
    from services.gateway.models import Institution

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("LVBAO_ADMIN_PASSWORD") or getpass.getpass("password: ")
    institution_id = None
    if args.institution:
        with db.uow() as uow:
            institution_id = uow.session.scalars(
                select(Institution.id).where(Institution.code == args.institution)
            ).one_or_none()
        if institution_id is None:
            print(f"no institution with code {args.institution!r}", file=sys.stderr)
            return 2
    role = "admin" if args.institution else "province_admin"
    created = AdminAccounts(db).create(
        None, args.username, password, institution_id, role=role
    )
    print(json.dumps(created, ensure_ascii=False))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from services.gateway.keys import KeyRing

    with _database("gateway", _settings()) as db:
        ring = KeyRing(db)
        if args.action == "rotate":
            print(json.dumps({"kid": ring.rotate(lead_seconds=args.lead).kid, "signs_in_seconds": args.lead}))
        elif args.action == "retire":
            ring.retire(args.kid)
            print(json.dumps({"retired": args.kid}))
        else:
            print(json.dumps(ring.list(), indent=2))
    return 0


def cmd_seed_demo(_args: argparse.Namespace) -> int:
    from lvbao.seed import seed_demo

    settings = _settings()
    with _database("gateway", settings) as db, _redis(settings) as redis_client:
        result = seed_demo(settings, db, redis_client, os.environ.get("LVBAO_DEMO_ADMIN_PASSWORD"))
    print(json.dumps(result, ensure_ascii=False))
    return 0


# -- OpenAPI --------------------------------------------------------------------------------------------------------


def openapi_documents() -> dict[str, str]:
    """Each service's OpenAPI, generated from its code (no database or Redis is touched)."""
    settings = Settings(database_url="sqlite://", redis_url="redis://127.0.0.1:1/0", testing=True, log_json=False)
    documents = {}
    for name in registry.SERVICES:
        app = registry.create_app(name, settings)
        documents[name] = app.extensions["lvbao_api"].spec.to_yaml()
    return documents


def generated_files(out: Path) -> dict[Path, str]:
    """Everything generated from the code: each service's OpenAPI, and the pages' vocabulary module."""
    from shared.vocabulary import javascript_module

    files = {out / f"{name}.yaml": text for name, text in openapi_documents().items()}
    files[Path(__file__).with_name("web") / "vocabulary.js"] = javascript_module()
    return files


def cmd_openapi(args: argparse.Namespace) -> int:
    drift = []
    for path, text in generated_files(Path(args.out)).items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                drift.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if drift:
        print("generated files drifted from the code; run `make openapi`: " + ", ".join(drift), file=sys.stderr)
        return 1
    return 0


# -- the embedded run -----------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from lvbao.runner import EmbeddedRun

    return EmbeddedRun(port=args.port or int(os.environ.get("PORT", DEFAULT_PORT)), var=Path(args.var)).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvbao", description="绿宝碳汇 — run and operate the platform")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start the whole system on one port (embedded SQLite + Redis by default)")
    p.add_argument("--port", type=int)
    p.add_argument("--var", default=os.environ.get("LVBAO_VAR_DIR", "var"), help="where embedded data lives")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("services", nargs="*", help=f"any of {', '.join(registry.SERVICES)} (default: all)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("revision", help="autogenerate a migration for one service")
    p.add_argument("service", choices=registry.SERVICES)
    p.add_argument("-m", "--message", required=True)
    p.set_defaults(func=cmd_revision)

    p = sub.add_parser("worker", help="run an RQ worker for service queues")
    p.add_argument("queues", nargs="*")
    p.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("relay", help="relay outbox events to the queues")
    p.add_argument("--once", action="store_true")
    p.add_argument("--poll-interval", type=float, default=0.1)
    p.set_defaults(func=cmd_relay)

    p = sub.add_parser("verify", help="reconcile actions, ledger entries and balances across services")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to let work in flight settle")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("boards", help="leaderboards: rebuild them from the ledger, or check them against it")
    p.add_argument("action", choices=["rebuild", "check"])
    p.add_argument("--institution", type=int, action="append", help="an institution id (repeatable; default all)")
    p.add_argument("--date", help="YYYY-MM-DD: the periods holding this local day (default today)")
    p.set_defaults(func=cmd_boards)

    p = sub.add_parser("queues", help="queue lengths and failed jobs")
    p.add_argument("--requeue", action="store_true", help="re-drive failed jobs")
    p.set_defaults(func=cmd_queues)

    admin = sub.add_parser("admin", help="admin accounts").add_subparsers(dest="admin_command", required=True)
    p = admin.add_parser("create", help="create an admin (province admin unless --institution is given)")
    p.add_argument("--username", required=True)
    p.add_argument("--institution", help="institution code for an institution admin")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(func=cmd_admin_create)

    p = sub.add_parser("keys", help="token signing keys")
    p.add_argument("action", choices=["list", "rotate", "retire"])
    p.add_argument("kid", nargs="?")
    p.add_argument("--lead", type=int, default=120,
                   help="rotate: seconds the new key is published before it signs (> verifiers' JWKS cache)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("seed-demo", help="create the demo pilot (idempotent)")
    p.set_defaults(func=cmd_seed_demo)

    p = sub.add_parser("openapi", help="write openapi/<service>.yaml from the code")
    p.add_argument("--out", default="openapi")
    p.add_argument("--check", action="store_true", help="fail when the files differ from the code")
    p.set_defaults(func=cmd_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "action", None) == "retire" and not args.kid:
        print("lvbao keys retire KID", file=sys.stderr)
        return 2
    from shared.errors import ApiError

    try:
        return args.func(args)
    except ApiError as exc:
        print(f"{exc.code}: {exc.message} {exc.errors or ''}".rstrip(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
