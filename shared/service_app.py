"""What every service app is made of: config, database, Redis, token verifier, errors, logs, metrics, OpenAPI."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from flask import Flask, g, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint
from flask_smorest.spec.plugins import integerconverter2paramschema
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from shared.auth.guards import current_principal, require_auth
from shared.current import current_parts, install
from shared.errors import ApiError, ErrorSchema, error_response, from_http_exception, register_error_handlers
from shared.logs import configure_logging
from shared.metrics import init_metrics
from shared.parts import ServiceParts
from shared.schemas import HealthSchema, PrincipalSchema, translate_validation_messages

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


def public_prefix(service: str) -> str:
    """Where a service answers behind the single entry point (the gateway is /api/auth)."""
    return "/api/auth" if service == "gateway" else f"/api/{service}"


class IdConverter(IntegerConverter):
    """``<id:name>``: a database id, 1 to 2^31-1; anything else is a 404, never a database error."""

    def __init__(self, url_map, *args, **kwargs):
        super().__init__(url_map, min=1, max=2**31 - 1)


class LvbaoApi(Api):
    """flask-smorest's Api answering every HTTP error in the contract's shape."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        return error_response(from_http_exception(error))


def decimal_bounds_as_numbers(self, field, ret, **_kwargs) -> dict[str, Any]:
    """A Decimal field's Range comes out of apispec as Decimal objects (a YAML python tag, a JSON string);
    OpenAPI wants numbers."""
    return {key: float(ret[key]) if ret[key] % 1 else int(ret[key])
            for key in ("minimum", "maximum") if isinstance(ret.get(key), Decimal)}


def init_request_ids(app: Flask) -> None:
    """Take the caller's (or nginx's) X-Request-Id when it looks sane, else make one; echo it back."""

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        return response


def create_service_app(parts: ServiceParts, blueprints: Iterable[Blueprint]) -> Flask:
    """The Flask app serving one service's parts (its composition root, see shared.parts)."""
    settings, name = parts.settings, parts.name
    configure_logging(settings.log_level, settings.log_json)
    translate_validation_messages()
    app = Flask(f"lvbao.{name}")
    app.config.update(
        TESTING=settings.testing,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        API_TITLE=f"lvbao {name}",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": parts.description},
            "servers": [{"url": public_prefix(name)}],
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        },
    )
    app.json.ensure_ascii = False
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]
    install(app, parts)

    init_request_ids(app)
    app.url_map.converters["id"] = IdConverter
    api = LvbaoApi(app)
    api.register_converter(IdConverter, integerconverter2paramschema)
    api.ma_plugin.converter.add_attribute_function(decimal_bounds_as_numbers)
    register_error_handlers(app)
    init_metrics(app, name)
    api.register_blueprint(_health_blueprint())
    api.register_blueprint(_whoami_blueprint())
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.extensions["lvbao_api"] = api
    return app


def _health_blueprint() -> Blueprint:
    blp = Blueprint("health", __name__, description="Liveness and readiness")

    @blp.route("/healthz")
    class Healthz(MethodView):
        @blp.response(200, HealthSchema)
        def get(self):
            """The process is up."""
            return {"status": "ok", "service": current_parts().name}

    @blp.route("/readyz")
    class Readyz(MethodView):
        @blp.response(200, HealthSchema)
        @blp.alt_response(503, schema=ErrorSchema, description="A dependency is unreachable")
        def get(self):
            """The database and Redis answer."""
            ctx = current_parts()
            problems = {}
            try:
                ctx.db.ping()
            except Exception as exc:  # noqa: BLE001 - report any failure as not ready
                problems["database"] = [type(exc).__name__]
            try:
                ctx.redis.ping()
            except Exception as exc:  # noqa: BLE001
                problems["redis"] = [type(exc).__name__]
            if problems:
                raise ApiError(503, "not_ready", "服务依赖不可用", errors=problems)
            return {"status": "ready", "service": ctx.name}

    return blp


def _whoami_blueprint() -> Blueprint:
    blp = Blueprint("whoami", __name__, description="The caller as this service sees it")

    @blp.route("/whoami")
    class WhoAmI(MethodView):
        @require_auth(devices=True)
        @blp.response(200, PrincipalSchema)
        def get(self):
            """Who the bearer token says the caller is (any valid user or device token)."""
            p = current_principal()
            return {
                "service": current_parts().name,
                "subject": p.subject,
                "token_type": p.token_type,
                "roles": sorted(p.roles),
                "institution_id": p.institution_id,
                "department_id": p.department_id,
                "bound": p.bound,
            }

    return blp
