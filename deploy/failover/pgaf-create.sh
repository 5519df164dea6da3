#!/bin/sh
# Create one machine of the replicated store with pg_auto_failover (docs/deploy.md "Replicated
# store", D29-D). On each machine, as root, with its /etc/qadam/pgaf.env (pgaf.env.example):
#
#   deploy/failover/pgaf-create.sh /etc/qadam/pgaf.env
#
# In this order: the monitor, then the first node (it becomes the primary), then the second (a
# streaming standby copied from the primary with pg_basebackup), each followed by
# `systemctl enable --now qadam-pgaf-monitor` or `qadam-pgaf-node` (deploy/failover/*.service);
# the second node's copy starts only once the first node's unit runs. pg_autoctl runs as the
# postgres user. Our failover timing is applied: monitor.conf on the monitor, keeper.settings on
# the nodes. A machine already created is left as it is (exit 0).
set -eu

ENV_FILE=${1:?usage: pgaf-create.sh ENV_FILE (see deploy/failover/pgaf.env.example)}
HERE=$(cd "$(dirname "$0")" && pwd)
case "$ENV_FILE" in */*) ;; *) ENV_FILE=./$ENV_FILE ;; esac  # `.` would search PATH
# shellcheck disable=SC1090
. "$ENV_FILE"
: "${PGAF_ROLE:?PGAF_ROLE is monitor or node}" "${PGDATA:?}" "${PGPORT:?}" "${PGAF_PGCTL:?}"
: "${PGAF_HOSTNAME:?}" "${PGAF_AUTH:?}" "${PGAF_SSL:=--ssl-self-signed}"
PGAF_USER=${PGAF_USER:-postgres}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u "$PGAF_USER" -- "$@"; else "$@"; fi
}

if [ -f "$PGDATA/PG_VERSION" ]; then
    echo "pgaf-create.sh: $PGDATA already holds a cluster; nothing to do"
    exit 0
fi

# word splitting of PGAF_SSL is wanted: it holds several options
case "$PGAF_ROLE" in
monitor)
    # shellcheck disable=SC2086
    as_pg pg_autoctl create monitor --pgdata "$PGDATA" --pgport "$PGPORT" \
        --pgctl "$PGAF_PGCTL" --hostname "$PGAF_HOSTNAME" --auth "$PGAF_AUTH" $PGAF_SSL
    as_pg tee "$PGDATA/qadam-failover.conf" <"$HERE/monitor.conf" >/dev/null
    echo "include_if_exists = 'qadam-failover.conf'" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
    ;;
node)
    : "${PGAF_NAME:?}" "${PGAF_MONITOR:?}" "${PGAF_DBNAME:?}"
    # shellcheck disable=SC2086
    as_pg pg_autoctl create postgres --pgdata "$PGDATA" --pgport "$PGPORT" \
        --pgctl "$PGAF_PGCTL" --hostname "$PGAF_HOSTNAME" --name "$PGAF_NAME" \
        --monitor "$PGAF_MONITOR" --dbname "$PGAF_DBNAME" --auth "$PGAF_AUTH" $PGAF_SSL
    grep -v '^[[:space:]]*\(#\|$\)' "$HERE/keeper.settings" | while read -r key value; do
        as_pg pg_autoctl config set --pgdata "$PGDATA" "$key" "$value" >/dev/null
    done
    ;;
*)
    echo "pgaf-create.sh: PGAF_ROLE must be monitor or node, not $PGAF_ROLE" >&2
    exit 2
    ;;
esac
echo "pgaf-create.sh: $PGAF_ROLE created in $PGDATA; now start its unit"
