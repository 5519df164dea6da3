#!/bin/sh
# Install qadam on one Debian 12 machine (docs/deploy.md): PostgreSQL, Mosquitto with TLS and
# dynamic security, nginx terminating TLS in front of the API, the API, the ingest and the
# workers as systemd units, one configuration file. Run as root from a checkout:
#
#   deploy/install.sh --server-name school.example.kz [--tls-cert FULLCHAIN --tls-key KEY]
#
# Without --tls-cert the web certificate is issued by the machine's own CA (the one the boards
# trust): browsers will warn until a real certificate (e.g. Let's Encrypt) is given.
# Steps can be left out with --skip STEP,STEP (packages, user, code, database, backup, certs,
# broker, config, units, start); with --root DIR every file goes under DIR and nothing outside it is
# touched (how the tests run it: tests/cloud/test_deploy_install.py).
set -eu

SERVER_NAME= TLS_CERT= TLS_KEY= ROOT= SKIP=
while [ $# -gt 0 ]; do
    case "$1" in
        --server-name) SERVER_NAME=$2; shift 2 ;;
        --tls-cert) TLS_CERT=$2; shift 2 ;;
        --tls-key) TLS_KEY=$2; shift 2 ;;
        --root) ROOT=$2; shift 2 ;;
        --skip) SKIP=",$2,"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$SERVER_NAME" ] || { echo "install.sh: --server-name is required (the name boards and browsers use)" >&2; exit 2; }
case "$SERVER_NAME" in
    *[!A-Za-z0-9.-]*) echo "install.sh: --server-name must be a host name or an IPv4 address" >&2; exit 2 ;;
esac
if [ -n "$TLS_CERT$TLS_KEY" ] && { [ ! -r "$TLS_CERT" ] || [ ! -r "$TLS_KEY" ]; }; then
    echo "install.sh: --tls-cert and --tls-key must both be readable files" >&2; exit 2
fi

SRC=$(cd "$(dirname "$0")/.." && pwd)
ETC=$ROOT/etc/qadam
OPT=$ROOT/opt/qadam
MOSQ=$ROOT/etc/mosquitto
NGINX=$ROOT/etc/nginx
UNITS=$ROOT/etc/systemd/system
MOSQ_DATA=$ROOT/var/lib/mosquitto
BACKUP=$ROOT/var/lib/qadam-backup
step() { case "$SKIP" in *",$1,"*) return 1 ;; esac; echo "== $1"; return 0; }
say() { echo "   $*"; }
secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=' ; }

if step packages; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql mosquitto mosquitto-clients \
        nginx-light python3-venv python3-dev build-essential nodejs npm openssl >/dev/null
fi

if step user; then
    id qadam >/dev/null 2>&1 || useradd --system --home-dir /var/lib/qadam --shell /usr/sbin/nologin qadam
    # the retention worker's archive of old months (QADAM_RETENTION_ARCHIVE_DIR, D29-B)
    install -d -m 0750 -o qadam -g qadam /var/lib/qadam /var/lib/qadam/event-archive
fi

if step code; then
    mkdir -p "$OPT"
    # the checkout without its local state; then the same set-up as ./dev (venv, npm ci, vendor)
    tar -C "$SRC" --exclude=.git --exclude=.venv --exclude=node_modules -cf - . | tar -C "$OPT" -xf -
    python3 -m venv "$OPT/.venv"
    "$OPT/.venv/bin/pip" install -q "$OPT"
    (cd "$OPT" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && .venv/bin/python -m cloud.console.vendor >/dev/null)
fi

mkdir -p "$ETC"
chmod 0750 "$ETC"

if step database; then
    # peer authentication over the local socket: the qadam system user is the qadam role
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'qadam'\"" | grep -q 1 \
        || su postgres -c "createuser qadam"
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = 'qadam'\"" | grep -q 1 \
        || su postgres -c "createdb -O qadam qadam"
fi

if step backup; then
    # WAL archiving and nightly base backups (D29-A): the archive and the backups in one
    # directory of the postgres user's; PostgreSQL's conf.d gets the archiving settings
    mkdir -p "$BACKUP/wal" "$BACKUP/base"
    chmod 0700 "$BACKUP"
    [ -n "$ROOT" ] || chown -R postgres:postgres "$BACKUP"
    PGMAIN=$(ls -d /etc/postgresql/*/main 2>/dev/null | sort -V | tail -n 1)
    PGMAIN=$ROOT${PGMAIN:-/etc/postgresql/15/main}
    mkdir -p "$PGMAIN/conf.d"
    sed -e "s|/var/lib/qadam-backup/|$BACKUP/|g" -e "s|/opt/qadam/|$OPT/|g" \
        "$SRC/deploy/backup/postgresql-archiving.conf" > "$PGMAIN/conf.d/qadam-archiving.conf"
    mkdir -p "$UNITS"
    cp "$SRC"/deploy/backup/qadam-basebackup.service "$SRC"/deploy/backup/qadam-basebackup.timer "$UNITS/"
    [ -n "$ROOT" ] || systemctl daemon-reload
fi

if step certs; then
    # the machine's own CA: boards verify the broker with it (it goes into every device file)
    mkdir -p "$MOSQ/certs"
    if [ ! -f "$ETC/board-ca.key" ]; then
        openssl req -x509 -newkey rsa:3072 -sha256 -days 7300 -nodes -subj "/CN=qadam boards CA $SERVER_NAME" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$ETC/board-ca.key" -out "$ETC/board-ca.crt" 2>/dev/null
        chmod 0600 "$ETC/board-ca.key"
    fi
    case "$SERVER_NAME" in
        *[!0-9.]*) SAN="DNS:$SERVER_NAME" ;;
        *) SAN="IP:$SERVER_NAME" ;;
    esac
    openssl req -newkey rsa:2048 -sha256 -nodes -subj "/CN=$SERVER_NAME" \
        -keyout "$MOSQ/certs/server.key" -out "$ETC/server.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$SAN" > "$ETC/server.ext"
    openssl x509 -req -in "$ETC/server.csr" -CA "$ETC/board-ca.crt" -CAkey "$ETC/board-ca.key" \
        -CAcreateserial -days 825 -sha256 -extfile "$ETC/server.ext" -out "$MOSQ/certs/server.crt" 2>/dev/null
    cp "$ETC/board-ca.crt" "$MOSQ/certs/ca.crt"
    rm -f "$ETC/server.csr" "$ETC/server.ext"
    if [ -z "$TLS_CERT" ]; then
        TLS_CERT=$MOSQ/certs/server.crt TLS_KEY=$MOSQ/certs/server.key
        say "WARNING: the web uses the machine's own CA; give --tls-cert/--tls-key for browsers"
    fi
    [ -n "$ROOT" ] || chown mosquitto "$MOSQ/certs/server.key"
    chmod 0600 "$MOSQ/certs/server.key"
fi

if step broker; then
    mkdir -p "$MOSQ/conf.d" "$MOSQ_DATA"
    sed -e "s|/var/lib/mosquitto/|$MOSQ_DATA/|g" -e "s|/etc/mosquitto/certs/|$MOSQ/certs/|g" \
        "$SRC/deploy/mosquitto/mosquitto.conf" > "$MOSQ/conf.d/qadam.conf"
    ADMIN_PW=$(secret)
    if [ ! -f "$MOSQ_DATA/dynamic-security.json" ]; then
        mosquitto_ctrl dynsec init "$MOSQ_DATA/dynamic-security.json" qadam-admin "$ADMIN_PW" >/dev/null
        [ -n "$ROOT" ] || chown mosquitto "$MOSQ_DATA/dynamic-security.json"
        printf '%s' "$ADMIN_PW" > "$ETC/mqtt-admin-password"
        chmod 0600 "$ETC/mqtt-admin-password"
    fi
fi

if step config; then
    ADMIN_PW=$(cat "$ETC/mqtt-admin-password" 2>/dev/null || echo CHANGE-ME)
    if [ ! -f "$ETC/qadam.env" ]; then
        sed -e "s|SERVER_NAME|$SERVER_NAME|g" -e "s|CHANGE-ME|$ADMIN_PW|" \
            -e "s|/etc/qadam/|$ETC/|g" "$SRC/deploy/qadam.env.example" > "$ETC/qadam.env"
        chmod 0640 "$ETC/qadam.env"
    fi
    mkdir -p "$NGINX/sites-available" "$NGINX/sites-enabled"
    sed -e "s|SERVER_NAME|$SERVER_NAME|g" -e "s|TLS_CERT|${TLS_CERT:-$MOSQ/certs/server.crt}|" \
        -e "s|TLS_KEY|${TLS_KEY:-$MOSQ/certs/server.key}|" \
        "$SRC/deploy/nginx/qadam.conf" > "$NGINX/sites-available/qadam.conf"
    ln -sf ../sites-available/qadam.conf "$NGINX/sites-enabled/qadam.conf"
    rm -f "$NGINX/sites-enabled/default"
fi

if step units; then
    mkdir -p "$UNITS"
    cp "$SRC"/deploy/systemd/qadam-api.service "$SRC"/deploy/systemd/qadam-ingest.service \
       "$SRC"/deploy/systemd/qadam-worker@.service "$SRC"/deploy/systemd/qadam.target "$UNITS/"
    [ -n "$ROOT" ] || systemctl daemon-reload
fi

if step start; then
    [ -n "$ROOT" ] && { echo "install.sh: --root installs are not started" >&2; exit 2; }
    chown root:qadam "$ETC" "$ETC/qadam.env" "$ETC/board-ca.crt"
    systemctl restart mosquitto postgresql
    set -a; . "$ETC/qadam.env"; set +a
    # as qadam: the database trusts the local socket's peer (the qadam role); runuser keeps QADAM_*
    (cd "$OPT" && runuser -u qadam -- .venv/bin/qadam migrate)
    (cd "$OPT" && .venv/bin/qadam broker-accounts --out-dir "$ETC")
    chown root:qadam "$ETC"/broker-*.env && chmod 0640 "$ETC"/broker-*.env
    systemctl reload nginx || systemctl restart nginx
    systemctl enable --now qadam.target
    # the first base backup now (archiving is on since the restart above), then nightly
    if [ -f "$UNITS/qadam-basebackup.timer" ]; then
        systemctl enable --now qadam-basebackup.timer
        systemctl start qadam-basebackup.service || say "WARNING: the first base backup failed: journalctl -u qadam-basebackup"
    fi
    say "running. Next: the first platform operator:"
    say "  sudo -u qadam env \$(cat $ETC/qadam.env | xargs) $OPT/.venv/bin/qadam create-user you@example.kz"
    say "then open https://$SERVER_NAME/ and register a board (docs/flashing.md)"
fi
