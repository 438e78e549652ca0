"""The desk over HTTP (no browser): sign-in on every route, sessions and their cookie, CSRF, the sign-in rate
limit, store scope on every surface, roles, version checks, evidence paths, security headers, /healthz."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from starlette.routing import BaseRoute, Mount, Route

from alerts.desk.audit import AuditAction
from alerts.desk.web_auth import CSRF_HEADER, LOGIN_CSRF_COOKIE, PUBLIC_PATHS, SESSION_COOKIE, safe_next
from common.models import DeskSession
from common.schemas import utc_now
from tests.unit.alerts.desk.webapp import PASSWORD, Web, csrf_of

MakeWeb = Callable[..., Web]


def _is_public(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC_PATHS)


def _set_cookie(response: object, name: str) -> str:
    headers = [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(f"{name}=")]
    assert len(found) == 1, headers
    return found[0]


def _attributes(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")[1:]]
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts)}


# -- every route needs sign-in ---------------------------------------------------------------------------------

def test_public_paths_are_only_login_health_liveness_and_static() -> None:
    assert PUBLIC_PATHS == ("/login", "/healthz", "/livez", "/static/")


def _every_route(routes: list[BaseRoute]) -> Iterator[tuple[str, list[str]]]:
    """(path, methods) of every route and mount, through included routers (FastAPI ≥ 0.13x includes lazily)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from _every_route([context.original_route for context in contexts()])
        elif isinstance(route, Route):  # APIRoute too
            yield route.path, sorted(route.methods or ["GET"])
        elif isinstance(route, Mount):
            yield route.path + "/", ["GET"]
            yield from ((route.path + p, m) for p, m in _every_route(route.routes or []))
        else:
            raise AssertionError(f"a kind of route this test does not know: {route!r}")


def test_every_route_but_the_public_ones_needs_sign_in(web: Web) -> None:
    alert_id = web.raise_alert("south")
    client = TestClient(web.app, follow_redirects=False)  # no cookies at all
    checked = []
    for path, methods in _every_route(web.app.routes):
        if _is_public(path):
            continue
        url = path.replace("{alert_id}", alert_id).replace("{camera_id}", "south-cam")
        assert "{" not in url, f"fill the path parameters of {path}"
        for method in methods:
            answer = client.request(method, url)
            if path.startswith("/api/"):
                assert answer.status_code == 401, (method, path, answer.status_code)
                assert answer.headers["www-authenticate"] == "Bearer"
            else:
                assert answer.status_code == 303, (method, path, answer.status_code)
                assert answer.headers["location"].startswith("/login?next="), (method, path)
            checked.append((method, path))
    # The list is derived from the app, so a new route is covered the day it is added; these must be among them.
    for expected in [("GET", "/"), ("GET", "/alerts/{alert_id}"), ("POST", "/alerts/{alert_id}/acknowledge"),
                     ("POST", "/logout"), ("GET", "/api/stream"), ("GET", "/api/alerts"),
                     ("GET", "/alerts/{alert_id}/video/download"), ("GET", "/audit"), ("GET", "/users"),
                     ("GET", "/cameras/{camera_id}"), ("POST", "/cameras/{camera_id}/missed")]:
        assert expected in checked


def test_public_routes_answer_signed_out(web: Web) -> None:
    client = TestClient(web.app, follow_redirects=False)
    assert client.get("/login").status_code == 200
    assert client.get("/static/desk.css").status_code == 200
    assert _wait_healthy(client).status_code == 200


def test_signed_out_page_redirects_to_login_with_next(web: Web) -> None:
    alert_id = web.raise_alert()
    answer = TestClient(web.app, follow_redirects=False).get(f"/alerts/{alert_id}")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=" + quote(f"/alerts/{alert_id}", safe="")


def test_bad_bearer_token_is_401_and_a_good_one_works(web: Web) -> None:
    token = web.accounts.create_token("gs", "integration")
    client = TestClient(web.app, follow_redirects=False)
    assert client.get("/api/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json() == {"username": "gs", "role": "guard", "stores": ["south"], "all_stores": False}


# -- the session cookie ----------------------------------------------------------------------------------------

def test_session_cookie_is_httponly_lax_root_and_not_secure_over_http(web: Web) -> None:
    answer = web.login("gs")
    assert answer.status_code == 303
    cookie = _attributes(_set_cookie(answer, SESSION_COOKIE))
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert "secure" not in cookie
    assert int(cookie["max-age"]) == web.settings.desk.session_max_hours * 3600


@pytest.mark.parametrize("desk, headers, secure", [
    ({"secure_cookies": "always"}, {}, True),
    ({"trust_forwarded": True}, {"X-Forwarded-Proto": "https"}, True),
    ({"trust_forwarded": True}, {"X-Forwarded-Proto": "http"}, False),
    ({}, {"X-Forwarded-Proto": "https"}, False),  # a header nobody vouches for changes nothing
    ({"secure_cookies": "never", "trust_forwarded": True}, {"X-Forwarded-Proto": "https"}, False),
])
def test_session_cookie_secure_flag(make_web: MakeWeb, desk: dict[str, object], headers: dict[str, str],
                                    secure: bool) -> None:
    web = make_web(**desk)
    answer = web.login("gs", headers=headers)
    assert answer.status_code == 303
    assert ("secure" in _attributes(_set_cookie(answer, SESSION_COOKIE))) is secure


# -- sessions --------------------------------------------------------------------------------------------------

def test_sign_in_with_the_password_then_sign_out_revokes_the_cookie(web: Web) -> None:
    answer = web.login("gs")
    assert answer.status_code == 303
    token = web.client.cookies[SESSION_COOKIE]
    home = web.client.get("/")
    assert home.status_code == 200
    out = web.client.post("/logout", data={"csrf_token": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    replay = TestClient(web.app, follow_redirects=False, cookies={SESSION_COOKIE: token})
    assert replay.get("/").status_code == 303
    assert replay.get("/api/me").status_code == 401
    assert [r.username for r in web.audit_rows(AuditAction.SIGN_OUT)] == ["gs"]


def test_sign_out_needs_the_csrf_token(web: Web) -> None:
    web.sign_in_as("gs")
    assert web.client.post("/logout").status_code == 403
    assert web.client.get("/").status_code == 200  # still signed in


def test_disabling_a_user_ends_their_open_session_at_once(web: Web) -> None:
    web.sign_in_as("gs")
    assert web.client.get("/api/me").status_code == 200
    web.accounts.disable_user("gs")
    assert web.client.get("/api/me").status_code == 401
    assert web.client.get("/").status_code == 303


def test_idle_session_expires_but_activity_keeps_it(make_web: MakeWeb) -> None:
    web = make_web(session_idle_minutes=30)
    web.sign_in_as("gs")
    web.clock.advance(20 * 60)
    assert web.client.get("/api/me").status_code == 200  # moves last_seen_at
    web.clock.advance(20 * 60)
    assert web.client.get("/api/me").status_code == 200  # 40 min after sign-in, 20 idle
    web.clock.advance(31 * 60)
    assert web.client.get("/api/me").status_code == 401
    assert web.client.get("/").status_code == 303


def test_idle_session_read_from_the_database_row(web: Web) -> None:
    web.sign_in_as("gs")
    with web.db.session() as session:
        session.execute(update(DeskSession).values(last_seen_at=web.clock.now() - timedelta(minutes=31)))
    assert web.client.get("/api/me").status_code == 401


def test_session_ends_after_its_maximum_age(make_web: MakeWeb) -> None:
    web = make_web(session_max_hours=1, session_idle_minutes=60)
    web.sign_in_as("gs")
    for _ in range(3):
        web.clock.advance(25 * 60)
        web.client.get("/api/me")
    assert web.client.get("/api/me").status_code == 401


# -- CSRF ------------------------------------------------------------------------------------------------------

def test_acknowledge_without_csrf_token_is_refused_and_changes_nothing(web: Web) -> None:
    alert_id = web.raise_alert()
    web.sign_in_as("gs")
    answer = web.client.post(f"/alerts/{alert_id}/acknowledge", data={"verdict": "theft_confirmed", "version": 1})
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert web.stored(alert_id).status == "open"
    assert web.audit_rows(AuditAction.ALERT_ACKNOWLEDGED) == []


def test_acknowledge_with_a_wrong_csrf_token_is_refused(web: Web) -> None:
    alert_id = web.raise_alert()
    web.sign_in_as("gs")
    other = web.new_session("gs").csrf_token  # a real token, of another session
    for token in ("wrong", other):
        answer = web.client.post(f"/alerts/{alert_id}/acknowledge",
                                 data={"verdict": "theft_confirmed", "version": 1, "csrf_token": token})
        assert answer.status_code == 403
        answer = web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                                 headers={CSRF_HEADER: token})
        assert answer.status_code == 403
    assert web.stored(alert_id).status == "open"


def test_csrf_token_as_form_field_or_header_works(web: Web) -> None:
    first, second = web.raise_alert(), web.raise_alert()
    csrf = web.sign_in_as("gs")
    answer = web.client.post(f"/alerts/{first}/acknowledge",
                             data={"verdict": "theft_confirmed", "version": 1, "csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == f"/alerts/{first}"
    answer = web.client.post(f"/api/alerts/{second}/acknowledge", json={"verdict": "false_alarm", "version": 1},
                             headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200
    assert web.stored(first).verdict == "theft_confirmed"
    assert web.stored(second).verdict == "false_alarm"


def test_api_call_with_a_session_cookie_still_needs_the_csrf_header(web: Web) -> None:
    alert_id = web.raise_alert()
    web.sign_in_as("gs")
    answer = web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "theft_confirmed", "version": 1})
    assert answer.status_code == 403
    assert web.stored(alert_id).status == "open"


def test_bearer_token_needs_no_csrf(web: Web) -> None:
    alert_id = web.raise_alert()
    token = web.accounts.create_token("gs", "integration")
    client = TestClient(web.app, follow_redirects=False)
    answer = client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["alert"]["acknowledged_by"] == "gs"


def test_login_post_without_the_login_csrf_cookie_or_field_is_refused(web: Web) -> None:
    form = web.client.get("/login")
    token = csrf_of(form.text)
    attempts = [
        ({"username": "gs", "password": PASSWORD, "csrf_token": token}, {}),  # field, no cookie
        ({"username": "gs", "password": PASSWORD}, {"Cookie": f"aw_login_csrf={token}"}),  # cookie, no field
        ({"username": "gs", "password": PASSWORD, "csrf_token": "x" + token},
         {"Cookie": f"aw_login_csrf={token}"}),  # they differ
    ]
    for data, headers in attempts:
        web.client.cookies.clear()
        answer = web.client.post("/login", data=data, headers=headers)
        assert answer.status_code == 403
        assert SESSION_COOKIE not in answer.cookies
    assert web.audit_rows(AuditAction.SIGN_IN) == []


# -- sign-in rate limit ----------------------------------------------------------------------------------------

def test_sixth_try_for_a_user_is_429_even_with_the_right_password(make_web: MakeWeb) -> None:
    web = make_web(trust_forwarded=True)
    for _ in range(5):
        answer = web.login("gs", "wrong password", headers={"X-Forwarded-For": "10.0.0.7"})
        assert answer.status_code == 401
    answer = web.login("gs", PASSWORD, headers={"X-Forwarded-For": "10.0.0.7"})
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == str(15 * 60)
    assert SESSION_COOKIE not in answer.cookies
    # another user from a fresh address is not affected, nor gs at the guard room's own machine
    assert web.login("gn", PASSWORD, headers={"X-Forwarded-For": "10.0.1.1"}).status_code == 303
    web.client.cookies.clear()
    assert web.login("gs", PASSWORD, headers={"X-Forwarded-For": "10.0.1.2"}).status_code == 303
    rows = [r for r in web.audit_rows(AuditAction.SIGN_IN) if r.username == "gs"]
    assert [r.success for r in rows] == [False] * 6 + [True]
    assert "refused" in rows[5].detail
    assert rows[0].address == "10.0.0.7" and rows[0].store_id == "south"


def test_guesses_spread_over_many_addresses_block_the_user_at_four_times_the_limit(make_web: MakeWeb) -> None:
    web = make_web(trust_forwarded=True)
    for n in range(20):
        assert web.login("gs", "wrong password", headers={"X-Forwarded-For": f"10.0.2.{n}"}).status_code == 401
    assert web.login("gs", PASSWORD, headers={"X-Forwarded-For": "10.0.3.1"}).status_code == 429


def test_failures_over_many_names_from_one_address_block_that_address(web: Web) -> None:
    for name in ("gn", "ms", "mn", "admin", "nobody"):
        assert web.login(name, "wrong password").status_code == 401
    assert web.login("gs", PASSWORD).status_code == 429  # gs never failed; the address did


def test_the_block_lifts_after_the_window(make_web: MakeWeb) -> None:
    web = make_web(login_window_minutes=1, login_max_failures=2)
    for _ in range(2):
        assert web.login("gs", "wrong password").status_code == 401
    answer = web.login("gs", PASSWORD)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "60"
    web.clock.advance(61)
    assert web.login("gs", PASSWORD).status_code == 303


# -- store scope -----------------------------------------------------------------------------------------------

@pytest.fixture
def two_stores(web: Web) -> tuple[Web, str, str]:
    north, south = web.raise_alert("north", video=True), web.raise_alert("south", video=True)
    return web, north, south


def test_guard_lists_only_their_stores_alerts(two_stores: tuple[Web, str, str]) -> None:
    web, north, south = two_stores
    web.sign_in_as("gs")
    ids = [a["alert_id"] for a in web.client.get("/api/alerts").json()["alerts"]]
    assert ids == [south]
    assert web.client.get("/api/alerts", params={"store": "north"}).json()["alerts"] == []
    page = web.client.get("/")
    assert south in page.text and north not in page.text and "North" not in page.text
    stores = web.client.get("/api/stores").json()["stores"]
    assert stores == [{"id": "south", "name": "South", "open_alerts": 1}]


@pytest.mark.parametrize("path", ["/api/alerts/{id}", "/alerts/{id}", "/alerts/{id}/snapshot", "/alerts/{id}/video"])
def test_another_stores_alert_answers_exactly_like_an_unknown_one(two_stores: tuple[Web, str, str],
                                                                  path: str) -> None:
    web, north, _ = two_stores
    web.sign_in_as("gs")
    hidden = web.client.get(path.format(id=north))
    unknown = web.client.get(path.format(id="no-such-alert"))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.text.replace(north, "ID") == unknown.text.replace("no-such-alert", "ID")


def test_another_stores_alert_cannot_be_acted_on(two_stores: tuple[Web, str, str]) -> None:
    web, north, _ = two_stores
    csrf = web.sign_in_as("ms")
    assert web.client.post(f"/api/alerts/{north}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                           headers={CSRF_HEADER: csrf}).status_code == 404
    assert web.client.post(f"/alerts/{north}/acknowledge",
                           data={"verdict": "theft_confirmed", "version": 1, "csrf_token": csrf}).status_code == 404
    assert web.client.get(f"/alerts/{north}/snapshot/download").status_code == 404
    assert web.stored(north).status == "open"


def test_admin_sees_every_store(two_stores: tuple[Web, str, str]) -> None:
    web, north, south = two_stores
    web.sign_in_as("admin")
    assert {a["alert_id"] for a in web.client.get("/api/alerts").json()["alerts"]} == {north, south}
    assert [s["id"] for s in web.client.get("/api/stores").json()["stores"]] == ["north", "south"]
    assert web.client.get(f"/alerts/{north}").status_code == 200


def test_audit_log_guard_refused_manager_own_store_admin_all(two_stores: tuple[Web, str, str]) -> None:
    web, north, south = two_stores
    csrf = web.sign_in_as("gn")
    assert web.client.post(f"/api/alerts/{north}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                           headers={CSRF_HEADER: csrf}).status_code == 200
    csrf = web.sign_in_as("gs")
    assert web.client.post(f"/api/alerts/{south}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                           headers={CSRF_HEADER: csrf}).status_code == 200
    assert web.client.get("/api/audit").status_code == 403
    assert web.client.get("/audit").status_code == 403

    web.sign_in_as("mn")
    entries = web.client.get("/api/audit").json()["entries"]
    assert entries and {e["store_id"] for e in entries} == {"north"}
    assert north in {e["target"] for e in entries} and south not in {e["target"] for e in entries}
    page = web.client.get("/audit")
    assert page.status_code == 200 and north in page.text and south not in page.text

    web.sign_in_as("admin")
    targets = {e["target"] for e in web.client.get("/api/audit").json()["entries"]}
    assert {north, south} <= targets
    assert web.client.get("/users").status_code == 200
    web.sign_in_as("mn")
    assert web.client.get("/users").status_code == 403


# -- roles and evidence ----------------------------------------------------------------------------------------

def test_guard_acknowledges_but_may_not_reopen_or_resolve(web: Web) -> None:
    alert_id = web.raise_alert()
    csrf = web.sign_in_as("gs")
    assert web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                           headers={CSRF_HEADER: csrf}).status_code == 200
    for action in ("reopen", "resolve"):
        api = web.client.post(f"/api/alerts/{alert_id}/{action}", json={"version": 2}, headers={CSRF_HEADER: csrf})
        assert api.status_code == 403, action
        page = web.client.post(f"/alerts/{alert_id}/{action}", data={"version": 2, "csrf_token": csrf})
        assert page.status_code == 403, action
    stored = web.stored(alert_id)
    assert (stored.status, stored.version) == ("acknowledged", 2)


def test_manager_resolves_and_reopens(web: Web) -> None:
    alert_id = web.raise_alert()
    csrf = web.sign_in_as("ms")
    headers = {CSRF_HEADER: csrf}
    assert web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                           headers=headers).status_code == 200
    resolved = web.client.post(f"/api/alerts/{alert_id}/resolve", json={"version": 2}, headers=headers)
    assert resolved.status_code == 200 and resolved.json()["alert"]["status"] == "resolved"
    page = web.client.post(f"/alerts/{alert_id}/reopen", data={"version": 3, "csrf_token": csrf})
    assert page.status_code == 303
    stored = web.stored(alert_id)
    assert (stored.status, stored.verdict, stored.version) == ("open", None, 4)


def test_guard_may_view_but_not_download_evidence(web: Web) -> None:
    alert_id = web.raise_alert(video=True)
    web.sign_in_as("gs")
    view = web.client.get(f"/alerts/{alert_id}/snapshot")
    assert view.status_code == 200 and view.content.startswith(b"\xff\xd8")
    assert view.headers["content-type"] == "image/jpeg"
    assert view.headers.get("content-disposition", "inline").startswith("inline")
    assert web.client.get(f"/alerts/{alert_id}/video").status_code == 200
    for kind in ("snapshot", "video"):
        assert web.client.get(f"/alerts/{alert_id}/{kind}/download").status_code == 403
    assert web.audit_rows(AuditAction.EVIDENCE_DOWNLOADED) == []


def test_manager_downloads_evidence_as_an_attachment(web: Web) -> None:
    alert_id = web.raise_alert(video=True)
    web.sign_in_as("ms")
    for kind, suffix in (("snapshot", ".jpg"), ("video", ".mp4")):
        answer = web.client.get(f"/alerts/{alert_id}/{kind}/download")
        assert answer.status_code == 200
        disposition = answer.headers["content-disposition"]
        assert disposition.startswith("attachment") and f"{alert_id}-{kind}{suffix}" in disposition
        assert answer.headers["cache-control"] == "private, no-store"


def test_every_evidence_view_and_download_is_audited(web: Web) -> None:
    alert_id = web.raise_alert(video=True)
    web.sign_in_as("gs")
    web.client.get(f"/alerts/{alert_id}/snapshot")
    web.client.get(f"/alerts/{alert_id}/snapshot")  # the same viewing (within VIEWING_S): one row
    web.client.get(f"/alerts/{alert_id}/video")
    web.sign_in_as("ms")
    web.client.get(f"/alerts/{alert_id}/snapshot")  # another person: a viewing of their own
    web.client.get(f"/alerts/{alert_id}/video/download")
    viewed = web.audit_rows(AuditAction.EVIDENCE_VIEWED)
    assert [(r.username, r.role, r.store_id, r.target, r.address, r.detail) for r in viewed] == [
        ("gs", "guard", "south", alert_id, "testclient", "snapshot"),
        ("gs", "guard", "south", alert_id, "testclient", "video"),
        ("ms", "manager", "south", alert_id, "testclient", "snapshot"),
    ]
    downloaded = web.audit_rows(AuditAction.EVIDENCE_DOWNLOADED)
    assert [(r.username, r.role, r.store_id, r.target, r.detail) for r in downloaded] == [
        ("ms", "manager", "south", alert_id, "video")]


def test_audited_address_is_the_one_our_proxy_added_only_behind_a_trusted_proxy(make_web: MakeWeb) -> None:
    """Behind the proxy the address is the last X-Forwarded-For entry (the one the proxy appended); what the
    client put before it ("6.6.6.6", forged) is never believed."""
    for trust, expected in ((True, "203.0.113.7"), (False, "testclient")):
        web = make_web(trust_forwarded=trust)
        alert_id = web.raise_alert()
        web.sign_in_as("gs")
        web.client.get(f"/alerts/{alert_id}/snapshot", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
        assert [r.address for r in web.audit_rows(AuditAction.EVIDENCE_VIEWED)] == [expected]


@pytest.mark.parametrize("path", [
    "/alerts/..%2F..%2Fetc%2Fpasswd/snapshot",
    "/alerts/%2Fetc%2Fpasswd/snapshot",
    "/alerts/..%2F..%2Fetc%2Fpasswd/snapshot/download",
    "/alerts/%2e%2e/snapshot",
])
def test_evidence_paths_from_the_client_are_never_files(web: Web, path: str) -> None:
    web.sign_in_as("admin")
    answer = web.client.get(path)
    assert answer.status_code == 404
    assert b"root:" not in answer.content
    assert web.audit_rows(AuditAction.EVIDENCE_VIEWED) == []


def test_stored_evidence_outside_the_evidence_directory_is_not_served(web: Web, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"secret")
    sibling = web.evidence_dir.parent / (web.evidence_dir.name + "-other")  # shares the directory's prefix
    sibling.mkdir()
    (sibling / "x.jpg").write_bytes(b"secret")
    link = web.evidence_dir / "link.jpg"
    link.symlink_to(outside)
    paths = [str(outside), str(sibling / "x.jpg"), str(link), "/etc/hostname", "/etc/passwd",
             str(web.evidence_dir / ".." / "outside.jpg"), str(web.evidence_dir / "missing.jpg"),
             str(web.evidence_dir)]
    inside = web.raise_alert()  # the control: a file inside the directory is served
    web.sign_in_as("admin")
    assert web.client.get(f"/alerts/{inside}/snapshot").status_code == 200
    for path in paths:
        alert_id = web.raise_alert(evidence_path=path)
        for url in (f"/alerts/{alert_id}/snapshot", f"/alerts/{alert_id}/snapshot/download"):
            answer = web.client.get(url)
            assert answer.status_code == 404, (path, url)
            assert b"secret" not in answer.content
    assert len(web.audit_rows(AuditAction.EVIDENCE_VIEWED)) == 1  # only the control


def test_alert_without_evidence_is_404(web: Web) -> None:
    alert_id = web.raise_alert(snapshot=False)
    web.sign_in_as("admin")
    assert web.client.get(f"/alerts/{alert_id}/snapshot").status_code == 404
    assert web.client.get(f"/alerts/{alert_id}/video").status_code == 404


# -- version checks and the state machine ----------------------------------------------------------------------

def test_second_acknowledgement_of_the_same_version_is_409_naming_the_first(web: Web) -> None:
    alert_id = web.raise_alert()
    first_client = TestClient(web.app, follow_redirects=False)
    first = web.sign_in_as("gs", first_client)
    second = web.sign_in_as("gs2")
    a = first_client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "theft_confirmed", "version": 1},
                          headers={CSRF_HEADER: first})
    assert a.status_code == 200
    b = web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "false_alarm", "version": 1},
                        headers={CSRF_HEADER: second})
    assert b.status_code == 409
    body = b.json()
    assert "gs acknowledged it first" in body["detail"] and body["actor"] == "gs"
    assert body["alert"]["acknowledged_by"] == "gs" and body["alert"]["verdict"] == "theft_confirmed"
    assert body["alert"]["version"] == 2
    page = web.client.post(f"/alerts/{alert_id}/acknowledge",
                           data={"verdict": "false_alarm", "version": 1, "csrf_token": second})
    assert page.status_code == 409
    assert "gs acknowledged it first" in page.text
    stored = web.stored(alert_id)
    assert (stored.verdict, stored.acknowledged_by, stored.version) == ("theft_confirmed", "gs", 2)
    assert len(web.audit_rows(AuditAction.ALERT_ACKNOWLEDGED)) == 1


@pytest.mark.parametrize("verdict", ["bogus", ""])
def test_invalid_verdict_is_422_and_changes_nothing(web: Web, verdict: str) -> None:
    alert_id = web.raise_alert()
    csrf = web.sign_in_as("gs")
    api = web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": verdict, "version": 1},
                          headers={CSRF_HEADER: csrf})
    assert api.status_code == 422
    page = web.client.post(f"/alerts/{alert_id}/acknowledge",
                           data={"verdict": verdict, "version": 1, "csrf_token": csrf})
    assert page.status_code == 422
    assert web.stored(alert_id).status == "open"


def test_acknowledge_without_a_verdict_is_422(web: Web) -> None:
    alert_id = web.raise_alert()
    csrf = web.sign_in_as("gs")
    assert web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"version": 1},
                           headers={CSRF_HEADER: csrf}).status_code == 422
    assert web.client.post(f"/alerts/{alert_id}/acknowledge",
                           data={"version": 1, "csrf_token": csrf}).status_code == 422
    assert web.stored(alert_id).status == "open"


def test_acknowledging_an_acknowledged_alert_at_its_version_is_403(web: Web) -> None:
    alert_id = web.raise_alert()
    csrf = web.sign_in_as("gs")
    headers = {CSRF_HEADER: csrf}
    web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "theft_confirmed", "version": 1}, headers=headers)
    again = web.client.post(f"/api/alerts/{alert_id}/acknowledge", json={"verdict": "false_alarm", "version": 2},
                            headers=headers)
    assert again.status_code == 403
    assert web.stored(alert_id).verdict == "theft_confirmed"


def test_alert_page_shows_the_alert_and_its_history(web: Web) -> None:
    alert_id = web.raise_alert()
    csrf = web.sign_in_as("gs")
    web.client.post(f"/alerts/{alert_id}/acknowledge", data={"verdict": "theft_confirmed", "version": 1, "csrf_token": csrf,
                                                             "note": "<script>x</script>"})
    page = web.client.get(f"/alerts/{alert_id}")
    assert page.status_code == 200
    assert alert_id in page.text and "<script>x</script>" not in page.text and "&lt;script&gt;" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_alert_page_tells_the_clips_time_from_when_it_reached_the_desk(web: Web) -> None:
    """An alert raised from an hour-old backlog says so; one raised as it happened has no second time."""
    late = web.raise_alert(raised_at=utc_now() - timedelta(hours=1))
    prompt = web.raise_alert()
    web.sign_in_as("gs")
    late_page = web.client.get(f"/alerts/{late}").text
    assert 'id="alert-reached"' in late_page and "60 min after its clips" in late_page
    assert "UTC — reached the desk" in late_page
    assert 'id="alert-reached"' not in web.client.get(f"/alerts/{prompt}").text


# -- headers, redirects, health --------------------------------------------------------------------------------

@pytest.mark.parametrize("path, signed_in", [("/", True), ("/login", False), ("/alerts/nope", True),
                                             ("/api/alerts", True), ("/static/desk.js", False)])
def test_security_headers(web: Web, path: str, signed_in: bool) -> None:
    if signed_in:
        web.sign_in_as("gs")
    answer = web.client.get(path)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp


@pytest.mark.parametrize("target, expected", [
    ("/alerts/a-1", "/alerts/a-1"),
    ("/?store=north", "/?store=north"),
    ("//evil.com", "/"),
    ("https://evil.com", "/"),
    ("/\\evil.com", "/"),
    ("\\\\evil.com", "/"),
    ("evil.com", "/"),
    ("", "/"),
    (None, "/"),
    ("javascript:alert(1)", "/"),
])
def test_safe_next(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


@pytest.mark.parametrize("next_, lands", [("/alerts/south-alert-1", "/alerts/south-alert-1"), ("//evil.com", "/"),
                                          ("https://evil.com/x", "/")])
def test_sign_in_lands_on_next_only_when_it_is_local(web: Web, next_: str, lands: str) -> None:
    answer = web.login("gs", next=next_)
    assert answer.status_code == 303
    assert answer.headers["location"] == lands


def test_login_page_of_a_signed_in_user_redirects_to_a_safe_next(web: Web) -> None:
    web.sign_in_as("gs")
    answer = web.client.get("/login", params={"next": "//evil.com"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"


def test_wrong_password_is_401_and_audited(web: Web) -> None:
    answer = web.login("gs", "not the password")
    assert answer.status_code == 401
    assert "Wrong username or password" in answer.text
    assert SESSION_COOKIE not in answer.cookies
    rows = web.audit_rows(AuditAction.SIGN_IN)
    assert [(r.username, r.success, r.address) for r in rows] == [("gs", False, "testclient")]


def _wait_healthy(client: TestClient, timeout_s: float = 5.0) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get("/healthz")
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


def test_healthz_reports_database_and_feed(web: Web) -> None:
    answer = _wait_healthy(TestClient(web.app, follow_redirects=False))
    assert answer.status_code == 200  # type: ignore[attr-defined]
    assert answer.json() == {"database": True, "feed": True}  # type: ignore[attr-defined]


def test_healthz_is_503_when_the_database_is_away(web: Web) -> None:
    _wait_healthy(web.client)
    web.db.engine.dispose()
    Path(web.settings.database_url().removeprefix("sqlite:///")).unlink()
    (web.tmp / "db.sqlite").mkdir()  # now it cannot even be opened
    answer = web.client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["database"] is False


def test_liveness_does_not_depend_on_the_database_and_health_answers_head(web: Web) -> None:
    web.db.engine.dispose()
    assert web.client.get("/livez").status_code == 200
    assert web.client.head("/healthz").status_code == 200
    assert web.client.head("/livez").status_code == 200


def test_api_answers_are_never_cached(web: Web) -> None:
    web.sign_in_as("gs")
    for path in ("/api/alerts", "/api/me", "/api/stores"):
        assert web.client.get(path).headers["cache-control"] == "no-store", path


def test_signing_in_again_revokes_the_session_the_browser_held(web: Web) -> None:
    assert web.login("gs").status_code == 303
    old = web.client.cookies.get(SESSION_COOKIE)
    assert old and web.app.state.desk.accounts.session(old) is not None
    web.client.cookies.clear()
    form = web.client.get("/login")
    token = csrf_of(form.text)
    answer = web.client.post("/login", data={"username": "gn", "password": PASSWORD, "csrf_token": token, "next": "/"},
                             headers={"Cookie": f"{LOGIN_CSRF_COOKIE}={token}; {SESSION_COOKIE}={old}"})
    assert answer.status_code == 303 and answer.cookies.get(SESSION_COOKIE) not in (None, old)
    assert web.app.state.desk.accounts.session(old) is None


@pytest.mark.parametrize("path", ["/alerts/{id}/snapshot/download", "/alerts/{id}/bundle.zip"])
def test_evidence_downloads_refuse_requests_from_another_site(web: Web, path: str) -> None:
    alert_id = web.raise_alert()
    web.sign_in_as("ms")
    url = path.format(id=alert_id)
    assert web.client.get(url, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert web.client.get(url, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert web.client.get(url).status_code == 200  # browsers that send no Sec-Fetch-* headers still work
