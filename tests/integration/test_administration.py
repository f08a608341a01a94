"""Institutions, roster import, invites, devices and admins: roles and institutions are checked everywhere."""

from __future__ import annotations

import pytest

from lvbao.registry import SERVICES
from shared.service_app import public_prefix
from tests import factories

pytestmark = pytest.mark.integration

GOOD_ROWS = "E9001,赵一,13900000001,office\nE9002,钱二,13900000002,eco,小钱\n"


def _import(api, token, institution_id, csv_text, encoding="utf-8"):
    return api.post(
        f"/api/auth/institutions/{institution_id}/roster",
        data=csv_text.encode(encoding),
        headers={"Content-Type": "text/csv"},
        token=token,
    )


def _roster(api, token, institution_id):
    items, cursor = [], None
    while True:
        page = api.get(
            f"/api/auth/institutions/{institution_id}/roster", params={"limit": 100, "cursor": cursor}, token=token
        ).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


@pytest.fixture
def other_institution(api, province_token):
    institution_id = factories.institution(api, province_token, name="南昌市机关事务中心", code="nc-affairs")["id"]
    factories.department(api, province_token, institution_id, name="综合科", code="general")
    return institution_id


@pytest.fixture
def institution_admin(api, pilot, province_token):
    return factories.institution_admin(pilot, province_token, pilot.institution_id)


def test_roster_import_all_rows(api, pilot, province_token):
    before = len(_roster(api, province_token, pilot.institution_id))
    rows = GOOD_ROWS.replace("13900000001", "+86 139-0000-0001")
    header = "employee_no,name,phone,department_code,nickname\n"
    result = _import(api, province_token, pilot.institution_id, header + rows)
    assert result.status_code == 200, result.text
    assert result.json() == {"imported": 2, "created": 2, "updated": 0, "errors": []}
    roster = {e["employee_no"]: e for e in _roster(api, province_token, pilot.institution_id)}
    assert len(roster) == before + 2
    assert roster["E9001"]["phone"] == "13900000001"
    assert roster["E9002"]["nickname"] == "小钱"


def test_roster_with_one_bad_row_imports_nothing_and_names_the_row(api, pilot, province_token):
    before = _roster(api, province_token, pilot.institution_id)
    csv_text = ("employee_no,name,phone,department_code\n"
                "E9101,孙三,13900000011,office\n"
                "E9102,李四,13900000012,no-such-dept\n"
                "E9103,周五,13900000013,eco\n")
    result = _import(api, province_token, pilot.institution_id, csv_text)
    assert result.status_code == 422
    body = result.json()
    assert body["code"] == "roster_invalid" and body["imported"] == 0
    assert [e["row"] for e in body["errors"]] == [3]  # spreadsheet row 3: the header is row 1
    assert "department_code" in body["errors"][0]["errors"]
    assert "第 3 行" in body["message"]
    assert _roster(api, province_token, pilot.institution_id) == before


def test_roster_checks_duplicates_columns_and_header(api, pilot, province_token):
    dupes = _import(api, province_token, pilot.institution_id,
                    "employee_no,name,phone,department_code\nE1,甲,13900000021,office\nE1,乙,13900000021,office\n"
                    "E3,丙,12,office,extra\n")
    assert dupes.status_code == 422
    errors = {e["row"]: e["errors"] for e in dupes.json()["errors"]}
    assert set(errors) == {3, 4}
    assert "employee_no" in errors[3] and "phone" in errors[3]
    assert "_row" in errors[4]
    header = _import(api, province_token, pilot.institution_id, "id,name\n1,x\n")
    assert header.status_code == 422 and header.json()["code"] == "roster_header_invalid"
    assert header.json()["imported"] == 0 and header.json()["errors"][0]["row"] == 1
    not_csv = api.post(f"/api/auth/institutions/{pilot.institution_id}/roster", json={"a": 1}, token=province_token)
    assert not_csv.status_code == 415


def test_roster_from_excel_in_gb18030_updates_existing_rows(api, pilot, province_token):
    result = _import(api, province_token, pilot.institution_id,
                     "employee_no,name,phone,department_code,nickname\nE1001,王伟,13800000000,finance,老王\n",
                     encoding="gb18030")
    assert result.status_code == 200, result.text
    assert result.json()["updated"] == 1
    entry = next(e for e in _roster(api, province_token, pilot.institution_id) if e["employee_no"] == "E1001")
    assert entry["nickname"] == "老王" and entry["department_id"] == pilot.departments["finance"]


def test_employee_gets_403_on_every_admin_endpoint(api, pilot):
    token = pilot.employee("o-nosy", "13800000002")["access_token"]
    inst = pilot.institution_id
    calls = [
        ("GET", "/api/auth/institutions", None),
        ("POST", "/api/auth/institutions", {"name": "x", "code": "x"}),
        ("GET", f"/api/auth/institutions/{inst}", None),
        ("GET", f"/api/auth/institutions/{inst}/departments", None),
        ("POST", f"/api/auth/institutions/{inst}/departments", {"name": "x", "code": "x"}),
        ("GET", f"/api/auth/institutions/{inst}/roster", None),
        ("POST", f"/api/auth/institutions/{inst}/invites", {"employee_no": "E1001"}),
        ("GET", f"/api/auth/devices?institution_id={inst}", None),
        ("POST", "/api/auth/devices", {"kind": "station", "institution_id": inst, "name": "x"}),
        ("DELETE", "/api/auth/devices/1", None),
        ("POST", "/api/auth/admins", {"username": "sneaky", "password": "long-enough-pw", "institution_id": inst}),
    ]
    for method, path, body in calls:
        response = api.request(method, path, json=body, token=token)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "forbidden_role"
    roster = _import(api, token, inst, "employee_no,name,phone,department_code\n")
    assert roster.status_code == 403


def test_institution_admin_gets_403_on_another_institution(api, pilot, institution_admin, other_institution):
    other = other_institution
    calls = [
        ("GET", f"/api/auth/institutions/{other}", None),
        ("GET", f"/api/auth/institutions/{other}/departments", None),
        ("POST", f"/api/auth/institutions/{other}/departments", {"name": "x", "code": "x"}),
        ("GET", f"/api/auth/institutions/{other}/roster", None),
        ("POST", f"/api/auth/institutions/{other}/invites", {"employee_no": "E1"}),
        ("GET", f"/api/auth/devices?institution_id={other}", None),
        ("POST", "/api/auth/devices", {"kind": "screen", "institution_id": other, "name": "x"}),
        ("POST", "/api/auth/admins",
         {"username": "other-admin", "password": "long-enough-pw", "institution_id": other}),
    ]
    for method, path, body in calls:
        response = api.request(method, path, json=body, token=institution_admin)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "forbidden_institution"
    assert _import(api, institution_admin, other, "employee_no,name,phone,department_code\n").status_code == 403
    # Province-level actions stay the province admin's.
    assert api.post("/api/auth/institutions", json={"name": "y", "code": "y"},
                    token=institution_admin).status_code == 403
    listed = api.get("/api/auth/institutions", token=institution_admin).json()["items"]
    assert [i["id"] for i in listed] == [pilot.institution_id]


def test_institution_admin_manages_their_own(api, pilot, institution_admin):
    inst = pilot.institution_id
    assert api.get(f"/api/auth/institutions/{inst}/roster", token=institution_admin).status_code == 200
    made = api.post("/api/auth/devices", json={"kind": "station", "institution_id": inst, "name": "一楼食堂"},
                    token=institution_admin)
    assert made.status_code == 201


def test_device_token_works_until_revoked(api, pilot, province_token):
    made = api.post("/api/auth/devices",
                    json={"kind": "screen", "institution_id": pilot.institution_id, "name": "大厅屏幕"},
                    token=province_token)
    assert made.status_code == 201, made.text
    device = made.json()
    for service in SERVICES:
        seen = api.get(f"{public_prefix(service)}/whoami", token=device["token"])
        assert seen.status_code == 200, (service, seen.text)
        assert seen.json()["roles"] == ["screen"] and seen.json()["institution_id"] == pilot.institution_id

    listed = api.get(f"/api/auth/devices?institution_id={pilot.institution_id}", token=province_token).json()
    assert "token" not in str(listed) and device["token"] not in str(listed)

    assert api.delete(f"/api/auth/devices/{device['id']}", token=province_token).status_code == 204
    for service in SERVICES:
        refused = api.get(f"{public_prefix(service)}/whoami", token=device["token"])
        assert refused.status_code == 401, service
        assert refused.json()["code"] == "device_revoked"


def test_revocation_survives_losing_redis(api, pilot, province_token, redis_client, settings, databases):
    from services.gateway.parts import GatewayParts

    device = factories.device(api, province_token, pilot.institution_id, name="二楼")
    api.delete(f"/api/auth/devices/{device['id']}", token=province_token)
    redis_client.flushdb()
    gateway = GatewayParts(settings, db=databases["gateway"], redis_client=redis_client)
    assert gateway.devices.republish_revocations() == 1
    assert api.get("/api/points/whoami", token=device["token"]).status_code == 401


def test_operator_credentials_are_shown_once_and_sign_requests(api, pilot, province_token, settings):
    from shared.auth.operator import derive_operator_secret, parse_operator_key_id

    made = api.post("/api/auth/devices",
                    json={"kind": "operator", "institution_id": pilot.institution_id, "name": "充电运营商"},
                    token=province_token).json()
    key = parse_operator_key_id(made["key_id"])
    assert key is not None and key.institution_id == pilot.institution_id and key.device_id == made["id"]
    assert made["secret"] == derive_operator_secret(settings.operator_key_secret, made["key_id"])
    listed = api.get(f"/api/auth/devices?institution_id={pilot.institution_id}", token=province_token).text
    assert made["secret"] not in listed


def test_admin_accounts(api, pilot, province_token, institution_admin):
    short = api.post("/api/auth/admins", json={"username": "shorty", "password": "short",
                                               "institution_id": pilot.institution_id}, token=province_token)
    assert short.status_code == 422 and "password" in short.json()["errors"]
    taken = api.post("/api/auth/admins", json={"username": "center-admin", "password": "another-long-pw",
                                               "institution_id": pilot.institution_id}, token=province_token)
    assert taken.status_code == 409
    escalate = api.post("/api/auth/admins", json={"username": "wannabe", "password": "another-long-pw",
                                                  "role": "province_admin"}, token=institution_admin)
    assert escalate.status_code == 403
    me = api.get("/api/auth/me", token=institution_admin).json()
    assert me["roles"] == ["admin"] and me["institution_id"] == pilot.institution_id


PHONE_MESSAGE = "不是有效的手机号（11 位，1 开头、第二位 3-9，可带 +86）"


def test_a_roster_phone_must_be_a_mobile_number_and_each_row_says_why_in_chinese(api, pilot, province_token):
    before = _roster(api, province_token, pilot.institution_id)
    result = _import(api, province_token, pilot.institution_id,
                     "employee_no,name,phone,department_code\n"
                     "E9401,甲,12345,office\n"          # too short
                     "E9402,乙,12900000001,office\n"    # no mobile number starts 12
                     "E9403,丙,0791-8888888,office\n"   # a landline cannot bind by WeChat phone
                     "E9404,丁,+86 139 0000 0041,office\n"
                     "E9405,,13900000042,office\n")
    assert result.status_code == 422
    errors = {e["row"]: e["errors"] for e in result.json()["errors"]}
    assert errors == {2: {"phone": [PHONE_MESSAGE]}, 3: {"phone": [PHONE_MESSAGE]},
                      4: {"phone": [PHONE_MESSAGE]}, 6: {"name": ["须为 1-64 个字"]}}
    assert _roster(api, province_token, pilot.institution_id) == before


def test_a_phone_another_employee_keeps_is_refused(api, pilot, province_token):
    taken = _import(api, province_token, pilot.institution_id,
                    "employee_no,name,phone,department_code\nE9301,新人,13800000005,office\n")
    assert taken.status_code == 422
    assert taken.json()["errors"] == [{"row": 2, "errors": {"phone": ["已被工号 E1006 使用"]}}]


def test_reimport_moves_a_bound_employee_everywhere(api, pilot, province_token, databases, redis_client, settings):
    from services.gateway.models import infra as gateway_infra
    from shared.outbox import OutboxRelay, queue_for

    pair = pilot.employee("o-mover", "13800000001")  # E1002
    moved = _import(api, province_token, pilot.institution_id,
                    "employee_no,name,phone,department_code,nickname\nE1002,李娜,13800000001,finance,\n")
    assert moved.status_code == 200, moved.text
    me = api.get("/api/auth/me", token=pair["access_token"]).json()
    assert me["department_id"] == pilot.departments["finance"]
    assert me["nickname"] == pair["user"]["nickname"]  # an empty nickname cell keeps the one on file
    relay = OutboxRelay("gateway", databases["gateway"], gateway_infra, redis_client)
    relay.relay_once()
    jobs = [job.args[0] for job in queue_for("points", redis_client).get_jobs()]
    types = [m["type"] for batch in jobs for m in batch]
    assert [t for t in types if t.startswith("Employee")] == ["EmployeeBound", "EmployeeUpdated"]
    assert "DepartmentsChanged" in types  # the boards learn the new headcounts


def test_admin_cannot_revoke_another_institutions_device(api, pilot, province_token, institution_admin,
                                                         other_institution):
    theirs = factories.device(api, province_token, other_institution, name="外单位")
    refused = api.delete(f"/api/auth/devices/{theirs['id']}", token=institution_admin)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden_institution"
    assert api.get("/api/points/whoami", token=theirs["token"]).status_code == 200


def test_device_tokens_are_refused_where_people_act(api, pilot, province_token):
    for kind in ("station", "screen"):
        device = factories.device(api, province_token, pilot.institution_id, kind=kind, name=kind)
        for method, path, body in [
            ("GET", "/api/auth/me", None),
            ("POST", "/api/auth/bind", {"invite_code": "ABCDEFGH"}),
            ("POST", "/api/auth/logout", {}),
            ("GET", "/api/auth/institutions", None),
            ("GET", f"/api/auth/institutions/{pilot.institution_id}/roster", None),
            ("POST", "/api/auth/devices", {"kind": "screen", "institution_id": pilot.institution_id, "name": "x"}),
        ]:
            response = api.request(method, path, json=body, token=device["token"])
            assert response.status_code == 403, (kind, path, response.text)
