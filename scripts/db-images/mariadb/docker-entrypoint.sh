#!/bin/bash
# The official mariadb image's entrypoint contract, for the test image:
# - MARIADB_ROOT_PASSWORD, or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD, or
#   MARIADB_RANDOM_ROOT_PASSWORD (printed as "GENERATED ROOT PASSWORD: ...");
#   MARIADB_ROOT_HOST (default %), MARIADB_DATABASE, MARIADB_USER and
#   MARIADB_PASSWORD (the user gets every privilege on the database, from '%');
#   each also as MYSQL_* and as VAR_FILE (the value read from a file);
# - on an empty /var/lib/mysql: mariadb-install-db, then the users and database
#   made by a server without networking on a socket of its own, so neither
#   `mariadb-admin ping` nor a client connects before the real server is up;
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run by it;
# - a data folder that holds a server is started as it is;
# - mariadbd runs as mysql in the foreground, as PID 1, on 0.0.0.0:3306.
# Not done: time-zone tables (no tzdata in the root), the healthcheck.sh user.
set -Eeo pipefail

DATADIR=/var/lib/mysql
INIT_SOCKET=/run/mysqld/init.sock

file_env() { # file_env VAR [DEFAULT]: VAR, or the content of the file VAR_FILE names
    local var=$1 file_var=${1}_FILE default=${2:-} value
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        echo >&2 "error: both $var and $file_var are set (but are exclusive)"
        exit 1
    fi
    value=$default
    if [ -n "${!var:-}" ]; then
        value=${!var}
    elif [ -n "${!file_var:-}" ]; then
        value=$(<"${!file_var}")
    fi
    export "$var=$value"
    unset "$file_var"
}

mariadb_env() { # MARIADB_X from itself, its _FILE, or MYSQL_X and its _FILE
    local name
    for name in ROOT_PASSWORD ALLOW_EMPTY_ROOT_PASSWORD RANDOM_ROOT_PASSWORD ROOT_HOST \
        DATABASE USER PASSWORD; do
        file_env "MYSQL_$name"
        file_env "MARIADB_$name" "$(printenv "MYSQL_$name" || true)"
    done
    : "${MARIADB_ROOT_HOST:=%}"
}

sql_string() { # sql_string VALUE: VALUE as a quoted SQL string literal
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\\\'}"
}

sql_name() { # sql_name VALUE: VALUE as a quoted identifier
    printf '`%s`' "${1//\`/\`\`}"
}

is_true() { case ${1:-} in '' | 0 | no | false) return 1 ;; *) return 0 ;; esac }

client() { # the client on the init server, as root (no password yet)
    mariadb --protocol=socket --socket="$INIT_SOCKET" -uroot --skip-ssl "$@"
}

setup_sql() { # the SQL that makes root, the database and the user
    local root_password=$MARIADB_ROOT_PASSWORD root_host
    if is_true "$MARIADB_RANDOM_ROOT_PASSWORD"; then
        root_password=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
        echo "GENERATED ROOT PASSWORD: $root_password" >&2
    fi
    root_host=$(sql_string "$MARIADB_ROOT_HOST")
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    echo "DELETE FROM mysql.global_priv WHERE User='' OR (User='root' AND Host NOT IN ('localhost'));"
    echo "FLUSH PRIVILEGES;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_password");"
    if [ "$MARIADB_ROOT_HOST" != localhost ]; then
        echo "CREATE USER 'root'@$root_host IDENTIFIED BY $(sql_string "$root_password");"
        echo "GRANT ALL ON *.* TO 'root'@$root_host WITH GRANT OPTION;"
        echo "GRANT PROXY ON ''@'%' TO 'root'@$root_host WITH GRANT OPTION;"
    fi
    if [ -n "$MARIADB_DATABASE" ]; then
        echo "CREATE DATABASE IF NOT EXISTS $(sql_name "$MARIADB_DATABASE");"
    fi
    if [ -n "$MARIADB_USER" ]; then
        echo "CREATE USER $(sql_string "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_string "$MARIADB_PASSWORD");"
        if [ -n "$MARIADB_DATABASE" ]; then
            echo "GRANT ALL ON $(sql_name "$MARIADB_DATABASE").* TO $(sql_string "$MARIADB_USER")@'%';"
        fi
    fi
}

check_env() {
    if [ -z "$MARIADB_ROOT_PASSWORD" ] && ! is_true "$MARIADB_ALLOW_EMPTY_ROOT_PASSWORD" &&
        ! is_true "$MARIADB_RANDOM_ROOT_PASSWORD"; then
        cat >&2 <<'MSG'
error: Database is uninitialized and password option is not specified
    You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
    and MARIADB_RANDOM_ROOT_PASSWORD
MSG
        exit 1
    fi
    if [ "$MARIADB_USER" = root ]; then
        echo >&2 'error: MARIADB_USER="root", MARIADB_USER and MARIADB_PASSWORD are for a user other than root'
        exit 1
    fi
    if [ -n "$MARIADB_USER" ] && [ -z "$MARIADB_PASSWORD" ]; then
        echo >&2 'error: MARIADB_USER is set without MARIADB_PASSWORD'
        exit 1
    fi
}

init_datadir() { # init_datadir SERVER-ARGV...
    check_env
    echo 'Initializing database files'
    mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve --cross-bootstrap --skip-log-bin \
        --loose-innodb_buffer_pool_load_at_startup=0 \
        --loose-innodb_buffer_pool_dump_at_shutdown=0 >/dev/null
    "$@" --skip-networking --socket="$INIT_SOCKET" --skip-log-bin --wsrep_on=OFF \
        --loose-innodb_buffer_pool_load_at_startup=0 \
        --loose-innodb_buffer_pool_dump_at_shutdown=0 &
    local pid=$! i
    for i in {1..300}; do
        client -e 'SELECT 1' >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || {
            echo >&2 'error: the init server stopped'
            exit 1
        }
        [ "$i" -lt 300 ] || {
            echo >&2 'error: the init server did not answer within 30 s'
            exit 1
        }
        sleep 0.1
    done
    setup_sql | client --database=mysql
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
        *.sh) echo "running $f" && . "$f" ;;
        *.sql) echo "running $f" && client ${MARIADB_DATABASE:+"--database=$MARIADB_DATABASE"} <"$f" ;;
        *.sql.gz) echo "running $f" && gunzip -c "$f" |
            client ${MARIADB_DATABASE:+"--database=$MARIADB_DATABASE"} ;;
        *) [ ! -e "$f" ] || echo "ignoring $f" ;;
        esac
    done
    kill -TERM "$pid"
    wait "$pid"
    echo 'MariaDB init process done. Ready for start up.'
}

if [ "${1:0:1}" = - ]; then
    set -- mariadbd "$@"
fi

case $1 in
mariadbd | mysqld)
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$DATADIR" /run/mysqld
        find "$DATADIR" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' +
        exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
    fi
    if [ ! -d "$DATADIR/mysql" ]; then
        mariadb_env
        init_datadir "$@"
    fi
    unset MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD MARIADB_PASSWORD MYSQL_PASSWORD
    ;;
esac
exec "$@"
