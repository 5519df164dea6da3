#!/bin/sh
# PostgreSQL's restore_command during a restore (written by `qadam backup restore`, D29-A):
#
#   restore_command = '/opt/qadam/deploy/backup/restore-wal.sh %f %p /var/lib/qadam-backup/wal'
#
# A file the archive does not have is an ordinary answer (PostgreSQL asks for the next segment
# and for timeline history files until one is missing): exit 1 without a message. A file that is
# there but cannot be read or does not decompress (damaged) is said on stderr, which lands in the server's log.
set -eu
[ $# -eq 3 ] || { echo "restore-wal.sh: usage: restore-wal.sh %f %p ARCHIVE_DIR" >&2; exit 2; }
name=$1 dest=$2 dir=$3
[ -f "$dir/$name.gz" ] || exit 1
if ! gzip -dc "$dir/$name.gz" > "$dest"; then
    echo "restore-wal.sh: $dir/$name.gz cannot be read or is damaged (gzip says why above)" >&2
    rm -f "$dest"
    exit 1
fi
