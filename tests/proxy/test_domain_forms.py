"""Editing a domain and uploading one's own certificate from the Domains tab
(app/web/domains.py): the forms, their refusals, roles, teams and CSRF."""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from app import crypto
from app.extensions import db
from app.models import Certificate, Domain, Role
from app.proxy import certstore, domains
from tests.conftest import Auth, csrf_token
from tests.factories import make_app, make_project, make_team, make_user, team_of

EDIT = {"path_prefix": "/", "https_mode": "redirect", "www": "none"}


@pytest.fixture
def web(logged_in):
    client, user = logged_in
    app_row = make_app(make_project(team_of(user), "shop"), "web")
    domain = domains.add_domain(app_row, "shop.example.com").domain
    return client, app_row, domain


def self_signed(names: list[str], days: float = 60, start_days: float = -1) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a self-signed certificate for ``names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=start_days))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def _field_error(body: str, field: str) -> str:
    found = re.search(rf'id="{field}-error"[^>]*>(.*?)</div>', body, re.S)
    assert found, f"no error block for {field}"
    return found.group(1)


def _textarea(body: str, field: str) -> str:
    found = re.search(rf'<textarea[^>]*name="{field}"[^>]*>(.*?)</textarea>', body, re.S)
    assert found, f"no textarea {field}"
    return found.group(1)


def _edit(client, app_row, domain, **changes):
    data = EDIT | {"csrf_token": csrf_token(client, "/")} | changes
    return client.post(f"/apps/{app_row.id}/domains/{domain.id}/edit", data=data)


def _upload(client, app_row, domain, chain, key, **extra):
    data = {"csrf_token": csrf_token(client, "/"), "chain_pem": chain, "key_pem": key} | extra
    return client.post(f"/apps/{app_row.id}/domains/{domain.id}/certificate", data=data)


def _certificates() -> list[Certificate]:
    return list(db.session.scalars(select(Certificate)))


# ---- edit ------------------------------------------------------------------------------


def test_the_table_links_edit_and_upload_and_the_edit_form_shows_the_values(web):
    client, app_row, domain = web
    body = client.get(f"/apps/{app_row.id}/domains").get_data(as_text=True)
    assert f"/apps/{app_row.id}/domains/{domain.id}/edit" in body
    assert f"/apps/{app_row.id}/domains/{domain.id}/certificate" in body
    page = client.get(f"/apps/{app_row.id}/domains/{domain.id}/edit")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "cannot be changed here" in text and 'name="host"' not in text
    assert 'value="redirect" selected' in text or 'selected value="redirect"' in text


def test_editing_changes_the_mode_and_prefix_and_tells_the_worker(web):
    client, app_row, domain = web
    response = _edit(client, app_row, domain, path_prefix="/api/", strip_prefix="y",
                     https_mode="only", www="both")  # fmt: skip
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/apps/{app_row.id}/domains")
    db.session.expire_all()
    row = db.session.get(Domain, domain.id)
    assert (row.host, row.path_prefix, row.strip_prefix, row.https_mode, row.www) == (
        "shop.example.com", "/api", True, "only", "both",
    )  # fmt: skip
    assert "shop.example.com changed." in client.get(f"/apps/{app_row.id}/domains").get_data(True)


def test_a_plain_http_domain_offers_no_upload(web):
    client, app_row, domain = web
    assert _edit(client, app_row, domain, https_mode="off").status_code == 303
    body = client.get(f"/apps/{app_row.id}/domains").get_data(as_text=True)
    assert f"/domains/{domain.id}/certificate" not in body and "Upload certificate" not in body


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"path_prefix": "/a/../b"}, "path_prefix", "cannot contain"),
        ({"path_prefix": "/a%2fb"}, "path_prefix", "no %-encoding"),
        ({"https_mode": "sometimes"}, "https_mode", "Not a valid choice"),
    ],
)
def test_a_bad_edit_is_422_with_the_error_next_to_the_field(web, changes, field, words):
    client, app_row, domain = web
    response = _edit(client, app_row, domain, **changes)
    assert response.status_code == 422
    assert words in _field_error(response.get_data(as_text=True), field)
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).path_prefix == "/"


def test_an_edit_onto_another_route_of_the_app_is_refused(web):
    client, app_row, domain = web
    domains.add_domain(app_row, "shop.example.com", "/api")
    response = _edit(client, app_row, domain, path_prefix="/api")
    assert response.status_code == 422
    assert "already routes to this app" in _field_error(response.get_data(True), "path_prefix")


# ---- upload ----------------------------------------------------------------------------


def test_uploading_a_certificate_stores_it_encrypted_and_never_shows_the_key(web):
    client, app_row, domain = web
    chain, key = self_signed(["shop.example.com"])
    form = client.get(f"/apps/{app_row.id}/domains/{domain.id}/certificate")
    assert form.status_code == 200 and "shop.example.com" in form.get_data(as_text=True)
    response = _upload(client, app_row, domain, chain, key)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].endswith(f"/apps/{app_row.id}/domains")
    assert key not in response.get_data(as_text=True)
    db.session.expire_all()
    cert = db.session.get(Domain, domain.id).certificate
    assert cert.source == "uploaded" and cert.hosts == ["shop.example.com"]
    assert key not in cert.key_ciphertext and "PRIVATE KEY" not in cert.key_ciphertext
    assert crypto.decrypt(cert.key_ciphertext, context=certstore.KEY_CONTEXT) == key
    tab = client.get(f"/apps/{app_row.id}/domains").get_data(as_text=True)
    assert "uploaded, valid until" in tab and key not in tab
    again = client.get(f"/apps/{app_row.id}/domains/{domain.id}/certificate").get_data(True)
    assert key not in again and _textarea(again, "key_pem").strip() == ""


def test_the_www_twin_is_covered_when_the_option_is_on(web):
    client, app_row, domain = web
    _edit(client, app_row, domain, www="both")
    chain, key = self_signed(["shop.example.com"])
    response = _upload(client, app_row, domain, chain, key)
    assert response.status_code == 422
    assert "www.shop.example.com" in _field_error(response.get_data(True), "chain_pem")
    chain, key = self_signed(["shop.example.com", "www.shop.example.com"])
    assert _upload(client, app_row, domain, chain, key).status_code == 303
    db.session.expire_all()
    cert = db.session.get(Domain, domain.id).certificate
    assert sorted(cert.hosts) == ["shop.example.com", "www.shop.example.com"]


def test_a_key_of_another_certificate_is_422_and_the_key_field_comes_back_empty(web):
    client, app_row, domain = web
    chain, _ = self_signed(["shop.example.com"])
    _, other_key = self_signed(["shop.example.com"])
    response = _upload(client, app_row, domain, chain, other_key)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "does not belong to the certificate" in _field_error(body, "key_pem")
    assert _textarea(body, "key_pem").strip() == "" and other_key not in body
    assert "BEGIN CERTIFICATE" in _textarea(body, "chain_pem")  # the chain is kept
    assert _certificates() == [] or all(c.source != "uploaded" for c in _certificates())


def test_an_expired_certificate_is_422(web):
    client, app_row, domain = web
    chain, key = self_signed(["shop.example.com"], days=-1, start_days=-30)
    response = _upload(client, app_row, domain, chain, key)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "expired on" in _field_error(body, "chain_pem") and key not in body
    assert all(c.source != "uploaded" for c in _certificates())


@pytest.mark.parametrize(
    ("chain", "key", "field", "words"),
    [
        ("x" * (64 * 1024 + 1), "k", "chain_pem", "limited to 65,536 characters"),
        ("c", "x" * (64 * 1024 + 1), "key_pem", "limited to 65,536 characters"),
        ("", "k", "chain_pem", "Paste the certificate chain"),
        ("not a pem", "not a key", "chain_pem", "not a PEM certificate chain"),
    ],
)
def test_oversized_missing_and_garbled_fields_are_422(web, chain, key, field, words):
    client, app_row, domain = web
    response = _upload(client, app_row, domain, chain, key)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert words in _field_error(body, field)
    assert _textarea(body, "key_pem").strip() == ""


def test_the_certificate_and_key_may_come_as_files(web):
    import io

    client, app_row, domain = web
    chain, key = self_signed(["shop.example.com"])
    data = {"csrf_token": csrf_token(client, "/"), "chain_pem": "", "key_pem": "",
            "chain_file": (io.BytesIO(chain.encode()), "fullchain.pem"),
            "key_file": (io.BytesIO(key.encode()), "privkey.pem")}  # fmt: skip
    response = client.post(f"/apps/{app_row.id}/domains/{domain.id}/certificate", data=data,
                           content_type="multipart/form-data")  # fmt: skip
    assert response.status_code == 303, response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).certificate.source == "uploaded"


# ---- roles, teams, CSRF ----------------------------------------------------------------


def test_a_viewer_gets_neither_form(app, client):
    team = make_team()
    app_row = make_app(make_project(team, "shop"), "web")
    domain = domains.add_domain(app_row, "shop.example.com").domain
    assert Auth(client).login(make_user(team, Role.viewer)).status_code == 303
    body = client.get(f"/apps/{app_row.id}/domains").get_data(as_text=True)
    assert "/edit" not in body and "Upload certificate" not in body
    chain, key = self_signed(["shop.example.com"])
    for action in ("edit", "certificate"):
        assert client.get(f"/apps/{app_row.id}/domains/{domain.id}/{action}").status_code == 403
    assert _edit(client, app_row, domain, https_mode="off").status_code == 403
    assert _upload(client, app_row, domain, chain, key).status_code == 403
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).https_mode == "redirect"
    assert all(c.source != "uploaded" for c in _certificates())


def test_a_developer_may_edit_and_upload(app, client):
    team = make_team()
    app_row = make_app(make_project(team, "shop"), "web")
    domain = domains.add_domain(app_row, "shop.example.com").domain
    assert Auth(client).login(make_user(team, Role.developer)).status_code == 303
    assert _edit(client, app_row, domain, https_mode="only").status_code == 303
    chain, key = self_signed(["shop.example.com"])
    assert _upload(client, app_row, domain, chain, key).status_code == 303


def test_another_teams_domain_is_404_both_ways(web):
    client, mine, own_domain = web
    theirs = make_app(make_project(make_team("other"), "elsewhere"), "web")
    their_domain = domains.add_domain(theirs, "theirs.example.com").domain
    chain, key = self_signed(["theirs.example.com"])
    for app_row, domain in ((mine, their_domain), (theirs, own_domain), (theirs, their_domain)):
        for action in ("edit", "certificate"):
            url = f"/apps/{app_row.id}/domains/{domain.id}/{action}"
            assert client.get(url).status_code == 404, url
        assert _edit(client, app_row, domain, https_mode="off").status_code == 404
        assert _upload(client, app_row, domain, chain, key).status_code == 404
    db.session.expire_all()
    assert db.session.get(Domain, their_domain.id).https_mode == "redirect"
    assert all(c.source != "uploaded" for c in _certificates())


def test_both_forms_need_the_csrf_token(web):
    client, app_row, domain = web
    chain, key = self_signed(["shop.example.com"])
    edit = client.post(f"/apps/{app_row.id}/domains/{domain.id}/edit",
                       data=EDIT | {"https_mode": "off"})  # fmt: skip
    upload = client.post(f"/apps/{app_row.id}/domains/{domain.id}/certificate",
                         data={"chain_pem": chain, "key_pem": key})  # fmt: skip
    assert edit.status_code in (400, 403) and upload.status_code in (400, 403)
    assert key not in upload.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).https_mode == "redirect"
    assert all(c.source != "uploaded" for c in _certificates())


def test_both_forms_keep_their_element_ids_unique_even_with_errors(web):
    from tests.test_page_ids import duplicate_ids

    client, app_row, domain = web
    base = f"/apps/{app_row.id}/domains/{domain.id}"
    pages = [client.get(f"{base}/edit"), client.get(f"{base}/certificate"),
             _edit(client, app_row, domain, path_prefix="/a/../b"),
             _upload(client, app_row, domain, "", "")]  # fmt: skip
    for page in pages:
        assert duplicate_ids(page.get_data(as_text=True)) == []
