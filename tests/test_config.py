"""Settings come from SLIPWAY_* variables; secrets are generated once, or required."""

import os
import stat

import pytest

from app import config


def test_fresh_data_dir_generates_keys_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("SLIPWAY_SECRET_KEY", raising=False)
    monkeypatch.delenv("SLIPWAY_ENCRYPTION_KEYS", raising=False)
    first = config.load({"DATA_DIR": str(tmp_path)})
    for name in ("secret_key", "encryption_keys"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, name
    again = config.load({"DATA_DIR": str(tmp_path)})
    assert again["SECRET_KEY"] == first["SECRET_KEY"]
    assert again["ENCRYPTION_KEYS"] == first["ENCRYPTION_KEYS"]
    assert len(first["SECRET_KEY"]) >= 64


def test_two_installs_get_different_secrets(tmp_path, monkeypatch):
    monkeypatch.delenv("SLIPWAY_SECRET_KEY", raising=False)
    a = config.load({"DATA_DIR": str(tmp_path / "a")})
    b = config.load({"DATA_DIR": str(tmp_path / "b")})
    assert a["SECRET_KEY"] != b["SECRET_KEY"]
    assert a["ENCRYPTION_KEYS"] != b["ENCRYPTION_KEYS"]


def test_production_without_secret_key_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIPWAY_ENV", "production")
    monkeypatch.delenv("SLIPWAY_SECRET_KEY", raising=False)
    with pytest.raises(config.ConfigError, match="SLIPWAY_SECRET_KEY"):
        config.load({"DATA_DIR": str(tmp_path)})
    assert not (tmp_path / "secret_key").exists()


def test_production_without_encryption_keys_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIPWAY_ENV", "production")
    monkeypatch.setenv("SLIPWAY_SECRET_KEY", "x" * 64)
    monkeypatch.delenv("SLIPWAY_ENCRYPTION_KEYS", raising=False)
    with pytest.raises(config.ConfigError, match="SLIPWAY_ENCRYPTION_KEYS"):
        config.load({"DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("text", ["k1", "k1:not base64!", "k1:" + "QUFB", "bad id:" + "A" * 44, ""])
def test_malformed_encryption_keys_are_refused(text):
    with pytest.raises(config.ConfigError):
        config.parse_encryption_keys(text)


def test_environment_variables_configure_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", "postgresql://u:p@db.example/slipway")
    monkeypatch.setenv("SLIPWAY_REDIS_URL", "unix:///run/redis.sock")
    monkeypatch.setenv("SLIPWAY_BASE_DOMAIN", "apps.example.com")
    monkeypatch.setenv("SLIPWAY_PUBLIC_URL", "https://slipway.example.com")
    settings = config.load({"DATA_DIR": str(tmp_path)})
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.example/slipway"
    assert settings["RATELIMIT_STORAGE_URI"] == "redis+unix:///run/redis.sock"
    assert settings["BASE_DOMAIN"] == "apps.example.com"
    assert settings["SESSION_COOKIE_SECURE"] is True


def test_embedded_default_is_sqlite_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("SLIPWAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("SLIPWAY_REDIS_URL", raising=False)
    settings = config.load({"DATA_DIR": str(tmp_path)})
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/slipway.db"
    assert settings["REDIS_URL"] == f"unix://{tmp_path}/redis.sock"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    from sqlalchemy import text

    from app import create_app
    from app.extensions import db

    app = create_app(
        {"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db"}
    )
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_one_outbound_allow_list_with_the_old_settings_as_aliases(tmp_path, monkeypatch):
    """SLIPWAY_BACKUP_/GIT_ALLOWED_HOSTS still count: their hosts join the one list."""
    monkeypatch.setenv("SLIPWAY_OUTBOUND_ALLOWED_HOSTS", "git.lan, s3.lan")
    monkeypatch.setenv("SLIPWAY_BACKUP_ALLOWED_HOSTS", "db.lan,s3.lan")
    monkeypatch.setenv("SLIPWAY_GIT_ALLOWED_HOSTS", "gitea.lan")
    loaded = config.load({"DATA_DIR": str(tmp_path)})
    assert loaded["OUTBOUND_ALLOWED_HOSTS"] == ("git.lan", "s3.lan", "db.lan", "gitea.lan")
    assert loaded["BACKUP_ALLOWED_HOSTS"] == loaded["OUTBOUND_ALLOWED_HOSTS"]
    assert loaded["GIT_ALLOWED_HOSTS"] == loaded["OUTBOUND_ALLOWED_HOSTS"]


def test_an_old_allow_list_key_in_overrides_feeds_the_outbound_list(tmp_path, monkeypatch):
    for name in ("OUTBOUND", "BACKUP", "GIT"):
        monkeypatch.delenv(f"SLIPWAY_{name}_ALLOWED_HOSTS", raising=False)
    assert config.load({"DATA_DIR": str(tmp_path)})["OUTBOUND_ALLOWED_HOSTS"] == ()
    loaded = config.load({"DATA_DIR": str(tmp_path), "GIT_ALLOWED_HOSTS": ("127.0.0.1",)})
    assert loaded["OUTBOUND_ALLOWED_HOSTS"] == ("127.0.0.1",)
    assert loaded["BACKUP_ALLOWED_HOSTS"] == ("127.0.0.1",)


def test_live_views_per_worker_are_the_threads_not_kept_for_pages(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIPWAY_WEB_THREADS", "40")
    monkeypatch.setenv("SLIPWAY_WEB_PAGE_THREADS", "12")
    settings = config.load({"DATA_DIR": str(tmp_path)})
    assert settings["LIVE_VIEWS_PER_WORKER"] == 28


@pytest.mark.parametrize(
    ("threads", "pages"), [("32", "32"), ("32", "40"), ("32", "0"), ("2", "1"), ("many", "8")]
)
def test_page_threads_must_leave_threads_for_live_views(tmp_path, monkeypatch, threads, pages):
    monkeypatch.setenv("SLIPWAY_WEB_THREADS", threads)
    monkeypatch.setenv("SLIPWAY_WEB_PAGE_THREADS", pages)
    with pytest.raises(config.ConfigError, match="SLIPWAY_WEB_"):
        config.load({"DATA_DIR": str(tmp_path)})


def test_make_run_starts_gunicorn_with_the_threads_the_app_counts_on():
    """scripts/run.py (standard library only) repeats the default; the two must agree."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("slipway_run", config.ROOT / "scripts/run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    assert run.DEFAULT_WEB_THREADS == config.DEFAULT_WEB_THREADS
    assert config.DEFAULT_WEB_PAGE_THREADS < config.DEFAULT_WEB_THREADS
    assert run.web_layout(99)[-2:] == ["--threads", "99"]


def test_database_public_ports_are_none_by_default_and_read_as_ranges(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIPWAY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SLIPWAY_DATABASE_PUBLIC_PORTS", raising=False)
    assert config.load()["DATABASE_PUBLIC_PORTS"] == ()
    monkeypatch.setenv("SLIPWAY_DATABASE_PUBLIC_PORTS", " 15432-15434, 16379,15433 ")
    assert config.load()["DATABASE_PUBLIC_PORTS"] == (15432, 15433, 15434, 16379)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5432x", "is not a port or a range"),
        ("15439-15432", "the lower first"),
        ("0", "from 1 to 65535"),
        ("70000", "from 1 to 65535"),
        ("1000-2000", "more than 100 ports"),
        ("8080", "which Traefik already uses"),
    ],
)
def test_bad_database_public_ports_stop_the_start_with_the_reason(
    tmp_path, monkeypatch, text, message
):
    monkeypatch.setenv("SLIPWAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SLIPWAY_HTTP_PORT", "8080")
    monkeypatch.setenv("SLIPWAY_DATABASE_PUBLIC_PORTS", text)
    with pytest.raises(config.ConfigError, match=message):
        config.load()
