#!/bin/sh
# PostgreSQL's archive_command (deploy/backup/postgresql-archiving.conf, D29-A):
#
#   archive_command = '/opt/qadam/deploy/backup/archive-wal.sh %p %f /var/lib/qadam-backup/wal'
#
# Stores one finished WAL file as NAME.gz in the archive. Exit 0 only once the file is on disk
# under its final name: PostgreSQL recycles the segment after a 0, so a copy that only reached
# the page cache would be a hole in the archive after a power cut. gzip's CRC-32 lets a restore
# find a damaged file (qadam backup check|restore). A file already archived (PostgreSQL retries
# after a crash between our exit and its own note) is success when the bytes are the same and
# an error when they differ: two different segments of one name mean two servers share this
# archive, which must be looked at, never overwritten.
set -eu
[ $# -eq 3 ] || { echo "archive-wal.sh: usage: archive-wal.sh %p %f ARCHIVE_DIR" >&2; exit 2; }
src=$1 name=$2 dir=$3
dest=$dir/$name.gz
if [ -e "$dest" ]; then
    if gzip -dc "$dest" 2>/dev/null | cmp -s - "$src"; then
        exit 0
    fi
    echo "archive-wal.sh: $dest exists with other content; not overwritten" >&2
    exit 1
fi
tmp=$dir/.$name.gz.partial
trap 'rm -f "$tmp"' EXIT
gzip -1 -c "$src" > "$tmp"
sync "$tmp"
mv "$tmp" "$dest"
trap - EXIT
sync "$dir"
