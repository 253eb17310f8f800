"""Settings, read only here, from ``SLIPWAY_*`` environment variables.

The embedded default needs nothing set: SQLite and the secrets live in the data
directory, Redis is the embedded server that ``make run`` starts on a unix socket.
With ``SLIPWAY_ENV=production`` nothing secret is generated: a missing secret key
or encryption key stops start-up.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"SLIPWAY_{name}")
    return value if value not in (None, "") else default


def _hosts(name: str) -> tuple[str, ...]:
    return tuple(h.strip() for h in (_env(name, "") or "").split(",") if h.strip())


# Traefik listens on every port of SLIPWAY_DATABASE_PUBLIC_PORTS: keep the list short.
MAX_PUBLIC_PORTS = 100


def public_ports(text: str) -> tuple[int, ...]:
    """``15432-15439,16379`` → the ports, in order; a clear error for anything else."""
    found: dict[int, None] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not (low.strip().isdigit() and (not dash or high.strip().isdigit())):
            raise ConfigError(
                f"SLIPWAY_DATABASE_PUBLIC_PORTS: {part!r} is not a port or a range such as "
                "15432-15439"
            )
        first, last = int(low), int(high) if dash else int(low)
        if not 1 <= first <= last <= 65535:
            raise ConfigError(
                f"SLIPWAY_DATABASE_PUBLIC_PORTS: {part!r} must be ports from 1 to 65535, "
                "the lower first"
            )
        found.update(dict.fromkeys(range(first, last + 1)))
        if len(found) > MAX_PUBLIC_PORTS:
            raise ConfigError(
                f"SLIPWAY_DATABASE_PUBLIC_PORTS names more than {MAX_PUBLIC_PORTS} ports "
                "(Traefik listens on each one)"
            )
    return tuple(found)


# Must match scripts/run.py's DEFAULT_WEB_THREADS (standard library only, so it
# cannot import this; tests/test_config.py checks the two agree).
DEFAULT_WEB_THREADS = 256
DEFAULT_WEB_PAGE_THREADS = 32


def _int_setting(name: str, default: int) -> int:
    text = _env(name, str(default))
    if not text.isdigit():
        raise ConfigError(f"SLIPWAY_{name}={text!r} must be a whole number")
    return int(text)


def web_upstream(listen: str) -> str:
    """The URL Traefik reaches the web server at, from ``SLIPWAY_LISTEN`` (host:port): a
    wildcard address is reached on loopback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "http://" + netloc  # Slipway's own server: not a container address


def live_views_per_worker(threads: int, page_threads: int) -> int:
    """Live views one web worker admits: its threads less those kept for pages."""
    if not 4 <= threads <= 1000:
        raise ConfigError(f"SLIPWAY_WEB_THREADS={threads} must be a number from 4 to 1000")
    if not 1 <= page_threads < threads:
        raise ConfigError(
            f"SLIPWAY_WEB_PAGE_THREADS={page_threads} must be at least 1 and less than "
            f"SLIPWAY_WEB_THREADS ({threads}): the threads kept for pages come out of those"
        )
    return threads - page_threads


# Earlier versions had one allow-list per use; they are read as aliases of
# OUTBOUND_ALLOWED_HOSTS, in the environment and in test overrides alike.
OUTBOUND_ALIASES = ("BACKUP_ALLOWED_HOSTS", "GIT_ALLOWED_HOSTS")


def _read_or_create(path: Path, make: callable, production: bool, setting: str) -> str:
    """Read a generated secret from the data directory, creating it (mode 0600) once."""
    if path.exists():
        return path.read_text().strip()
    if production:
        raise ConfigError(
            f"SLIPWAY_{setting} is not set and SLIPWAY_ENV=production: refusing to start "
            f"without it. Set SLIPWAY_{setting}, or place it in {path} (mode 0600)."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # O_EXCL: two processes starting together must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _new_encryption_keys() -> str:
    return "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_encryption_keys(text: str) -> dict[str, bytes]:
    """``"k2:<b64>,k1:<b64>"`` → ordered {key id: 32-byte key}; the first is current."""
    keys: dict[str, bytes] = {}
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key_id, sep, b64 = part.partition(":")
        if not sep or not key_id.isalnum():
            raise ConfigError("SLIPWAY_ENCRYPTION_KEYS must look like 'k1:<base64 of 32 bytes>'")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError as exc:
            raise ConfigError(f"encryption key {key_id!r} is not valid base64") from exc
        if len(raw) != 32:
            raise ConfigError(f"encryption key {key_id!r} must be 32 bytes (AES-256)")
        keys[key_id] = raw
    if not keys:
        raise ConfigError("SLIPWAY_ENCRYPTION_KEYS holds no key")
    return keys


def limiter_storage_uri(redis_url: str) -> str:
    """Flask-Limiter names a unix-socket Redis ``redis+unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the Flask config dict from the environment, then ``overrides`` (tests)."""
    overrides = dict(overrides or {})
    env = overrides.get("SLIPWAY_ENV") or _env("ENV", "development")
    production = env == "production"
    data_dir = Path(overrides.get("DATA_DIR") or _env("DATA_DIR", str(ROOT / "instance")))
    public_url = overrides.get("PUBLIC_URL") or _env("PUBLIC_URL", "")

    secret_key = overrides.get("SECRET_KEY") or _env("SECRET_KEY")
    if not secret_key:
        secret_key = _read_or_create(
            data_dir / "secret_key", lambda: secrets.token_hex(32), production, "SECRET_KEY"
        )
    enc_text = overrides.get("ENCRYPTION_KEYS_TEXT") or _env("ENCRYPTION_KEYS")
    if not enc_text:
        enc_text = _read_or_create(
            data_dir / "encryption_keys", _new_encryption_keys, production, "ENCRYPTION_KEYS"
        )

    redis_url = overrides.get("REDIS_URL") or _env("REDIS_URL", f"unix://{data_dir}/redis.sock")
    config: dict[str, Any] = {
        "SLIPWAY_ENV": env,
        "DATA_DIR": str(data_dir),
        "PUBLIC_URL": public_url,
        "SECRET_KEY": secret_key,
        "ENCRYPTION_KEYS": parse_encryption_keys(enc_text),
        "SQLALCHEMY_DATABASE_URI": _env("DATABASE_URL", f"sqlite:///{data_dir}/slipway.db"),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": redis_url,
        "BASE_DOMAIN": _env("BASE_DOMAIN", "localhost"),
        "DOCKER_HOST": _env(
            "DOCKER_HOST", os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        ),
        # A fixed API version saves a round trip per client; "auto" asks the engine.
        "DOCKER_API_VERSION": _env("DOCKER_API_VERSION", "1.41"),
        "TRUSTED_PROXIES": int(_env("TRUSTED_PROXIES", "0")),
        # Hosts an admin allows although they are internal addresses, for every
        # outbound use (git, S3 endpoints, databases, webhooks, SMTP); for these
        # hosts (only) plain http:// is accepted too, e.g. a git server on the LAN.
        "OUTBOUND_ALLOWED_HOSTS": _hosts("OUTBOUND_ALLOWED_HOSTS")
        + sum((_hosts(alias) for alias in OUTBOUND_ALIASES), ()),
        # Apps are served here through Traefik; only root may bind port 80.
        "HTTP_PORT": int(_env("HTTP_PORT", "80" if os.geteuid() == 0 else "8080")),
        "PROXY_API_PORT": int(_env("PROXY_API_PORT", "8099")),
        # HTTPS for app domains (and the dashboard's own host) on Traefik's websecure
        # entrypoint; only root may bind 443.
        "HTTPS_PORT": int(_env("HTTPS_PORT", "443" if os.geteuid() == 0 else "8443")),
        # Where Traefik reaches Slipway's own web server: the ACME HTTP-01 answers and
        # the preflight's self-probe (/.well-known/…), and the dashboard's own host.
        "WEB_UPSTREAM": _env("WEB_UPSTREAM", web_upstream(_env("LISTEN", "0.0.0.0:8000"))),
        # Certificates: the ACME directory orders go to, the account's contact, an extra
        # CA bundle to trust for the ACME server (a private CA; the tests' Pebble).
        "ACME_DIRECTORY": _env("ACME_DIRECTORY", "https://acme-v02.api.letsencrypt.org/directory"),
        "ACME_EMAIL": _env("ACME_EMAIL", ""),
        "ACME_CA_BUNDLE": _env("ACME_CA_BUNDLE", ""),
        # The preflight before an order: resolvers asked for a host's A/AAAA records
        # (ip or ip:port, comma-separated; empty = the system's) and this server's
        # public addresses (empty = detected).
        "DNS_RESOLVERS": _hosts("DNS_RESOLVERS"),
        "PUBLIC_IPS": _hosts("PUBLIC_IPS"),
        "PROXY_DIR": _env("PROXY_DIR", str(data_dir / "traefik")),
        "BUILDS_DIR": _env("BUILDS_DIR", str(data_dir / "builds")),
        "BUILD_MEMORY_MB": int(_env("BUILD_MEMORY_MB", "2048")),
        "BUILD_TIMEOUT_SECONDS": int(_env("BUILD_TIMEOUT_SECONDS", "1800")),
        # Builds (clone + docker build) of different apps that may run at once, over every
        # worker process on this Redis; deployments that need no build never wait for one.
        "BUILD_CONCURRENCY": _int_setting("BUILD_CONCURRENCY", 2),
        # Stored build log per deployment; output past it is counted, not stored.
        "BUILD_LOG_MAX_BYTES": int(_env("BUILD_LOG_MAX_BYTES", str(10 * 1024 * 1024))),
        "CLONE_TIMEOUT_SECONDS": int(_env("CLONE_TIMEOUT_SECONDS", "300")),
        "HEALTH_TIMEOUT_SECONDS": float(_env("HEALTH_TIMEOUT_SECONDS", "60")),
        # Traffic switches at the first 2xx of every new replica; for this long after
        # the switch the old version keeps running, and a new version that exits,
        # restarts or fails its health path is reverted at once. An app may set its own.
        "WATCH_SECONDS": float(_env("WATCH_SECONDS", "30")),
        "DRAIN_SECONDS": float(_env("DRAIN_SECONDS", "2")),
        "STOP_TIMEOUT_SECONDS": int(_env("STOP_TIMEOUT_SECONDS", "10")),
        "KEEP_IMAGES": int(_env("KEEP_IMAGES", "5")),
        # Managed databases (app.databases): the image each engine starts from (the
        # official images' names; any image keeping their environment contract works).
        "IMAGE_POSTGRES": _env("IMAGE_POSTGRES", "postgres:16"),
        "IMAGE_MARIADB": _env("IMAGE_MARIADB", "mariadb:11"),
        "IMAGE_REDIS": _env("IMAGE_REDIS", "redis:7"),
        # The host ports a database may be published on (none by default): Traefik
        # listens on each and routes one to a database whose public port it is, over TLS.
        "DATABASE_PUBLIC_PORTS": public_ports(_env("DATABASE_PUBLIC_PORTS", "") or ""),
        # How long a new database may take to accept its first connection.
        "DATABASE_READY_TIMEOUT_SECONDS": float(_env("DATABASE_READY_TIMEOUT_SECONDS", "120")),
        # A volume whose app, database or mount is deleted is kept this long first.
        "VOLUME_GRACE_DAYS": _int_setting("VOLUME_GRACE_DAYS", 7),
        # Whether this installation's worker may claim the engine's unlabelled Slipway
        # objects at start (app.runtime.installation); 0 for one that must never claim.
        "ADOPT_UNLABELLED": _env("ADOPT_UNLABELLED", "1") not in ("0", "false", "no"),
        # Backups: local copies live here.
        "BACKUPS_DIR": _env("BACKUPS_DIR", str(data_dir / "backups")),
        # Cron expressions of backup policies are read in this zone ("" = the server's).
        "TIMEZONE": _env("TIMEZONE", ""),
        "BACKUP_PART_MB": int(_env("BACKUP_PART_MB", "16")),  # 10,000 parts: 156 GiB
        "BACKUP_UPLOAD_THREADS": int(_env("BACKUP_UPLOAD_THREADS", "2")),
        "S3_RETRIES": int(_env("S3_RETRIES", "4")),
        "S3_RETRY_BASE_SECONDS": float(_env("S3_RETRY_BASE_SECONDS", "1")),
        "S3_TIMEOUT_SECONDS": float(_env("S3_TIMEOUT_SECONDS", "30")),
        # A backup whose heartbeat key is older than this is reaped as lost.
        "BACKUP_ALIVE_TTL": int(_env("BACKUP_ALIVE_TTL", "20")),
        "NOTIFY_RETRIES": int(_env("NOTIFY_RETRIES", "4")),
        "NOTIFY_RETRY_BASE_SECONDS": float(_env("NOTIFY_RETRY_BASE_SECONDS", "2")),
        # Per socket operation of a delivery attempt; the whole attempt gets 3 times this.
        "NOTIFY_TIMEOUT_SECONDS": float(_env("NOTIFY_TIMEOUT_SECONDS", "5")),
        # gunicorn gthread threads per web worker (scripts/run.py starts them with this
        # many) and how many of them are kept for pages: live views (websockets, one
        # thread each while open) may take only the rest, LIVE_VIEWS_PER_WORKER.
        "WEB_THREADS": _int_setting("WEB_THREADS", DEFAULT_WEB_THREADS),
        "WEB_PAGE_THREADS": _int_setting("WEB_PAGE_THREADS", DEFAULT_WEB_PAGE_THREADS),
        # Live tails (websockets). Each open socket holds one gunicorn thread.
        "WS_MAX_PER_USER": int(_env("WS_MAX_PER_USER", "8")),
        "WS_RECHECK_SECONDS": float(_env("WS_RECHECK_SECONDS", "5")),
        "SOCK_SERVER_OPTIONS": {"ping_interval": 25, "max_message_size": 4096},
        "LOG_TAIL_LINES": 200,
        "LIVE_FRAME_SECONDS": 0.1,
        "LIVE_LINES_PER_SECOND": int(_env("LIVE_LINES_PER_SECOND", "1000")),
        "LIVE_BURST_LINES": 600,
        "LIVE_BUFFER_LINES": 2000,
        # Failed logins: per client address (any account), per account from one address;
        # past the account-wide count an address that failed must wait between tries.
        "LOGIN_LIMIT_IP": _env("LOGIN_LIMIT_IP", "30 per minute"),
        "LOGIN_LIMIT_ACCOUNT_IP": _env("LOGIN_LIMIT_ACCOUNT_IP", "5 per minute;20 per hour"),
        "LOGIN_LIMIT_ACCOUNT": _env("LOGIN_LIMIT_ACCOUNT", "5 per minute;20 per hour"),
        "LOGIN_SLOW_SECONDS": int(_env("LOGIN_SLOW_SECONDS", "30")),
        # Wrong two-factor codes at login: per pending user and per client address;
        # wrong answers on the "ask again" page, per user.
        "TWO_FACTOR_LIMIT_USER": _env("TWO_FACTOR_LIMIT_USER", "5 per minute;20 per hour"),
        "TWO_FACTOR_LIMIT_IP": _env("TWO_FACTOR_LIMIT_IP", "10 per minute"),
        "REAUTH_LIMIT": _env("REAUTH_LIMIT", "5 per minute;20 per hour"),
        "WEBHOOK_REFUSAL_LIMIT": _env("WEBHOOK_REFUSAL_LIMIT", "20 per minute"),
        # Every request body is capped (forms are small); the webhook route raises its
        # own cap to the forges' 25 MiB for its request only.
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        # Mail from the installation itself (password reset links). Unset host = no mail.
        "SMTP_HOST": _env("SMTP_HOST", ""),
        "SMTP_PORT": int(_env("SMTP_PORT", "587")),
        "SMTP_TLS": _env("SMTP_TLS", "starttls"),
        "SMTP_USERNAME": _env("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": _env("SMTP_PASSWORD", ""),
        "SMTP_SENDER": _env("SMTP_SENDER", ""),
        "PASSWORD_RESET_LIMIT_IP": _env("PASSWORD_RESET_LIMIT_IP", "10 per hour"),
        "PASSWORD_RESET_LIMIT_ACCOUNT": _env("PASSWORD_RESET_LIMIT_ACCOUNT", "3 per hour"),
        # Team invitations (app.accounts.invitations): how long a link lasts, and how many
        # refused tokens (unknown, used, expired) one address may present.
        "INVITATION_TTL_HOURS": int(_env("INVITATION_TTL_HOURS", "72")),
        "INVITATION_LIMIT_IP": _env("INVITATION_LIMIT_IP", "20 per minute;100 per hour"),
        "SESSION_COOKIE_NAME": "slipway_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": public_url.startswith("https://"),
        "REMEMBER_COOKIE_DURATION": 0,
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": True,
        # CSRF is checked in the request guard, after authentication, so that an
        # anonymous POST is a 401/redirect like every other anonymous request.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "RATELIMIT_ENABLED": True,
        # /api/v1: requests per API key (RateLimit-* headers on every answer, 429 past it).
        "API_RATE_LIMIT": _env("API_RATE_LIMIT", "600 per minute"),
        # A deploy's ``?wait=`` long poll is capped at this many seconds.
        "API_WAIT_MAX_SECONDS": int(_env("API_WAIT_MAX_SECONDS", "600")),
        # Idempotency-Key answers are replayed for this long.
        "API_IDEMPOTENCY_SECONDS": int(_env("API_IDEMPOTENCY_SECONDS", str(24 * 3600))),
        # /metrics (Prometheus) answers only with this bearer token; unset = off (404).
        "METRICS_TOKEN": _env("METRICS_TOKEN", ""),
        # Audit rows of no team (installation-wide events) are kept this long; a team's
        # own rows as long as its setting says (``teams.audit_retention_days``).
        "AUDIT_RETENTION_DAYS": _int_setting("AUDIT_RETENTION_DAYS", 365),
    }
    config.update({k: v for k, v in overrides.items() if k != "ENCRYPTION_KEYS_TEXT"})
    outbound = dict.fromkeys(config["OUTBOUND_ALLOWED_HOSTS"])
    for alias in OUTBOUND_ALIASES:
        outbound.update(dict.fromkeys(overrides.get(alias, ())))
    config["OUTBOUND_ALLOWED_HOSTS"] = tuple(outbound)
    # The old keys stay readable, with the one list, for code not yet moved to it.
    for alias in OUTBOUND_ALIASES:
        config[alias] = config["OUTBOUND_ALLOWED_HOSTS"]
    config.setdefault(
        "LIVE_VIEWS_PER_WORKER",
        live_views_per_worker(config["WEB_THREADS"], config["WEB_PAGE_THREADS"]),
    )
    if config["BUILD_CONCURRENCY"] < 1:
        raise ConfigError("SLIPWAY_BUILD_CONCURRENCY must be at least 1: no build could run")
    if config["AUDIT_RETENTION_DAYS"] < 1:
        raise ConfigError("SLIPWAY_AUDIT_RETENTION_DAYS must be at least 1")
    busy = {config["HTTP_PORT"], config["HTTPS_PORT"], config["PROXY_API_PORT"]}
    if clash := sorted(busy.intersection(config["DATABASE_PUBLIC_PORTS"])):
        raise ConfigError(
            f"SLIPWAY_DATABASE_PUBLIC_PORTS includes {clash[0]}, which Traefik already uses "
            "for HTTP, HTTPS or its API"
        )
    if config["SMTP_TLS"] not in ("starttls", "ssl", "none"):
        raise ConfigError("SLIPWAY_SMTP_TLS must be starttls, ssl or none")
    config["RATELIMIT_STORAGE_URI"] = limiter_storage_uri(config["REDIS_URL"])
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql://"):
        # psycopg 3 is the driver we ship.
        config["SQLALCHEMY_DATABASE_URI"] = config["SQLALCHEMY_DATABASE_URI"].replace(
            "postgresql://", "postgresql+psycopg://", 1
        )
    return config
