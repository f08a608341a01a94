"""The deployment files (docker-compose.yml, deploy/nginx.conf, Dockerfile) checked against the code.

No Docker engine is needed: the files are parsed, and every name they use (services, gunicorn targets,
``lvbao`` subcommands, LVBAO_* variables, public prefixes) is looked up in the code itself.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from lvbao.cli import build_parser
from lvbao.embedded import public_prefix
from lvbao.registry import SERVICES
from shared.errors import DEFAULT_ERRORS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
DOCKERFILE = ROOT / "Dockerfile"
CONFIG_SOURCE = ROOT / "shared" / "config.py"

# Settings that must come from the operator: compose has to refuse to start without them.
REQUIRED_SECRETS = ("LVBAO_WECHAT_APPID", "LVBAO_WECHAT_SECRET", "LVBAO_OPERATOR_KEY_SECRET")
INFRASTRUCTURE = ("nginx", "postgres", "redis")
ONE_SHOT = ("migrate",)
SERVICE_PORT = 8000


# -- reading the files ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.exists(), f"{COMPOSE_FILE} is missing"
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def containers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    assert NGINX_CONF.exists(), f"{NGINX_CONF} is missing"
    # Without comments, so that a brace or directive in a comment cannot count.
    return re.sub(r"#[^\n]*", "", NGINX_CONF.read_text(encoding="utf-8"))


def command_args(container: dict[str, Any]) -> list[str]:
    command = container.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment(container: dict[str, Any]) -> dict[str, str]:
    env = container.get("environment") or {}
    if isinstance(env, list):  # the ["NAME=value", ...] form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def depends_on(container: dict[str, Any]) -> dict[str, str]:
    """Each dependency and its condition (the short list form means service_started)."""
    deps = container.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def app_containers(containers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The containers running the project's image (built from the Dockerfile)."""
    return {name: c for name, c in containers.items() if "build" in c}


def gunicorn_container(containers: dict[str, dict[str, Any]], service: str) -> str:
    target = f"services.{service}.wsgi:app"
    names = [
        name for name, c in containers.items() if command_args(c)[:1] == ["gunicorn"] and target in command_args(c)
    ]
    assert len(names) == 1, f"expected one gunicorn container serving {target}, found {names or 'none'}"
    return names[0]


def parse_lvbao(name: str, container: dict[str, Any]) -> Any:
    """The container's ``lvbao ...`` command as the real CLI parses it."""
    args = command_args(container)
    assert args[:1] == ["lvbao"], f"container {name!r} does not run `lvbao ...`: {args}"
    try:
        return build_parser().parse_args(args[1:])
    except SystemExit:
        pass  # argparse has printed why
    pytest.fail(f"container {name!r}: `{shlex.join(args)}` is not a valid lvbao command")


def lvbao_containers(containers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: c for name, c in containers.items() if command_args(c)[:1] == ["lvbao"]}


def nginx_blocks(conf: str, kind: str) -> dict[str, str]:
    """``kind NAME { body }`` blocks, as {NAME: body}; braces inside quoted strings (JSON bodies) don't count."""
    blocks = {}
    for match in re.finditer(rf"^\s*{kind}\s+(\S+)\s*\{{", conf, re.MULTILINE):
        depth, quote, end = 1, None, match.end()
        while depth and end < len(conf):
            char = conf[end]
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in "{}":
                depth += 1 if char == "{" else -1
            end += 1
        blocks[match.group(1)] = conf[match.end() : end - 1]
    return blocks


def nginx_headers(block: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(.+?);", block, re.MULTILINE))


# -- compose: the processes -------------------------------------------------------------------------------------------


def test_compose_follows_the_compose_spec(compose):
    assert "version" not in compose, "the Compose spec has no `version:` key; remove it"
    assert compose.get("services"), "docker-compose.yml defines no services"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_gunicorn_container(containers, service):
    name = gunicorn_container(containers, service)
    args = command_args(containers[name])
    assert importlib.util.find_spec(f"services.{service}.wsgi") is not None, (
        f"container {name!r} serves services.{service}.wsgi:app but that module does not exist"
    )
    assert f"0.0.0.0:{SERVICE_PORT}" in args, f"container {name!r} must bind 0.0.0.0:{SERVICE_PORT}: {args}"
    assert "healthcheck" in containers[name], f"container {name!r} has no healthcheck"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_queue_has_a_worker(containers, service):
    workers = [
        name
        for name, c in lvbao_containers(containers).items()
        if parse_lvbao(name, c).command == "worker" and service in parse_lvbao(name, c).queues
    ]
    assert workers, f"no container runs `lvbao worker {service}`: the {service!r} queue would never be drained"
    assert importlib.util.find_spec(f"services.{service}.tasks") is not None, (
        f"`lvbao worker {service}` needs the module services.{service}.tasks"
    )


def test_every_lvbao_command_parses(containers):
    for name, container in lvbao_containers(containers).items():
        args = parse_lvbao(name, container)
        if args.command == "worker":
            unknown = set(args.queues) - set(SERVICES)
            assert not unknown, f"container {name!r}: `lvbao worker` would refuse the unknown queues {unknown}"


def test_relay_and_migrate_run_their_commands(containers):
    assert "relay" in containers, "no `relay` container: outbox events would never reach the queues"
    assert parse_lvbao("relay", containers["relay"]).command == "relay"
    assert "migrate" in containers, "no `migrate` container: the schemas would never be created"
    assert parse_lvbao("migrate", containers["migrate"]).command == "migrate"
    assert str(containers["migrate"].get("restart", "no")) == "no", "migrate is one-shot: it must not restart"
    assert depends_on(containers["migrate"]).get("postgres") == "service_healthy", (
        "migrate must wait for postgres to be healthy"
    )


def test_app_containers_wait_for_migrations_and_redis(containers):
    for name, container in app_containers(containers).items():
        if name in ONE_SHOT:
            continue
        deps = depends_on(container)
        assert deps.get("migrate") == "service_completed_successfully", (
            f"container {name!r} must wait for migrate to complete successfully, has {deps}"
        )
        assert deps.get("redis") == "service_healthy", f"container {name!r} must wait for redis to be healthy"


# -- compose: configuration -------------------------------------------------------------------------------------------


def test_every_lvbao_variable_is_one_the_code_reads(containers):
    source = CONFIG_SOURCE.read_text(encoding="utf-8")
    read_by_code = set(re.findall(r'_(?:env|int)\(\s*"(LVBAO_[A-Z0-9_]+)"', source))
    assert read_by_code, f'found no _env("LVBAO_...") calls in {CONFIG_SOURCE}; has Settings.from_env moved?'
    for name, container in containers.items():
        for variable in environment(container):
            if variable.startswith("LVBAO_"):
                assert variable in read_by_code, (
                    f"container {name!r} sets {variable}, which shared/config.py never reads "
                    f"(known: {', '.join(sorted(read_by_code))})"
                )


def test_app_containers_get_the_settings_they_need(containers):
    needed = ("LVBAO_DATABASE_URL", "LVBAO_REDIS_URL", "LVBAO_JWKS_URL", *REQUIRED_SECRETS)
    for name, container in app_containers(containers).items():
        missing = [variable for variable in needed if variable not in environment(container)]
        assert not missing, f"container {name!r} does not set {', '.join(missing)}"


def test_secrets_are_required_from_the_environment(containers):
    for name, container in containers.items():
        env = environment(container)
        for variable, value in env.items():
            if variable in REQUIRED_SECRETS or "SECRET" in variable or "PASSWORD" in variable:
                assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value), (
                    f"container {name!r}: {variable} must be `${{{variable}:?message}}` "
                    f"(required from the environment, never written here), not {value!r}"
                )
        if "LVBAO_DATABASE_URL" in env:
            assert "${POSTGRES_PASSWORD:?" in env["LVBAO_DATABASE_URL"], (
                f"container {name!r}: LVBAO_DATABASE_URL must take the password from ${{POSTGRES_PASSWORD:?...}}"
            )
    assert "POSTGRES_PASSWORD" in environment(containers["postgres"]), "postgres needs POSTGRES_PASSWORD"


def test_jwks_are_fetched_from_the_gateway_container(containers):
    gateway = gunicorn_container(containers, "gateway")
    for name, container in app_containers(containers).items():
        url = urlparse(environment(container)["LVBAO_JWKS_URL"])
        assert (url.hostname, url.port, url.path) == (gateway, SERVICE_PORT, "/jwks.json"), (
            f"container {name!r}: LVBAO_JWKS_URL should be http://{gateway}:{SERVICE_PORT}/jwks.json "
            f"(the gateway container, inside the network), not {url.geturl()}"
        )


def test_gunicorn_containers_share_metrics_between_processes(containers):
    for service in SERVICES:
        name = gunicorn_container(containers, service)
        directory = environment(containers[name]).get("PROMETHEUS_MULTIPROC_DIR")
        assert directory, f"container {name!r} runs several gunicorn processes but sets no PROMETHEUS_MULTIPROC_DIR"
        assert directory in (containers[name].get("tmpfs") or []), (
            f"container {name!r}: PROMETHEUS_MULTIPROC_DIR {directory} must exist (a tmpfs, fresh at each start)"
        )


def test_redis_persists_and_never_evicts(containers):
    args = command_args(containers["redis"])

    def option(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args[:-1] else None

    assert option("--appendonly") == "yes", f"redis must run with --appendonly yes (queues survive restarts): {args}"
    assert option("--maxmemory-policy") == "noeviction", (
        f"redis must run with --maxmemory-policy noeviction (queued jobs are never dropped): {args}"
    )


def test_long_running_containers_have_healthchecks(containers):
    for name in INFRASTRUCTURE:
        assert name in containers, f"docker-compose.yml has no {name!r} container"
    for name, container in containers.items():
        if name in ONE_SHOT:
            continue
        test = (container.get("healthcheck") or {}).get("test")
        assert test, f"container {name!r} has no healthcheck"


def test_every_dependency_exists_and_can_be_waited_for(containers):
    for name, container in containers.items():
        for target, condition in depends_on(container).items():
            assert target in containers, f"container {name!r} depends on {target!r}, which is not defined"
            if condition == "service_healthy":
                assert "healthcheck" in containers[target], (
                    f"container {name!r} waits for {target!r} to be healthy, but {target!r} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"container {name!r} waits for {target!r} to exit, but it keeps running"


# -- nginx ------------------------------------------------------------------------------------------------------------


def test_nginx_is_the_single_entry_point(containers):
    nginx = containers["nginx"]
    assert [str(port) for port in nginx.get("ports", [])] == ["8000:80"], "nginx should publish 8000:80"
    assert any(str(v).startswith("./deploy/nginx.conf:") for v in nginx.get("volumes", [])), (
        "nginx must mount ./deploy/nginx.conf"
    )
    exposed = [name for name, c in containers.items() if c.get("ports") and name != "nginx"]
    assert not exposed, f"only nginx should publish ports; also published: {exposed}"
    for service in SERVICES:
        target = gunicorn_container(containers, service)
        assert depends_on(nginx).get(target) == "service_healthy", f"nginx must wait for {target!r} to be healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_nginx_routes_each_service_to_its_container(containers, nginx_conf, service):
    prefix = public_prefix(service)
    location = nginx_blocks(nginx_conf, "location").get(f"{prefix}/")
    assert location is not None, f"deploy/nginx.conf has no `location {prefix}/` block for {service}"

    proxy_pass = re.search(r"^\s*proxy_pass\s+http://([^/;\s]+)(/?);", location, re.MULTILINE)
    assert proxy_pass, f"location {prefix}/ has no `proxy_pass http://...;`"
    upstream_name, trailing_slash = proxy_pass.groups()
    assert trailing_slash == "/", f"location {prefix}/: proxy_pass must end with / so that {prefix} is stripped"

    # proxy_pass names either an upstream block or host:port directly.
    upstream = nginx_blocks(nginx_conf, "upstream").get(upstream_name)
    if upstream is not None:
        server = re.search(r"^\s*server\s+([^\s;]+)", upstream, re.MULTILINE)
        assert server, f"upstream {upstream_name} has no server"
        address = server.group(1)
    else:
        address = upstream_name
    container = gunicorn_container(containers, service)
    assert address == f"{container}:{SERVICE_PORT}", (
        f"location {prefix}/ proxies to {address}, expected the {service} container {container}:{SERVICE_PORT}"
    )

    headers = nginx_headers(location)
    assert headers.get("X-Forwarded-Prefix") == prefix, (
        f"location {prefix}/ must send `X-Forwarded-Prefix {prefix}` (ProxyFix x_prefix), has {headers}"
    )
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id"):
        assert header in headers, f"location {prefix}/ does not set {header}"


def test_nginx_answers_anything_else_with_the_contract_404(nginx_conf):
    assert re.search(r"^\s*default_type\s+application/json;", nginx_conf, re.MULTILINE), (
        "nginx.conf must set `default_type application/json` for its own answers"
    )
    catch_all = nginx_blocks(nginx_conf, "location").get("/")
    assert catch_all is not None, "deploy/nginx.conf has no `location /` block"
    body = re.search(r"return\s+404\s+'(.*)';", catch_all)
    assert body, "location / must `return 404 '<json>'`"
    code, message = DEFAULT_ERRORS[404]
    assert json.loads(body.group(1)) == {"code": code, "message": message, "status": 404, "request_id": None}


def test_nginx_limits_bodies_like_the_services(nginx_conf):
    assert re.search(r"^\s*client_max_body_size\s+2m;", nginx_conf, re.MULTILINE), (
        "nginx.conf must set client_max_body_size 2m (the services' MAX_CONTENT_LENGTH)"
    )


# -- the image --------------------------------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_as_a_non_root_user(containers):
    assert DOCKERFILE.exists(), f"{DOCKERFILE} is missing"
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM\s+python:3\.11-slim\b", text, re.MULTILINE), "the image should be python:3.11-slim"
    assert re.search(r"^RUN\s.*\bpip install \.(\s|$)", text, re.MULTILINE), "the Dockerfile must `pip install .`"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), f"the image must run as a non-root user, USER is {users}"
    baked = re.findall(r"^(?:ENV|ARG)\s+.*\b\w*(?:SECRET|PASSWORD)\w*", text, re.MULTILINE)
    assert not baked, f"no secrets in the image: {baked}"
    for name, container in app_containers(containers).items():
        build = container["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE, (
            f"container {name!r} should be built from the repository's Dockerfile"
        )
