"""The dashboard over plain HTTP: the session cookie's attributes, forms that
another site cannot post (CSRF token, Origin), paging, precise errors, and the
headers every page carries."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from homeo.api.sessions import session_id
from homeo.api.ui.render import csrf_token
from homeo.keys import revoke_key
from homeo.store.models import NewRun
from homeo.engine.submit import submit_run
from tests.api.conftest import Served, add_key, serve  # noqa: F401 (a fixture)
from tests.api.test_runs import run_id_of, wait_for
from tests.api.test_waits import waiting


def browser_like(served: Served) -> httpx.Client:
    """A client with no Authorization header: it signs in as a browser does."""
    return httpx.Client(base_url=served.url, timeout=30)


def sign_in(client: httpx.Client, key: str) -> str:
    """Signs in; returns the session's secret, the cookie's value."""
    answer = client.post("/ui/sign-in", data={"token": key})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/runs", answer.text
    return client.cookies["homeo_session"]


def test_signing_in_sets_a_strict_httponly_cookie_for_ui_only(served: Served) -> None:
    with browser_like(served) as client:
        answer = client.post("/ui/sign-in", data={"token": served.key})
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("homeo_session=")
        secret = client.cookies["homeo_session"]
        assert served.key not in cookie and len(secret) >= 40  # a session's secret, not the key
        for attribute in ("HttpOnly", "Path=/ui", "SameSite=strict"):
            assert attribute.lower() in cookie.lower(), cookie
        assert "secure" not in cookie.lower()  # plain HTTP here; over TLS it is Secure
        runs = client.get("/ui/runs")
        assert runs.status_code == 200 and "Tenant <strong id=\"tenant\">default" in runs.text
        # The cookie is no key for the API: /v1 reads only the Authorization header.
        assert client.get("/v1/runs").status_code == 401
        out = client.post("/ui/sign-out")
        assert out.status_code == 303 and 'homeo_session=""' in out.headers["set-cookie"]
        assert client.get("/ui/runs").status_code == 401
    # Signing out ended the session on the server: a copy of the cookie is refused.
    with browser_like(served) as copy:
        stale = copy.get("/ui/runs", headers={"cookie": f"homeo_session={secret}"})
        assert stale.status_code == 401 and "you signed out of this session" in stale.text


def test_the_store_keeps_only_the_secrets_hash(served: Served) -> None:
    with browser_like(served) as client:
        secret = sign_in(client, served.key)
    store = served.runtime.backends.store
    assert store.get_ui_session(secret) is None
    kept = store.get_ui_session(session_id(secret))
    assert kept is not None and kept.tenant_id == "default" and kept.role == "admin"
    hours = served.runtime.settings.ui_session_hours
    assert kept.expires_at - kept.created_at == hours * 3600


def test_a_session_ends_after_its_hours(serve) -> None:  # noqa: F811
    now = [1_900_000_000.0]
    served = serve(wall_clock=lambda: now[0], ui_session_hours=2)
    with browser_like(served) as client:
        sign_in(client, served.key)
        now[0] += 2 * 3600 - 1
        assert client.get("/ui/runs").status_code == 200
        now[0] += 2
        expired = client.get("/ui/runs")
        assert expired.status_code == 401 and "HOMEO_UI_SESSION_HOURS" in expired.text


def test_revoking_the_key_ends_its_sessions(served: Served) -> None:
    tenant = served.runtime.settings.default_tenant
    member = add_key(served, tenant, role="member")
    with browser_like(served) as client:
        sign_in(client, member)
        assert client.get("/ui/runs").status_code == 200
        revoke_key(served.runtime.backends.store, member.split("_")[1])
        ended = client.get("/ui/runs")
        assert ended.status_code == 401 and "was revoked" in ended.text


def test_a_wrong_key_is_refused_with_the_reason(served: Served) -> None:
    with browser_like(served) as client:
        refused = client.post("/ui/sign-in", data={"token": "hk_0123456789abcdef_" + "w" * 40})
        assert refused.status_code == 401
        assert "unknown API key hk_0123456789abcdef_…" in refused.text
        assert "set-cookie" not in refused.headers
        empty = client.post("/ui/sign-in", data={"token": "  "})
        assert empty.status_code == 400 and "enter an API key" in empty.text


def test_a_form_from_another_site_is_refused(served: Served) -> None:
    run_id = run_id_of(served.client, "payer", "900")
    wait_for(served.client, run_id, waiting)
    with browser_like(served) as client:
        sign_in(client, served.key)
        page = client.get(f"/ui/runs/{run_id}").text
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)
        assert token == csrf_token(client.cookies["homeo_session"])
        for sent in ({}, {"csrf": "0" * 64}):
            refused = client.post(f"/ui/runs/{run_id}/approve", data=sent)
            assert refused.status_code == 403 and "CSRF token" in refused.text
        assert served.client.get(f"/v1/runs/{run_id}").json()["status"] == "waiting"
        elsewhere = client.post("/ui/sign-in", data={"token": served.key},
                                headers={"origin": "https://evil.example"})
        assert elsewhere.status_code == 403 and "https://evil.example" in elsewhere.text
        approved = client.post(f"/ui/runs/{run_id}/approve", data={"csrf": token})
        assert approved.status_code == 303
        assert approved.headers["location"] == f"/ui/runs/{run_id}"
    assert wait_for(served.client, run_id)["status"] == "succeeded"


def test_a_member_cancels_only_its_own_runs(served: Served) -> None:
    tenant = served.runtime.settings.default_tenant
    member = add_key(served, tenant, role="member")
    others, _ = submit_run(served.runtime.backends, NewRun(tenant_id=tenant, agent="payer",
                                                           input="5"))
    wait_for(served.client, others.id, waiting)
    with browser_like(served) as client:
        token = csrf_token(sign_in(client, member))
        assert 'id="cancel"' not in client.get(f"/ui/runs/{others.id}").text
        refused = client.post(f"/ui/runs/{others.id}/cancel", data={"csrf": token})
        assert refused.status_code == 403 and "cancels only the runs it submitted" in refused.text
        mine = run_id_of(served.client_for(member), "payer", "6")
        wait_for(served.client, mine, waiting)
        page = client.get(f"/ui/runs/{mine}").text
        assert 'id="cancel"' in page and 'id="approve"' not in page  # approving needs operator
        assert client.post(f"/ui/runs/{mine}/cancel", data={"csrf": token}).status_code == 303
    assert served.client.get(f"/v1/runs/{mine}").json()["status"] == "cancelled"
    assert served.client.get(f"/v1/runs/{others.id}").json()["status"] == "waiting"


def test_runs_come_a_page_at_a_time_newest_first(served: Served) -> None:
    made = [run_id_of(served.client, "echo", f"run {n}") for n in range(30)]
    api = served.client
    first = api.get("/ui/runs")
    assert first.status_code == 200
    listed = re.findall(r'href="/ui/runs/(run_[0-9a-f]{22})"', first.text)
    assert listed == made[::-1][:25]
    older = re.search(r'id="older" rel="next" href="([^"]+)"', first.text).group(1)
    rest = api.get(older.replace("&amp;", "&"))
    assert re.findall(r'href="/ui/runs/(run_[0-9a-f]{22})"', rest.text) == made[::-1][25:]
    assert 'id="older"' not in rest.text


def test_bad_input_gets_a_page_that_says_what_is_wrong(served: Served) -> None:
    api = served.client
    bad = api.get("/ui/runs", params={"status": "sleeping"})
    assert bad.status_code == 422 and "status &#39;sleeping&#39; is not one of" in bad.text
    assert bad.headers["content-type"].startswith("text/html")
    bad = api.get("/ui/runs", params={"before": "yesterday"})
    assert bad.status_code == 422 and "is not a run id" in bad.text
    nul = api.post("/ui/sign-in", data={"token": "hk_\x00"})
    assert nul.status_code == 422 and "NUL" in nul.text
    missing = api.get("/ui/runs/run_00000000000000000000ff")
    assert missing.status_code == 404 and "no run" in missing.text
    nobody = api.get("/ui/agents/nobody")
    assert nobody.status_code == 404 and "/ui/agents lists the agents it has" in nobody.text


def test_pages_carry_headers_that_keep_them_safe(served: Served) -> None:
    answer = served.client.get("/ui/runs")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    style = served.client.get("/ui/static/ui.css")
    assert style.status_code == 200 and "--accent" in style.text
    # No script, and nothing fetched from another host: it works offline.
    for path in ("/ui", "/ui/runs"):
        text = served.client.get(path).text
        assert "<script" not in text and "http://" not in text and "https://" not in text


def test_jinja_escapes_what_runs_carry(served: Served) -> None:
    run_id = run_id_of(served.client, "echo", "<script>alert(1)</script>")
    wait_for(served.client, run_id)
    page = served.client.get(f"/ui/runs/{run_id}").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_a_session_whose_key_fails_is_forgotten(served: Served) -> None:
    stale = "hk_0123456789abcdef_" + "w" * 40
    with browser_like(served) as client:
        answer = client.get("/ui/runs", headers={"cookie": f"homeo_session={stale}"})
    assert answer.status_code == 401 and "this sign-in is unknown here" in answer.text
    assert answer.headers["set-cookie"].startswith('homeo_session=""; Max-Age=0; Path=/ui')
    assert "www-authenticate" not in answer.headers  # no browser password dialog


def test_over_https_the_session_cookie_is_secure(serve, tmp_path: Path) -> None:  # noqa: F811
    from tests.support.tlskit import make_pki

    pki = make_pki(tmp_path / "pki")
    served = serve(tls_cert_file=pki.cert_file, tls_key_file=pki.key_file, tls_ca=pki.ca_file)
    with served.client_for(None) as client:
        answer = client.post("/ui/sign-in", data={"token": served.key})
        assert answer.status_code == 303
        assert "; secure" in answer.headers["set-cookie"].lower()
        assert client.get("/ui/runs").status_code == 200
