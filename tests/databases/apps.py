"""Test apps that use a linked database: a busybox httpd CGI on the client image
(``slipway-test/dbclient``, built by scripts/db-images.sh), which connects with the
engine's own client (psql, mariadb, redis-cli) using only the variables a link puts
into the app's environment.

Every app answers on ``port`` (default 8000):

- ``GET /`` 200 ``ok <engine>`` without touching the database (a health check);
- ``GET /write?v=X`` stores X (letters, digits, ``.``, ``_``, ``-``; the rest is
  dropped) as a row (PostgreSQL, MariaDB: table ``items``) or list element (Redis:
  key ``items``), 200 ``wrote X``;
- ``GET /read`` 200 with every stored value, one a line, in the order written;
- a failing client: 500 with what the client said.

busybox httpd runs a CGI for a path only under /cgi-bin/; the others are folders
without an index.html, which it answers with ``/cgi-bin/index.cgi``. ``/write`` and
``/read`` (no slash) are first redirected (302) to ``/write/`` and ``/read/`` with the
query kept: a client that follows redirects (``requests``) sees one 200.

Connection settings, first found wins:

- postgres: ``$url_var`` (default ``DATABASE_URL``, handed to psql as it is), else
  libpq's own ``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD``/``PGDATABASE``;
- mariadb: ``$url_var`` (``mysql://`` or ``mariadb://user:password@host:port/db``,
  percent-encoding decoded), else ``MYSQL_HOST``/``MYSQL_PORT``/``MYSQL_USER``/
  ``MYSQL_PASSWORD``/``MYSQL_DATABASE``; the password reaches the client in
  ``MYSQL_PWD``, never its argv;
- redis: ``$url_var`` (default ``REDIS_URL``), else ``DATABASE_URL``, handed to
  ``redis-cli -u``; else ``REDIS_HOST``/``REDIS_PORT``/``REDIS_PASSWORD``.
"""

from __future__ import annotations

CLIENT_IMAGE = "slipway-test/dbclient:latest"
ENGINES = ("postgres", "mariadb", "redis")
DEFAULT_URL_VAR = {"postgres": "DATABASE_URL", "mariadb": "DATABASE_URL", "redis": "REDIS_URL"}

# The part every engine shares: parse the request, dispatch, answer.
_CGI_HEAD = r"""#!/bin/sh
# A test app on a linked %(engine)s database (tests/databases/apps.py).
answer() { # answer STATUS BODY
    printf 'Status: %%s\r\nContent-Type: text/plain\r\n\r\n%%s\n' "$1" "$2"
    exit 0
}
urldecode() { # percent-decoding that leaves a literal + alone
    busybox httpd -d "$(printf '%%s' "$1" | sed 's/+/%%2B/g')"
}
path=${REQUEST_URI%%%%\?*}
value=
case "&$QUERY_STRING" in *'&v='*)
    value=${QUERY_STRING#*v=}
    value=$(printf '%%s' "${value%%%%&*}" | tr -cd 'A-Za-z0-9._-') ;;
esac
"""

_CGI_TAIL = r"""
case $path in
/) answer 200 "ok %(engine)s" ;;
/write | /write/)
    [ -n "$value" ] || answer 400 "v is missing"
    if out=$(write "$value" 2>&1); then answer 200 "wrote $value"; fi
    answer 500 "$out" ;;
/read | /read/)
    if out=$(read_all 2>&1); then answer 200 "$out"; fi
    answer 500 "$out" ;;
*) answer 404 "no such page: $path" ;;
esac
"""

_POSTGRES = r"""
pg() { # psql on the linked database; a value goes in as a psql variable, never as SQL
    psql ${%(url_var)s:+"$%(url_var)s"} -X -q -tA -v ON_ERROR_STOP=1 "$@"
}
TABLE="SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, v text NOT NULL);"
write() {
    printf '%%s\n' "$TABLE" "INSERT INTO items (v) VALUES (:'v');" | pg -v v="$1"
}
read_all() {
    printf '%%s\n' "$TABLE" "SELECT v FROM items ORDER BY id;" | pg
}
"""

_MARIADB = r"""
if [ -n "$%(url_var)s" ]; then
    rest=${%(url_var)s#*://}
    creds=${rest%%%%@*}
    rest=${rest#*@}
    hostport=${rest%%%%/*}
    db=${rest#"$hostport"}
    db=${db#/}
    db=${db%%%%\?*}
    user=$(urldecode "${creds%%%%:*}")
    MYSQL_PWD=$(urldecode "${creds#*:}")
    host=${hostport%%%%:*}
    port=${hostport#"$host"}
    port=${port#:}
    db=$(urldecode "$db")
else
    host=$MYSQL_HOST port=$MYSQL_PORT user=$MYSQL_USER db=$MYSQL_DATABASE
    MYSQL_PWD=$MYSQL_PASSWORD
fi
export MYSQL_PWD
my() {
    mariadb --connect-timeout=5 -h "$host" -P "${port:-3306}" -u "$user" -N -B "$db" "$@"
}
TABLE="CREATE TABLE IF NOT EXISTS items (id INT AUTO_INCREMENT PRIMARY KEY,
    v VARCHAR(255) NOT NULL);"
write() { # the value is letters, digits and . _ - only: safe between quotes
    my -e "$TABLE INSERT INTO items (v) VALUES ('$1');"
}
read_all() {
    my -e "$TABLE SELECT v FROM items ORDER BY id;"
}
"""

_REDIS = r"""
url=${%(url_var)s:-$DATABASE_URL}
# redis-cli 7.0 sends an empty user name as one: redis://:pw@ means the default user
url=$(printf '%%s' "$url" | sed 's|^\(rediss*://\):|\1default:|')
rc() {
    if [ -n "$url" ]; then
        redis-cli --no-auth-warning -u "$url" "$@"
    else
        REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h "$REDIS_HOST" -p "${REDIS_PORT:-6379}" "$@"
    fi
}
# redis-cli may exit 0 on an error reply: what it said is checked too.
write() {
    out=$(rc RPUSH items "$1") || { echo "$out"; return 1; }
    case $out in '' | *[!0-9]*) echo "$out"; return 1 ;; esac
}
read_all() {
    out=$(rc LRANGE items 0 -1) || { echo "$out"; return 1; }
    case $out in *ERR* | *NOAUTH* | *WRONGPASS* | *"Could not connect"*)
        echo "$out"; return 1 ;;
    esac
    printf '%%s\n' "$out"
}
"""

_BODIES = {"postgres": _POSTGRES, "mariadb": _MARIADB, "redis": _REDIS}


def app_files(engine: str, *, url_var: str | None = None, port: int = 8000) -> dict[str, str]:
    """The files of a test app on a linked ``engine`` database (``postgres``, ``mariadb``
    or ``redis``), as ``{path: content}`` for a test repository's commit; ``url_var``
    names the variable holding the connection URL (default: DATABASE_URL, REDIS_URL
    for Redis)."""
    if engine not in _BODIES:
        raise ValueError(f"no test app for {engine!r}")
    fields = {"engine": engine, "url_var": url_var or DEFAULT_URL_VAR[engine]}
    cgi = (_CGI_HEAD + _BODIES[engine] + _CGI_TAIL) % fields
    return {
        "Dockerfile": (
            f"FROM {CLIENT_IMAGE}\n"
            "COPY www /www\n"
            "RUN chmod 755 /www/cgi-bin/index.cgi\n"
            f"EXPOSE {port}\n"
            f'CMD ["busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"]\n'
        ),
        "www/cgi-bin/index.cgi": cgi,
        # Folders without an index.html: busybox httpd answers them with index.cgi.
        "www/write/.keep": "",
        "www/read/.keep": "",
    }
