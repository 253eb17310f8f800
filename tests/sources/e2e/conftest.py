"""End-to-end webhook tests run on the deploy tests' real services (Docker, Traefik,
the smart-HTTP git server): their fixtures are reused here, not copied."""

from tests.deploys.conftest import app, infra, repo  # noqa: F401
