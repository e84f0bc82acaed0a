#!/usr/bin/env bash
# The backup package's pipeline on a database of SIZE_MIB (default 1024) MiB:
# pg_dump -Fc | age | s3cmd put -, into moto on 127.0.0.1, exactly as the rendered
# script runs it (templates/backup/backup). Prints a table: wall time and peak RSS
# of each stage (GNU time), the table's size on disk and the object's size.
#
# usage: bench/backup.sh [SIZE_MIB]     as root (the cluster runs as postgres), with
# PostgreSQL, age, s3cmd and moto (.venv, .ci/deps) installed.
set -euo pipefail
size_mib=${1:-1024}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chown postgres "$work"
bin=/usr/lib/postgresql/15/bin
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
    [ -n "${moto_pid:-}" ] && kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
runuser -u postgres -- "$bin/initdb" -D "$work/data" -A trust >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -l "$work/log" -w \
    -o "-p $port -k $work -c listen_addresses=''" start >/dev/null
psql() { runuser -u postgres -- "$bin/psql" -X -q -At -h "$work" -p "$port" "$@"; }
psql -d postgres -c 'CREATE DATABASE bench'
# Rows like an app's: an id, a timestamp, short text, a longer text of words.
echo "filling $size_mib MiB ..." >&2
psql -d bench -c "CREATE TABLE items (id bigint PRIMARY KEY, at timestamptz, name text, body text)"
rows=$(( size_mib * 1024 * 1024 / 320 ))
psql -d bench -c "INSERT INTO items SELECT n, now() - n * interval '1 second', 'item-' || n,
    repeat(md5(n::text) || ' ' || md5((n * 7)::text) || ' ', 4) FROM generate_series(1, $rows) AS n"
table=$(psql -d bench -c "SELECT pg_total_relation_size('items')")

"$here/.venv/bin/moto_server" -H 127.0.0.1 -p 0 2>"$work/moto.log" &
moto_pid=$!
for _ in $(seq 50); do grep -q 'Running on' "$work/moto.log" && break; sleep 0.2; done
moto_port=$(sed -n 's/.*Running on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/moto.log" | head -1)
curl -s -X PUT "http://127.0.0.1:$moto_port/bench" >/dev/null
age-keygen -o "$work/key" 2>/dev/null
age-keygen -y "$work/key" >"$work/recipients"
cat >"$work/s3cfg" <<CFG
[default]
host_base = 127.0.0.1:$moto_port
host_bucket = 127.0.0.1:$moto_port
use_https = False
bucket_location = us-east-1
signature_v2 = False
CFG
t() { /usr/bin/time -o "$work/time.$1" -f '%e %M' "${@:2}"; }
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
unset AWS_CA_BUNDLE
started=$(date +%s.%N)
t pg_dump runuser -u postgres -- "$bin/pg_dump" -h "$work" -p "$port" --format=custom --compress=6 --dbname=bench \
    | t age age --encrypt --recipients-file="$work/recipients" \
    | t s3cmd s3cmd --config="$work/s3cfg" --no-progress --quiet put - s3://bench/db/bench.pgdump.age
ended=$(date +%s.%N)
object=$(s3cmd --config="$work/s3cfg" ls s3://bench/db/bench.pgdump.age | awk '{print $3}')
printf '| database (table on disk) | object (encrypted dump) | wall time | stage | stage time | stage peak RSS |\n'
printf '|---|---|---|---|---|---|\n'
for stage in pg_dump age s3cmd; do
    read -r secs kib <"$work/time.$stage"
    printf '| %s MiB | %s MiB | %.1f s | %s | %s s | %s MiB |\n' "$(( table / 1048576 ))" "$(( object / 1048576 ))" \
        "$(echo "$ended - $started" | bc)" "$stage" "$secs" "$(( kib / 1024 ))"
done
