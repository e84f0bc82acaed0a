#!/usr/bin/env bash
# What the fleet follower costs while nothing changes (issue 19): the apt-get update
# that `server-setup`'s follower runs every 20 s (this repository's .sources alone,
# Debian's mirrors untouched), against moto (a real S3 server) on 127.0.0.1 serving
# the fixture's `dev` suite with a fleet switch in it. Counts the requests moto
# answers and the bytes it sends (moto's request log: status and size) over RUNS runs
# after a first one, and scales them to one server-hour (180 runs) and to 1,000
# servers. Prints a table. Not a test: nothing asserts.
#
# Needs: moto (.ci/deps installs it in .venv), apt, python3, curl, and cargo for the
# fixture. Env: RUNS=30, SPEEDY=path of a cargo-speedy binary (default: built here).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
MOTO=${SPEEDY_MOTO_SERVER:-$PWD/.venv/bin/moto_server}
[ -x "$MOTO" ] || { echo "bench: no moto server at $MOTO (.ci/deps installs it)" >&2; exit 1; }
if [ -z "${SPEEDY:-}" ]; then
    cargo build --locked --quiet
    SPEEDY="${CARGO_TARGET_DIR:-$PWD/target}/debug/cargo-speedy"
fi

work=$(mktemp -d -t speedy-follower.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$port" 2>"$work/moto.log" >/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
curl -s -X PUT "http://127.0.0.1:$port/follower" >/dev/null

cp -r tests/fixtures/speedy "$work/ws"
rm -rf "$work/ws/target"
flags=(--bucket follower --region us-east-1 --endpoint "http://127.0.0.1:$port" --addressing path
    --key-file "$work/key.asc" --quiet)
"$SPEEDY" speedy key generate --output "$work/key.asc" >/dev/null 2>&1
(cd "$work/ws" && "$SPEEDY" speedy release --suite dev "${flags[@]}" >/dev/null 2>&1)
(cd "$work/ws" && "$SPEEDY" speedy fleet db --suite dev 10.0.0.7 "${flags[@]}" >/dev/null 2>&1)
"$SPEEDY" speedy key export --key-file "$work/key.asc" --output "$work/keyring.gpg" >/dev/null 2>&1

# An apt of its own, configured as the follower runs it.
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
cat >"$work/apt/speedy.sources" <<SOURCES
Types: deb
URIs: http://127.0.0.1:$port/follower/
Suites: dev
Components: main
Signed-By: $work/keyring.gpg
SOURCES
follow() {
    apt-get update -qq \
        -o Dir::Etc::sourcelist="$work/apt/speedy.sources" -o Dir::Etc::sourceparts=- \
        -o APT::Get::List-Cleanup=0 -o Dir::State::Lists="$work/apt/lists" \
        -o Dir::Cache="$work/apt/cache" -o Dir::State::status=/dev/null \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root </dev/null >/dev/null
    apt-cache -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache" \
        -o Dir::Etc::sourcelist="$work/apt/speedy.sources" -o Dir::Etc::sourceparts=- \
        -o Dir::State::status=/dev/null policy speedy-fleet >/dev/null
}
follow # the first run fetches the indices; then nothing changes
sleep 1.1 # a later second than the publish (apt asks with If-Modified-Since)
before=$(wc -l <"$work/moto.log")
start=$(date +%s.%N)
for _ in $(seq "$RUNS"); do follow; done
end=$(date +%s.%N)
sleep 0.3
# werkzeug's log line: ... "<request line>" STATUS SIZE, the request line coloured.
sed -n "$((before + 1)),\$p" "$work/moto.log" | sed 's/\x1b\[[0-9;]*m//g' |
    grep -E '"(GET|HEAD) ' >"$work/requests.log" || true
requests=$(wc -l <"$work/requests.log")
statuses=$(awk '{ print $(NF-1) }' "$work/requests.log" | sort | uniq -c | awk '{ printf "%s x%s ", $2, $1 }')
# moto does not log sizes: a 304 carries headers only (measured once here), a 200 the
# object too (its Content-Length, asked here).
base="http://127.0.0.1:$port"
header_bytes=$(curl -s -o /dev/null -w '%{size_header}' \
    -H "If-Modified-Since: $(date -u -R -d '+1 hour' | sed 's/+0000/GMT/')" \
    "$base/follower/dists/dev/InRelease")
bytes=0
while read -r status path; do
    bytes=$((bytes + header_bytes))
    if [ "$status" = 200 ]; then
        length=$(curl -sI "$base$path" | awk 'tolower($1) == "content-length:" { print $2 + 0 }')
        bytes=$((bytes + length))
    fi
done < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^"(GET|HEAD)$/) print $(NF-1), $(i+1) }' "$work/requests.log")
per_run_requests=$(echo "scale=2; $requests / $RUNS" | bc)
per_run_bytes=$(echo "scale=0; $bytes / $RUNS" | bc)
seconds=$(echo "scale=3; ($end - $start) / $RUNS" | bc)
hour_requests=$(echo "scale=0; $requests * 180 / $RUNS" | bc)
hour_bytes=$(echo "scale=0; $bytes * 180 / $RUNS" | bc)
fleet_per_second=$(echo "scale=1; $requests * 1000 / $RUNS / 20" | bc)
fleet_month=$(echo "scale=0; $requests * 1000 * 180 * 24 * 30 / $RUNS" | bc)

echo "follower runs with nothing changed: $RUNS (statuses: $statuses)"
echo
echo "| per | requests | bytes sent by the store (headers ${header_bytes} B per answer) |"
echo "|---|---|---|"
echo "| run (every 20 s; ${seconds} s of apt each) | $per_run_requests | $per_run_bytes |"
echo "| server-hour (180 runs) | $hour_requests | $hour_bytes |"
echo "| 1,000 servers, per second | $fleet_per_second | $(echo "scale=0; $bytes * 1000 / $RUNS / 20" | bc) |"
echo "| 1,000 servers, per 30-day month | $fleet_month | $(echo "scale=0; $bytes * 1000 * 180 * 24 * 30 / $RUNS" | bc) |"
