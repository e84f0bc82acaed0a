#!/usr/bin/env bash
# Publishing to S3 at the cost of what changed (issue 9): cargo speedy next to aptly 1.5,
# both publishing the same .debs to moto (a real S3 server) on 127.0.0.1, directly and
# through bench/delay-proxy.py (each client->server chunk held DELAY_MS, like a remote
# Spaces). N existing versions = 100 package names x N/100 versions; "update +3" adds
# one new version of 3 packages; aptly's and speedy's runs alternate so machine drift
# hits both. Also one BIG_MIB MiB .deb. Prints wall time, CPU (user+sys), peak RSS
# and the requests moto answered per command, by method. Not a test: nothing asserts.
#
# What each tool does (so the rows compare like with like as far as they can):
#  aptly: `repo add` into its local database, then `publish repo` / `publish update`,
#         unsigned (-skip-signing), Packages + .gz + .bz2 and Contents indices.
#  speedy: `publish`: verifies the signed InRelease it merges into, takes a lock,
#         writes Packages + .gz with by-hash copies, Release, Release.gpg and a
#         signed InRelease, records the history, collects garbage.
#
# Needs: moto (.ci/deps installs it in .venv), aptly (installed with apt-get when
# missing), python3, /usr/bin/time. Env: SIZES="100 1000 10000", DELAY_MS=40,
# BIG_MIB=1024 (0 skips it), SPEEDY=path of a cargo-speedy binary (default: built
# here with --release).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100 1000 10000"}
DELAY_MS=${DELAY_MS:-40}
BIG_MIB=${BIG_MIB:-1024}
MOTO=${SPEEDY_MOTO_SERVER:-$PWD/.venv/bin/moto_server}

[ -x "$MOTO" ] || { echo "bench: no moto server at $MOTO (.ci/deps installs it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: install GNU time (apt-get install time)" >&2; exit 1; }
if ! command -v aptly >/dev/null; then
    apt-get install -y -qq aptly >/dev/null
fi
if [ -z "${SPEEDY:-}" ]; then
    cargo build --release --locked --quiet
    SPEEDY="${CARGO_TARGET_DIR:-$PWD/target}/release/cargo-speedy"
fi

work=$(mktemp -d -t speedy-vs-aptly.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# moto logs one line per request on stderr: that log is the request count.
moto_port=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$moto_port" 2>"$work/moto.log" >/dev/null &
pids+=($!)
proxy_port=$(free_port)
python3 bench/delay-proxy.py "$proxy_port" "$moto_port" "$DELAY_MS" >"$work/proxy.out" &
pids+=($!)
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && grep -q ready "$work/proxy.out" && break
    sleep 0.1
done
LOOPBACK="http://127.0.0.1:$moto_port"
DELAYED="http://127.0.0.1:$proxy_port"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret

# A workspace for cargo speedy's settings: amd64, and retention above N/100 + 3 so
# that nothing is retired (aptly keeps every version).
mkdir -p "$work/ws/dummy/src"
cat >"$work/ws/Cargo.toml" <<'TOML'
[workspace]
members = ["dummy"]
resolver = "2"
[workspace.metadata.speedy.repo]
architectures = ["amd64"]
retention = 1000
TOML
printf '[package]\nname = "dummy"\nversion = "0.1.0"\nedition = "2021"\n' >"$work/ws/dummy/Cargo.toml"
touch "$work/ws/dummy/src/lib.rs"
"$SPEEDY" speedy key generate --output "$work/key.asc" >/dev/null 2>&1

log_lines() { wc -l <"$work/moto.log"; }

# measure NAME COMMAND...: runs it, records wall, CPU, RSS and requests by method in
# $work/NAME.m as "wall cpu rss_mb requests-by-method total".
measure() {
    local name=$1; shift
    local before after
    before=$(log_lines)
    if ! /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err"; then
        echo "bench: $name failed:" >&2; tail -20 "$work/$name.err" >&2; exit 1
    fi
    sleep 0.3
    after=$(log_lines)
    local lines by_method total
    lines=$(sed -n "$((before + 1)),${after}p" "$work/moto.log" | grep -oE '(GET|PUT|HEAD|POST|DELETE) /' | tr -d ' /' || true)
    by_method=$(echo "$lines" | grep . | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}' || true)
    total=$(echo "$lines" | grep -c . || true)
    read -r wall user sys rss_kb <"$work/$name.time"
    echo "$wall $(printf '%.2f' "$(echo "$user + $sys" | bc)") $((rss_kb / 1024)) ${by_method}total $total" >"$work/$name.m"
}

speedy_publish() { # bucket endpoint debs...
    local bucket=$1 endpoint=$2; shift 2
    "$SPEEDY" speedy publish --quiet --manifest-path "$work/ws/Cargo.toml" --suite dev \
        --bucket "$bucket" --region us-east-1 --endpoint "$endpoint" --addressing path \
        --key-file "$work/key.asc" "$@"
}

aptly_conf() { # name endpoint bucket
    cat >"$work/aptly-$1.conf" <<JSON
{"rootDir": "$work/aptly-$1", "architectures": ["amd64"], "gpgDisableSign": true,
 "S3PublishEndpoints": {"bench": {"region": "us-east-1", "bucket": "$3", "endpoint": "$2",
   "awsAccessKeyID": "bench", "awsSecretAccessKey": "bench-secret", "acl": "public-read"}}}
JSON
}

aptly_first() { # name debdir
    local conf="$work/aptly-$1.conf"
    aptly -config="$conf" repo add bench "$2" >/dev/null &&
        aptly -config="$conf" publish repo -skip-signing -distribution=dev -component=main bench s3:bench:
}
aptly_update() { # name debdir
    local conf="$work/aptly-$1.conf"
    aptly -config="$conf" repo add bench "$2" >/dev/null &&
        aptly -config="$conf" publish update -skip-signing dev s3:bench:
}
export -f aptly_first aptly_update speedy_publish
export work SPEEDY

row() { # N phase aptly-name speedy-name
    local a s
    read -r aw ac ar areq <<<"$(cat "$work/$3.m")"
    a="$(cut -d' ' -f4- "$work/$3.m")"
    s="$(cut -d' ' -f4- "$work/$4.m")"
    read -r sw sc sr _ <"$work/$4.m"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$aw" "$sw" \
        "$(printf '%.2f' "$(echo "scale=3; $sw / $aw" | bc)")" "$ac" "$sc" "$ar" "$sr" "$a" "$s"
}

rows=()
for n in $SIZES; do
    versions=$((n / 100))
    python3 bench/fake-debs.py "$work/debs-$n" 100 1 "$versions"
    python3 bench/fake-debs.py "$work/new1-$n" 3 $((versions + 1)) $((versions + 1))
    python3 bench/fake-debs.py "$work/new2-$n" 3 $((versions + 2)) $((versions + 2))
    curl -s -X PUT "$LOOPBACK/speedy-$n" >/dev/null
    curl -s -X PUT "$LOOPBACK/aptly-$n" >/dev/null
    aptly_conf "$n" "$LOOPBACK" "aptly-$n"
    aptly -config="$work/aptly-$n.conf" repo create -distribution=dev -component=main bench >/dev/null

    measure "aptly-first-$n" bash -c "aptly_first $n $work/debs-$n"
    measure "speedy-first-$n" bash -c 'speedy_publish "$@"' _ "speedy-$n" "$LOOPBACK" "$work/debs-$n"/*.deb
    rows+=("$(row "$n" "first publish" "aptly-first-$n" "speedy-first-$n")")
    measure "aptly-update-$n" bash -c "aptly_update $n $work/new1-$n"
    measure "speedy-update-$n" bash -c 'speedy_publish "$@"' _ "speedy-$n" "$LOOPBACK" "$work/new1-$n"/*.deb
    rows+=("$(row "$n" "update +3" "aptly-update-$n" "speedy-update-$n")")
    measure "speedy-nochange-$n" bash -c 'speedy_publish "$@"' _ "speedy-$n" "$LOOPBACK" "$work/new1-$n"/*.deb
    aptly_conf "$n" "$DELAYED" "aptly-$n"
    measure "speedy-delayed-$n" bash -c 'speedy_publish "$@"' _ "speedy-$n" "$DELAYED" "$work/new2-$n"/*.deb
    measure "aptly-delayed-$n" bash -c "aptly_update $n $work/new2-$n"
    rows+=("$(row "$n" "update +3, ${DELAY_MS} ms/request" "aptly-delayed-$n" "speedy-delayed-$n")")
    read -r nw nc nr nreq <"$work/speedy-nochange-$n.m"
    rows+=("| $n | no-change publish (speedy only) | – | $nw | – | – | $nc | – | $nr | – | $(cut -d' ' -f4- "$work/speedy-nochange-$n.m") |")
    rm -rf "$work/debs-$n"
done

if [ "$BIG_MIB" -gt 0 ]; then
    python3 bench/fake-debs.py --big "$work/big" "$BIG_MIB" >/dev/null
    curl -s -X PUT "$LOOPBACK/speedy-big" >/dev/null
    curl -s -X PUT "$LOOPBACK/aptly-big" >/dev/null
    aptly_conf big "$LOOPBACK" aptly-big
    aptly -config="$work/aptly-big.conf" repo create -distribution=dev -component=main bench >/dev/null
    measure aptly-big bash -c "aptly_first big $work/big"
    measure speedy-big bash -c 'speedy_publish "$@"' _ speedy-big "$LOOPBACK" "$work/big"/*.deb
    rows+=("$(row "one ${BIG_MIB} MiB .deb" "first publish" aptly-big speedy-big)")
fi

echo
echo "cargo speedy vs aptly $(aptly version | head -1 | awk '{print $NF}') publishing to moto on 127.0.0.1 ($(nproc) cores, $(date -u +%F)):"
echo
echo "| N | phase | aptly wall s | speedy wall s | speedy/aptly | aptly CPU s | speedy CPU s | aptly peak RSS MB | speedy peak RSS MB | aptly requests | speedy requests |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
printf '%s\n' "${rows[@]}"
