"""The system as gunicorn serves it in the benchmark, plus the baselines: endpoints on the same stack (the
service app factory, its middleware, error handling and metrics, gunicorn, PostgreSQL) doing one bare INSERT
and commit (``POST /bench/insert``), or answering a constant payload (``GET /bench/board``: the bytes of a real
leaderboard answer, from the file named by LVBAO_BENCH_BOARD_PAYLOAD)."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import text

from lvbao.embedded import create_combined_app
from services.activities.models import infra
from shared.config import Settings
from shared.db import Database
from shared.parts import ServiceParts
from shared.service_app import create_service_app

SCHEMA = "bench"
BOARD_PAYLOAD_ENV = "LVBAO_BENCH_BOARD_PAYLOAD"
DDL = f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"; ' \
      f'CREATE TABLE IF NOT EXISTS "{SCHEMA}".rows (id bigserial PRIMARY KEY, payload text NOT NULL, ' \
      "created_at timestamptz NOT NULL DEFAULT now())"


def baseline_app(settings: Settings):
    db = Database(settings.database_url, SCHEMA)
    blp = Blueprint("baseline", __name__, description="benchmark baseline")

    @blp.route("/insert")
    class Insert(MethodView):
        @blp.response(201)
        def post(self):
            body = request.get_json()
            with db.uow() as uow:
                row_id = uow.session.execute(
                    text(f'INSERT INTO "{SCHEMA}".rows (payload) VALUES (:p) RETURNING id'), {"p": json.dumps(body)}
                ).scalar_one()
                uow.commit()
            return {"id": row_id}

    @cache
    def board_payload() -> bytes:
        return Path(os.environ[BOARD_PAYLOAD_ENV]).read_bytes()

    @blp.route("/board")
    class Board(MethodView):
        def get(self):
            return Response(board_payload(), mimetype="application/json")

    return create_service_app(BaselineParts(settings, db=db), [blp])


class BaselineParts(ServiceParts):
    """A service with nothing of its own: the plumbing every service has, for the baselines."""

    name = "bench"
    schema = SCHEMA
    models = infra
    description = "benchmark baseline"


def create_app():
    settings = Settings.from_env()
    app = create_combined_app(settings)
    app.mounts["/bench"] = baseline_app(settings)
    return app
