"""Every user-supplied name, ref, path, URL and domain is checked here.

These are allow-lists, not deny-lists: a value passes only if every character
is one we expect. Nothing that starts with ``-`` passes, so no value can be read
as an option by git, docker or pg_dump, even before ``--`` guards the argv.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, urlsplit


class InvalidValue(ValueError):
    """The message is written for the person who typed the value."""


SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BRANCH_CHARS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/+@=,#-]*$")
PATH_CHARS_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9._/-]*$")
HOST_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
REPO_PATH_RE = re.compile(r"^[A-Za-z0-9._~/+-]+$")
SSH_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SCP_LIKE_RE = re.compile(r"^(?P<user>[^@/:]+)@(?P<host>[^:/]+):(?P<path>[^:]+)$")
IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?)/)?"
    r"(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)
HEALTH_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/?=&%+:-]*$")


def slug(value: str, what: str = "Name") -> str:
    """App and project names: ``^[a-z][a-z0-9-]{1,62}$``, usable as a DNS label."""
    if not SLUG_RE.fullmatch(value or ""):
        raise InvalidValue(
            f"{what} must be 2–63 characters: lowercase letters, digits and '-', "
            "starting with a letter."
        )
    if value.endswith("-"):
        raise InvalidValue(f"{what} cannot end with '-'.")
    return value


def env_key(value: str) -> str:
    if not ENV_KEY_RE.fullmatch(value or "") or len(value) > 255:
        raise InvalidValue(
            "Use letters, digits and '_' only, not starting with a digit (e.g. DATABASE_URL)."
        )
    return value


def env_value(value: str | None) -> str:
    value = value or ""
    if "\x00" in value:
        raise InvalidValue("Values cannot contain NUL characters.")
    if len(value.encode()) > 32 * 1024:
        raise InvalidValue("Values are limited to 32 KiB.")
    return value


def branch(value: str) -> str:
    """A branch name as ``git check-ref-format --branch`` accepts it, and stricter."""
    if not value:
        raise InvalidValue("Enter a branch name.")
    if value.startswith("-"):
        raise InvalidValue("A branch name cannot start with '-'.")
    if len(value) > 255 or not BRANCH_CHARS_RE.fullmatch(value):
        raise InvalidValue("A branch name may use letters, digits and . _ / + @ = , # - only.")
    parts = value.split("/")
    if (
        ".." in value
        or "@{" in value
        or value == "@"
        or value.endswith((".", "/", ".lock"))
        or any(p == "" or p.startswith(".") or p.endswith(".lock") for p in parts)
    ):
        raise InvalidValue(f"{value!r} is not a valid git branch name.")
    return value


def relative_path(value: str, what: str = "Path") -> str:
    """A path inside the repository: relative, no ``..``, no leading ``-`` or ``/``."""
    if not value:
        raise InvalidValue(f"{what} cannot be empty ('.' is the repository root).")
    if value.startswith("-") or value.startswith("/"):
        raise InvalidValue(f"{what} must be relative to the repository root.")
    if len(value) > 255 or not PATH_CHARS_RE.fullmatch(value):
        raise InvalidValue(f"{what} may use letters, digits and . _ / - only.")
    if any(part == ".." for part in value.split("/")):
        raise InvalidValue(f"{what} cannot leave the repository ('..').")
    return value


def hostname(value: str, what: str = "Host") -> str:
    """An RFC 1123 host name (lowercase, dot-separated labels of 1–63 characters)."""
    host = (value or "").rstrip(".")
    if not host or len(host) > 253:
        raise InvalidValue(f"{what} must be a host name such as app.example.com.")
    labels = host.split(".")
    if not all(HOST_LABEL_RE.fullmatch(label) for label in labels):
        raise InvalidValue(f"{what} must be a host name: lowercase letters, digits, '-' and dots.")
    return host


def _host_or_ip(host: str) -> str:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        return hostname(host.lower(), "The repository host")


def is_internal_address(host: str) -> bool:
    """Loopback, private, link-local and similar ranges: never a git or S3 target by default."""
    if host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = _legacy_ipv4(host)
        if ip is None:
            return False
    # An IPv6 address that embeds an IPv4 one is internal if either is (Teredo is never global).
    return any(not a.is_global or a.is_multicast for a in (ip, embedded_ipv4(ip)) if a)


NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, which is where packets to it end up.

    IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 (``64:ff9b::/96``
    and the local-use ``64:ff9b:1::/48``, RFC 6052/8215), 6to4 ``2002:AABB:CCDD::`` and the
    Teredo client: ``[::127.0.0.1]`` is loopback however it is spelt. None for other
    addresses (and ``::``/``::1``, which are classified as themselves).
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    ip = ipaddress.IPv6Address(int(ip))  # drop a %scope, which the properties ignore anyway
    raw = ip.packed
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d (deprecated, still routed by some)
        return ipaddress.IPv4Address(raw[12:])
    if ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(raw[12:])
    if ip in NAT64_LOCAL:  # a /48 prefix: the IPv4 address is split around the "u" octet
        return ipaddress.IPv4Address(raw[6:8] + raw[9:11])
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


ALLOW_SETTING = "SLIPWAY_OUTBOUND_ALLOWED_HOSTS"


def internal_refused(host: str, resolves: bool = False) -> str:
    """Why ``host`` is refused, and what the server's operator can do about it."""
    what = "resolves to an internal address" if resolves else "is an internal address"
    return (
        f"{host} {what}; an admin must allow-list it: add {host} to {ALLOW_SETTING} "
        "(comma-separated) in Slipway's environment and restart Slipway."
    )


def git_url(value: str, allowed_hosts: tuple[str, ...] = ()) -> str:
    """``https://`` and ``ssh://`` URLs and ``user@host:path``; nothing else.

    ``ext::``, ``file://``, local paths and option-looking values are refused, as
    are credentials in the URL (they would be stored in clear). Hosts that are
    internal addresses are refused unless an admin allow-listed them; an
    allow-listed host may also use plain ``http://``.
    """
    value = value or ""
    if not value or value.startswith("-") or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidValue("Enter a repository URL such as https://github.com/owner/repo.git.")
    if len(value) > 500:
        raise InvalidValue("The repository URL is too long.")
    scp = SCP_LIKE_RE.fullmatch(value)
    if "://" not in value and scp:
        user, host, path = scp["user"], scp["host"], scp["path"]
        if not SSH_USER_RE.fullmatch(user) or path.startswith("-"):
            raise InvalidValue("That SSH address is not valid.")
    else:
        parts = urlsplit(value)
        plain_http_allowed = parts.scheme == "http" and (parts.hostname or "") in allowed_hosts
        if parts.scheme not in ("https", "ssh") and not plain_http_allowed:
            raise InvalidValue(
                "Only https:// and ssh:// repository URLs are accepted (plain http:// only "
                f"for a host listed in {ALLOW_SETTING})."
            )
        if parts.password is not None or (parts.scheme != "ssh" and parts.username):
            raise InvalidValue("Do not put credentials in the URL.")
        if parts.username and not SSH_USER_RE.fullmatch(parts.username):
            raise InvalidValue("That SSH user name is not valid.")
        host, path = parts.hostname or "", parts.path.lstrip("/")
        if parts.query or parts.fragment:
            raise InvalidValue("The repository URL cannot have a query or fragment.")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise InvalidValue("The port in the URL is not valid.") from exc
    host = _host_or_ip(host)
    if not path or not REPO_PATH_RE.fullmatch(path) or ".." in path.split("/"):
        raise InvalidValue("The repository path is not valid.")
    if is_internal_address(host) and host not in allowed_hosts:
        raise InvalidValue(internal_refused(host))
    return value


IMAGE_ID_RE = re.compile(r"^(?:sha256:)?[a-f0-9]{12,64}$")
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
# The repository namespace of the images Slipway builds (slipway/<installation>/app-<id>).
OWN_NAMESPACE = "slipway"


def image(value: str) -> str:
    """A Docker image reference such as ``nginx:1.27`` or ``ghcr.io/o/app@sha256:…``.

    Not an image id (the engine resolves an id prefix to any local image) and not a
    name in Slipway's own namespace: those are other apps' builds. The deploy checks
    the image's labels too (``runtime.images.check_not_a_build``)."""
    if not value or value.startswith("-") or len(value) > 255 or not IMAGE_RE.fullmatch(value):
        raise InvalidValue("Enter an image reference such as nginx:1.27 or ghcr.io/owner/app:tag.")
    if IMAGE_ID_RE.fullmatch(value):
        raise InvalidValue("Enter an image name such as nginx:1.27, not an image id.")
    if _image_namespace(value) == OWN_NAMESPACE:
        raise InvalidValue(
            "Images named slipway/… are the ones Slipway builds for git apps; "
            "an image app cannot run them. Push the image to a registry under another name."
        )
    return value


def _image_namespace(ref: str) -> str:
    """The first path component after the registry, as the engine parses a reference
    (a first component is a registry only with a '.' or ':' in it, or 'localhost')."""
    parts = ref.split("@")[0].split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if parts[0] not in DOCKER_HUB:
            return ""  # another registry's namespaces are not Slipway's
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "library":
        return ""
    return parts[0].split(":")[0] if len(parts) > 1 else ""


def health_path(value: str) -> str:
    if not value or len(value) > 255 or not HEALTH_PATH_RE.fullmatch(value):
        raise InvalidValue("The health-check path must start with '/' and contain no spaces.")
    path = value.split("?", 1)[0]
    if path.startswith("//") or any(seg in ("..", ".") for seg in path.split("/")):
        raise InvalidValue("The health-check path must be a plain path on the app, like /healthz.")
    return value


def plain_text(value: str | None) -> str:
    """Free text (names, descriptions): anything printable, but never a NUL byte."""
    value = value or ""
    if "\x00" in value:
        raise InvalidValue("This text cannot contain NUL characters.")
    return value


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Numeric IPv4 forms that C resolvers accept: 2130706433, 0177.0.0.1, 127.1, 0x7f.1."""
    import socket

    if not re.fullmatch(r"[0-9a-fA-FxX.]+", host) or not any(c.isdigit() for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def resolves_internally(host: str) -> bool:
    """Whether any address ``host`` resolves to is internal (checked again at use).

    A name that does not resolve is not internal: the clone will fail on its own.
    """
    import socket

    if is_internal_address(host):
        return True
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None)
    except (socket.gaierror, UnicodeError):
        return False
    return any(is_internal_address(info[4][0]) for info in infos)


def git_host(url: str) -> str:
    """The host part of a URL that :func:`git_url` accepted."""
    scp = SCP_LIKE_RE.fullmatch(url)
    if "://" not in url and scp:
        return scp["host"]
    return urlsplit(url).hostname or ""


# ---- backups --------------------------------------------------------------

S3_PREFIX_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
DATABASE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DB_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


def s3_prefix(value: str | None) -> str:
    """A key prefix inside a bucket: ``team-a/nightly``; empty means the bucket root."""
    value = (value or "").strip().rstrip("/")
    if not value:
        return ""
    if len(value) > 200 or not S3_PREFIX_RE.fullmatch(value):
        raise InvalidValue(
            "A prefix may use letters, digits and . _ / - only, not starting with -."
        )
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise InvalidValue("A prefix cannot contain '..', '.' or empty parts ('//').")
    return value


S3_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def s3_region(value: str | None) -> str:
    """An S3 region as AWS names them (``us-east-1``, ``eu-central-1``) or as a self-hosted
    server is configured (``garage``, ``default``): 1–32 lowercase letters, digits, - and _.

    It goes into every request's signature scope, so nothing else can be right anyway."""
    value = (value or "").strip()
    if not S3_REGION_RE.fullmatch(value):
        raise InvalidValue(
            "A region is 1–32 lowercase letters, digits, '-' and '_', such as us-east-1 "
            "(ask your S3 provider; MinIO and most self-hosted servers use us-east-1)."
        )
    return value


def bucket(value: str) -> str:
    if not BUCKET_RE.fullmatch(value or "") or ".." in value:
        raise InvalidValue("A bucket name is 3–63 lowercase letters, digits, '.' and '-'.")
    return value


def _checked_host(host: str, allowed_hosts: tuple[str, ...], what: str) -> str:
    if not host:
        raise InvalidValue(f"The {what} needs a host.")
    host = _host_or_ip(host)
    if host not in allowed_hosts and is_internal_address(host):
        raise InvalidValue(internal_refused(host))
    return host


def public_url(value: str, allowed_hosts: tuple[str, ...] = (), what: str = "URL") -> str:
    """An https:// URL to a public host (S3 endpoints, notification webhooks).

    Plain http:// and internal hosts only when an admin allow-listed the host.
    """
    value = (value or "").strip()
    if not value or len(value) > 500 or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidValue(f"Enter the {what} such as https://s3.example.com.")
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" and not (parts.scheme == "http" and host in allowed_hosts):
        raise InvalidValue(
            f"The {what} must start with https:// (plain http:// only for a host listed in "
            f"{ALLOW_SETTING})."
        )
    if parts.username or parts.password:
        raise InvalidValue("Do not put credentials in the URL.")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidValue("The port in the URL is not valid.") from exc
    _checked_host(host, allowed_hosts, what)
    return value


def url_host(value: str) -> str:
    return (urlsplit(value).hostname or "").lower()


def database_name(value: str) -> str:
    if not DATABASE_NAME_RE.fullmatch(value or ""):
        raise InvalidValue(
            "A database name is 1–63 lowercase letters, digits and '_', not starting with a digit."
        )
    return value


def database_url(value: str, allowed_hosts: tuple[str, ...] = ()) -> tuple[str, str | None]:
    """``postgresql://user:password@host:port/db`` → (the URL without its password, password).

    The password is returned apart so that it can be encrypted; the stored URL never has it.
    User and password are percent-decoded here (``urlsplit`` leaves ``p%40ss`` as it is):
    what is stored and handed to ``PGPASSWORD`` is the password itself.
    """
    value = (value or "").strip()
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidValue("Enter a URL such as postgresql://user:password@db.example.com/app.")
    if parts.query or parts.fragment:
        raise InvalidValue("The database URL cannot have options (?…).")
    user = unquote(parts.username or "")
    if not user or not DB_USER_RE.fullmatch(user):
        raise InvalidValue("The database URL needs a user name (letters, digits, _ . -).")
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise InvalidValue("The port in the URL is not valid.") from exc
    host = _checked_host((parts.hostname or "").lower(), allowed_hosts, "database URL")
    name = database_name(parts.path.lstrip("/"))
    password = unquote(parts.password) if parts.password is not None else None
    # The user name passed DB_USER_RE, which has no character that needs quoting.
    return f"postgresql://{user}@{host}:{port}/{name}", password


def cron(value: str) -> str:
    """Five cron fields (minute hour day month weekday), as APScheduler reads them."""
    from apscheduler.triggers.cron import CronTrigger

    value = " ".join((value or "").split())
    if len(value.split(" ")) != 5 or len(value) > 100:
        raise InvalidValue("Enter five cron fields, e.g. '0 2 * * *' (02:00 every night).")
    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise InvalidValue(f"That cron expression is not valid: {exc}") from None
    return value


# ---- git integration ------------------------------------------------------

WATCH_PATH_RE = re.compile(r"^[A-Za-z0-9_.*?][A-Za-z0-9._/*?-]*$")
TAG_PATTERN_RE = re.compile(r"^[A-Za-z0-9_*?][A-Za-z0-9._/*?+-]*$")
SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
MAX_WATCH_PATHS = 50
MAX_WATCH_PATH_LENGTH = 200


def _quoted_start(text: str, keep: int = 40) -> str:
    """The start of a refused value for a message: a long one is never echoed whole."""
    return repr(text if len(text) <= keep else text[:keep] + "…")


def watch_paths(text: str | None) -> list[str]:
    """One glob per line (``src/**``, ``Dockerfile``, ``*.py``); empty means every file.

    Patterns are relative to the repository root: no leading ``/`` or ``-``, no ``..``.
    """
    patterns = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(patterns) > MAX_WATCH_PATHS:
        raise InvalidValue(
            f"At most {MAX_WATCH_PATHS} watch paths, one per line ({len(patterns):,} given)."
        )
    for pattern in patterns:
        if len(pattern) > MAX_WATCH_PATH_LENGTH:
            raise InvalidValue(
                f"{_quoted_start(pattern)}: a watch path is limited to "
                f"{MAX_WATCH_PATH_LENGTH} characters (this one has {len(pattern):,})."
            )
        if not WATCH_PATH_RE.fullmatch(pattern):
            raise InvalidValue(
                f"{_quoted_start(pattern)}: use letters, digits, . _ / - and the wildcards "
                "* ** ? only, relative to the repository root."
            )
        if any(part == ".." for part in pattern.split("/")):
            raise InvalidValue(f"{_quoted_start(pattern)} cannot leave the repository ('..').")
    return patterns


def tag_pattern(value: str | None) -> str | None:
    """A glob for tag names that deploy (``v*``); empty means tags never deploy."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > 255 or not TAG_PATTERN_RE.fullmatch(value) or ".." in value:
        raise InvalidValue("Use a tag pattern such as v* or release-*: no spaces, no '..'.")
    return value


def commit_sha(value: str | None) -> str:
    """A full hexadecimal commit id (SHA-1 or SHA-256)."""
    if not SHA_RE.fullmatch(value or ""):
        raise InvalidValue("Not a full commit id.")
    return value or ""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` spans directories, ``*`` and ``?`` stay within one; a trailing ``/``
    means everything below that directory."""
    if pattern.endswith("/"):
        pattern += "**"
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def token_user(value: str | None) -> str:
    """The user name sent with an HTTPS token (GitLab wants ``oauth2`` or any name)."""
    value = (value or "").strip()
    if value and not SSH_USER_RE.fullmatch(value):
        raise InvalidValue("Use letters, digits, '.', '_' and '-' only.")
    return value[:100]


# ---- app domains ----------------------------------------------------------

PREFIX_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._~-]+$")
MAX_PATH_PREFIX = 255


def domain_host(value: str | None) -> str:
    """A host name given to an app, in punycode: ``Bücher.Example.`` → ``xn--bcher-kva.example``.

    Trimmed, lower-cased, a trailing dot dropped, an international name converted
    (IDNA, UTS 46); then :func:`hostname` and more: at least two labels, no IP literal,
    no wildcard. What comes back is all a Traefik rule or a certificate ever sees."""
    import idna

    host = (value or "").strip().lower()
    host = host[:-1] if host.endswith(".") else host
    if not host:
        raise InvalidValue("Enter a host name such as shop.example.com.")
    if len(host) > 253:
        raise InvalidValue(f"A host name is at most 253 characters (this one has {len(host):,}).")
    if "*" in host:
        raise InvalidValue("Wildcards are not accepted: enter one host name (shop.example.com).")
    if "/" in host or ":" in host or "[" in host:
        raise InvalidValue("Enter the host name alone, without a scheme, port or path.")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise InvalidValue("This is not a valid international domain name.") from None
    if not re.fullmatch(r"[a-z0-9.-]+", host):
        raise InvalidValue(
            "A host name may use letters, digits, '-' and dots only "
            "(no spaces, underscores, quotes or other signs)."
        )
    labels = host.split(".")
    if any(not label for label in labels):
        raise InvalidValue("A host name cannot have an empty label ('..' or a leading dot).")
    if any(len(label) > 63 for label in labels):
        raise InvalidValue("Each part of a host name between dots is at most 63 characters.")
    if len(host) > 253:
        raise InvalidValue("A host name is at most 253 characters once converted to punycode.")
    if labels[-1].isdigit() or _legacy_ipv4(host) is not None:
        raise InvalidValue("Enter a host name, not an IP address.")
    if len(labels) < 2:
        raise InvalidValue("Enter a full host name with a domain, such as shop.example.com.")
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        raise InvalidValue("A part of a host name between dots cannot start or end with '-'.")
    host = hostname(host, "The host")
    if domain_display(host) is None:
        raise InvalidValue("This is not a valid international domain name (a bad xn-- label).")
    return host


def domain_display(host: str) -> str | None:
    """The Unicode form of a punycode host name, or None when it does not decode."""
    import idna

    if "xn--" not in host:
        return host
    try:
        return idna.decode(host)
    except (idna.IDNAError, UnicodeError):
        return None


def www_twin(host: str) -> str:
    """``www.<host>``, or for a host that starts with ``www.`` its apex."""
    return host[4:] if host.startswith("www.") else f"www.{host}"


def path_prefix(value: str | None) -> str:
    """``/`` or ``/seg/seg`` of ``[A-Za-z0-9._~-]`` segments, a trailing ``/`` dropped.

    No ``..``, no empty segment, no percent-encoding (``%2f`` would be a separator to
    some backends and not to others)."""
    value = (value or "").strip()
    if value in ("", "/"):
        return "/"
    if len(value) > MAX_PATH_PREFIX:
        raise InvalidValue(f"A path prefix is at most {MAX_PATH_PREFIX} characters.")
    if not value.startswith("/"):
        raise InvalidValue("A path prefix starts with '/', such as /api.")
    if value.endswith("/"):
        value = value[:-1]
    segments = value[1:].split("/")
    if any(not segment for segment in segments):
        raise InvalidValue("A path prefix cannot contain '//'.")
    if ".." in value or any(segment == "." for segment in segments):
        raise InvalidValue("A path prefix cannot contain '..' or '.' segments.")
    if not all(PREFIX_SEGMENT_RE.fullmatch(segment) for segment in segments):
        raise InvalidValue(
            "A path prefix may use letters, digits and . _ ~ - between slashes "
            "(no spaces, no %-encoding)."
        )
    return value
