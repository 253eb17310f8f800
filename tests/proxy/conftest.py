"""A real Traefik on a fresh proxy folder, for the tests of app/proxy."""

from __future__ import annotations

import pytest

from app.proxy import traefik
from tests import lab
from tests.conftest import running_app


@pytest.fixture
def proxy(base_config, tmp_path):
    """An app whose PROXY_DIR is fresh, and a Traefik on the static config it writes."""
    config = base_config | {
        "PROXY_DIR": str(tmp_path / "traefik"),
        "HTTP_PORT": lab.free_port(),
        "HTTPS_PORT": lab.free_port(),
        "PROXY_API_PORT": lab.free_port(),
    }
    with running_app(config) as app:
        static = traefik.write_static_config()
        server = lab.Traefik(static, tmp_path / "traefik.log")
        try:
            server.wait_ready(config["PROXY_API_PORT"])
            yield app, server, static
        finally:
            server.stop()
