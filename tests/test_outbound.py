"""The one at-use check of outbound hosts, and the one setting behind it."""

import socket

import pytest

from app import config as config_module
from app import create_app, names, notify, outbound
from app.backups import storage
from app.sources import gitsrc


def test_an_internal_host_is_refused_unless_allow_listed(app):
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ()
    with pytest.raises(outbound.HostRefused, match="localhost resolves to an internal address"):
        outbound.check_host("localhost")
    with pytest.raises(outbound.HostRefused) as refused:
        outbound.check_host("localhost")
    assert "add localhost to SLIPWAY_OUTBOUND_ALLOWED_HOSTS" in str(refused.value)
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ("localhost",)
    assert outbound.check_host("localhost") == "localhost"


def test_a_public_address_passes():
    assert outbound.check_host("93.184.216.34", ()) == "93.184.216.34"


def test_every_use_refuses_through_the_same_check(app, monkeypatch):
    """Git, S3 and notifications each turn the one refusal into their own error.

    The name passes the checks made when a value is saved (it is no internal literal)
    but resolves to a private address (this machine has no DNS to serve such a name:
    the resolver answers for it), so only the check at use sees it.
    """
    host = "intranet.example.com"
    real = socket.getaddrinfo

    def resolve(name, *args, **kwargs):
        if name == host:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))]
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert names.resolves_internally(host) and not names.is_internal_address(host)
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ()
    with pytest.raises(gitsrc.GitError, match="internal address"):
        gitsrc.check_url(f"https://{host}/repo.git", ())
    target = storage.S3Target(endpoint_url=f"https://{host}:9000", region="", bucket="bucket",
                              prefix="", access_key_id="k", secret_access_key="s")  # fmt: skip
    with pytest.raises(storage.StorageError, match="internal address"):
        storage.client(target)
    with pytest.raises(notify.DeliveryError, match="internal address"):
        notify.check_host_at_use(host)
    app.config["OUTBOUND_ALLOWED_HOSTS"] = (host,)
    assert gitsrc.check_url(f"https://{host}/repo.git", (host,))
    notify.check_host_at_use(host)


def test_the_old_backup_setting_allows_at_use(base_config, monkeypatch):
    """An installation configured with SLIPWAY_BACKUP_ALLOWED_HOSTS keeps working."""
    monkeypatch.setenv("SLIPWAY_BACKUP_ALLOWED_HOSTS", "127.0.0.2")
    assert "127.0.0.2" in config_module.load(base_config)["OUTBOUND_ALLOWED_HOSTS"]
    app = create_app(base_config)
    with app.app_context():
        assert outbound.check_host("127.0.0.2") == "127.0.0.2"
        with pytest.raises(outbound.HostRefused):
            outbound.check_host("127.0.0.3")
