"""The `lvbao` command against the test databases: admin accounts, keys, queues, OpenAPI check."""

from __future__ import annotations

import io
import json

import pytest

from lvbao.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(monkeypatch, settings, clean):
    monkeypatch.setenv("LVBAO_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LVBAO_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("LVBAO_LOG_LEVEL", "WARNING")


def _run(capsys, *argv, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_admin_create_for_the_province_and_an_institution(cli_env, capsys, monkeypatch, pilot, api):
    code, out, _ = _run(capsys, "admin", "create", "--username", "ops", "--password-stdin",
                        stdin="a-long-password\n", monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out.splitlines()[-1])["role"] == "province_admin"
    code, out, _ = _run(capsys, "admin", "create", "--username", "centre", "--institution", "jx-admin-center",
                        "--password-stdin", stdin="another-long-pw\n", monkeypatch=monkeypatch)
    assert code == 0 and json.loads(out.splitlines()[-1])["institution_id"] == pilot.institution_id
    assert api.post("/api/auth/admin/login", json={"username": "centre", "password": "another-long-pw"}).ok
    code, _, err = _run(capsys, "admin", "create", "--username", "ops", "--password-stdin",
                        stdin="a-long-password\n", monkeypatch=monkeypatch)
    assert code == 1 and "username_taken" in err
    code, _, err = _run(capsys, "admin", "create", "--username", "x", "--institution", "nope",
                        "--password-stdin", stdin="a-long-password\n", monkeypatch=monkeypatch)
    assert code == 2 and "no institution" in err


def test_keys_and_queues_and_openapi_check(cli_env, capsys, rotates_keys):
    code, out, _ = _run(capsys, "keys", "list")
    assert code == 0 and json.loads(out)
    code, out, _ = _run(capsys, "queues")
    assert code == 0 and set(json.loads(out)) == {"gateway", "activities", "points", "rewards"}
    assert main(["keys", "retire"]) == 2
    code, _, err = _run(capsys, "openapi", "--check")
    assert code == 0, err


def test_retiring_the_only_key_is_refused(cli_env, capsys, databases, rotates_keys):
    from services.gateway.keys import KeyRing

    code, out, _ = _run(capsys, "keys", "rotate", "--lead", "0")
    assert code == 0 and json.loads(out)["signs_in_seconds"] == 0
    newest = json.loads(out)["kid"]
    ring = KeyRing(databases["gateway"])
    for key in ring.list():
        if key["retired_at"] is None and key["kid"] != newest:
            ring.retire(key["kid"])
    code, _, err = _run(capsys, "keys", "retire", newest)
    assert code == 1 and "last_key" in err
    assert ring.signing_key().kid == newest
