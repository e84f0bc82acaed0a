#!/bin/sh
# cargo speedy server-setup: makes this Debian server a server of one role of the
# apt repository below, following its suite through apt and unattended-upgrades.
# Run it as root; running it again changes nothing, not even a modification time.
set -eu
umask 022
export DEBIAN_FRONTEND=noninteractive

# Every value is one single-quoted word: whatever it holds, it stays a value (it
# cannot end a comment or a here-document, nor become a command).
role={{role}}
url={{url}}
suite={{suite}}
db_host={{db_host}}
keyring_package={{keyring_package}}
keyring_path={{keyring_path}}
runs_jobs={{runs_jobs}}
jobs_flag={{jobs_flag}}
fleet_package={{fleet_package}}
fleet_settings={{fleet_settings_path}}
fleet_role_file={{fleet_role_file}}
fleet_initial_db_file={{fleet_initial_db_file}}
follower_unit={{follower_unit}}
follower_script_path={{follower_script_path}}
follower_service_path={{follower_service_path}}
follower_timer_path={{follower_timer_path}}
follower_service={{follower_service}}
follower_timer={{follower_timer}}
# shellcheck disable=SC2016 # the follower script, quoted: nothing in it is this shell's
follower_script={{follower_script}}
# The role's packages; unattended-upgrades and the keyring package come too.
set -- {{packages}}

if [ "$(id -u)" != 0 ]; then
    echo "speedy server-setup: run this as root" >&2
    exit 1
fi
echo "speedy server-setup: a $role server of $url (suite $suite)"

# New contents are compared here, outside the target's directory: a temporary file
# beside the target, even one removed again, changes the directory's modification
# time, which file-integrity tools report on every run.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

# apt-daily may be running on a server that has just booted, and on a server of a
# fleet the follower asks every 20 s: wait for them rather than fail.
apt_lock_wait=600
{{apt_get}}

# write_file PATH MODE: standard input to PATH when it differs, replaced atomically
# (a rename from beside it, on the same file system); only the mode is set when the
# contents are the same.
write_file() {
    cat >"$work/new"
    if [ -f "$1" ] && cmp -s "$work/new" "$1"; then
        [ "$(stat -c %a "$1")" = "$2" ] || chmod "$2" "$1"
        return 0
    fi
    tmp=$(mktemp "$1.speedy-XXXXXX")
    cat "$work/new" >"$tmp"
    chmod "$2" "$tmp"
    mv -f "$tmp" "$1"
}

# The archive keyring, until the keyring package owns it: the package may carry
# newer keys than this script.
# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
if ! dpkg-query -W -f '${db:Status-Status}' "$keyring_package" 2>/dev/null | grep -qx installed; then
    mkdir -p "$(dirname "$keyring_path")"
    base64 -d <<'SPEEDY_KEYRING' | write_file "$keyring_path" 644
{{keyring_base64}}
SPEEDY_KEYRING
fi

# --- Private repository: apt's authenticated transport -----------------------------
# (docs/operations.md, "Private repositories") For acl = "private", apt reads the
# bucket through the speedy-s3 method with a read-only credential, kept in
# $transport_conf (root's only). The credential is in this script when it was given
# to `cargo speedy server-setup`; the cloud-init form writes the file itself
# (write_files) and leaves it out of the script. Run again with a new credential to
# rotate it.
private={{private}}
transport_method={{transport_method_path}}
transport_conf={{transport_conf_path}}
# Its contents with the credential, or empty when written by cloud-init.
# shellcheck disable=SC1003,SC2016 # a quoted value: nothing in it is the shell's
transport_credential={{transport_conf}}
private_transport() {
    if ! command -v curl >/dev/null 2>&1; then
        apt_get update
        apt_get install -y curl
    fi
    mkdir -p "$(dirname "$transport_method")"
    base64 -d <<'SPEEDY_TRANSPORT' | write_file "$transport_method" 755
{{transport_base64}}
SPEEDY_TRANSPORT
    mkdir -p "$(dirname "$transport_conf")"
    chmod 700 "$(dirname "$transport_conf")"
    if [ -n "$transport_credential" ]; then
        # printf is a builtin: the credential is on no command line.
        printf '%s' "$transport_credential" | write_file "$transport_conf" 600
    fi
    unset transport_credential
    if [ ! -f "$transport_conf" ]; then
        echo "speedy server-setup: $url is a private repository and $transport_conf is missing: run cargo speedy server-setup with the read credential (SPEEDY_READ_ACCESS_KEY_ID and SPEEDY_READ_SECRET_ACCESS_KEY)" >&2
        exit 1
    fi
    [ "$(stat -c %u:%g "$transport_conf")" = 0:0 ] || chown root:root "$transport_conf"
    [ "$(stat -c %a "$transport_conf")" = 600 ] || chmod 600 "$transport_conf"
}
if [ "$private" = yes ]; then
    private_transport
fi
# --- end of the private repository's section ---------------------------------------

mkdir -p /etc/apt/sources.list.d /etc/apt/preferences.d /etc/apt/apt.conf.d
printf '%s' {{sources}} | write_file {{sources_path}} 644
printf '%s' {{preferences}} | write_file {{preferences_path}} 644
printf '%s' {{apt_conf}} | write_file {{apt_conf_path}} 644
printf '%s' {{unattended}} | write_file {{unattended_path}} 644

# A switch of `cargo speedy fleet db` outranks --db-host, which is the initial value
# (kept for a rollback to before the suite's first switch).
mkdir -p "$(dirname "$fleet_initial_db_file")"
printf '%s\n' "$db_host" | write_file "$fleet_initial_db_file" 644
if [ -r "$fleet_settings" ]; then
    fleet_db=$(awk '$1 == "db" { print $2; exit }' "$fleet_settings")
    [ -z "$fleet_db" ] || db_host=$fleet_db
fi

# The database is always reached as `db`: this block comes first in /etc/hosts, so a
# failover is repointing it. cloud-init's template gets it too, or a reboot of a
# droplet would drop it.
SPEEDY_HOSTS_BLOCK="# BEGIN cargo-speedy server-setup
$db_host db
# END cargo-speedy server-setup"
export SPEEDY_HOSTS_BLOCK
hosts_with_block() {
    awk '
        /^# BEGIN cargo-speedy server-setup$/ { skip = 1; next }
        skip && /^# END cargo-speedy server-setup$/ { skip = 0; next }
        skip { next }
        NR == 1 && /^## template:/ { print; print ENVIRON["SPEEDY_HOSTS_BLOCK"]; done = 1; next }
        !done { print ENVIRON["SPEEDY_HOSTS_BLOCK"]; done = 1 }
        { print }
        END { if (!done) print ENVIRON["SPEEDY_HOSTS_BLOCK"] }
    ' "$1"
}
[ -e /etc/hosts ] || : >/etc/hosts
hosts_with_block /etc/hosts >"$work/hosts"
# In place, not renamed: /etc/hosts may be a bind mount (containers).
cmp -s "$work/hosts" /etc/hosts || cat "$work/hosts" >/etc/hosts
template=/etc/cloud/templates/hosts.debian.tmpl
if [ -f "$template" ]; then
    hosts_with_block "$template" | write_file "$template" 644
fi

if [ "$runs_jobs" = yes ]; then
    # This role runs the periodic jobs.
    rm -f "$jobs_flag"
else
    # Not a jobs host: the jobs packages skip their runs while this file exists.
    mkdir -p "$(dirname "$jobs_flag")"
    printf '# cargo speedy server-setup: role %s does not run the periodic jobs\n' "$role" |
        write_file "$jobs_flag" 644
fi

# set_secrets FILE PACKAGE UNITS NAMES LINES: the secrets of PACKAGE given to
# cargo speedy server-setup, into FILE, the EnvironmentFile= of its units (which no
# package ships; root's only). Each NAME=value line of LINES replaces that name's
# line, every other line stays; the file is replaced only when that changes it.
# The values reach awk through its environment, never a command line. Written
# before the packages are installed, so a new service starts with them; UNITS of a
# package installed already are restarted after the install when FILE changed.
restart=""
set_secrets() {
    src=$1
    [ -f "$src" ] || src=/dev/null
    SPEEDY_SECRET_LINES=$5
    export SPEEDY_SECRET_LINES
    awk '
        BEGIN {
            n = split(ENVIRON["SPEEDY_SECRET_LINES"], given, "\n")
            for (i = 1; i <= n; i++) {
                name = given[i]
                sub(/=.*/, "", name)
                order[i] = name
                line[name] = given[i]
            }
        }
        {
            name = $0
            sub(/^[ \t]+/, "", name)
            if (name ~ /^[A-Za-z_][A-Za-z0-9_]*[ \t]*=/) {
                sub(/[ \t]*=.*/, "", name)
            } else {
                name = ""
            }
            if (name != "" && name in line) {
                if (!(name in done)) print line[name]
                done[name] = 1
                next
            }
            print
        }
        END {
            for (i = 1; i <= n; i++) if (!(order[i] in done)) print line[order[i]]
        }
    ' "$src" >"$work/secrets"
    unset SPEEDY_SECRET_LINES
    if [ -f "$1" ] && cmp -s "$work/secrets" "$1"; then
        [ "$(stat -c %u:%g "$1")" = 0:0 ] || chown root:root "$1"
        [ "$(stat -c %a "$1")" = 600 ] || chmod 600 "$1"
        return 0
    fi
    mkdir -p "$(dirname "$1")"
    write_file "$1" 600 <"$work/secrets"
    echo "speedy server-setup: $4 set in $1"
    # shellcheck disable=SC2016 # dpkg-query's format, not the shell's
    if dpkg-query -W -f '${db:Status-Status}' "$2" 2>/dev/null | grep -qx installed; then
        restart="$restart $3"
    fi
}
{{secrets}}

# The fleet follower: a timer that asks this repository's suite alone every 20 s and
# installs only the fleet package, and its service, run at boot too before the
# role's daemons, so a switch made while the server was off is in place first.
install_fleet_follower() {
    reload=no
    for unit in service timer; do
        case $unit in
        service) path=$follower_service_path contents=$follower_service ;;
        timer) path=$follower_timer_path contents=$follower_timer ;;
        esac
        printf '%s' "$contents" >"$work/unit"
        if ! cmp -s "$work/unit" "$path"; then
            write_file "$path" 644 <"$work/unit"
            reload=yes
        fi
    done
    mkdir -p "$(dirname "$follower_script_path")"
    printf '%s' "$follower_script" | write_file "$follower_script_path" 755
    [ -d /run/systemd/system ] || return 0
    [ "$reload" = no ] || systemctl daemon-reload
    for unit in "$follower_unit.service" "$follower_unit.timer"; do
        systemctl --quiet is-enabled "$unit" 2>/dev/null || systemctl --quiet enable "$unit"
    done
    systemctl --quiet is-active "$follower_unit.timer" || systemctl start "$follower_unit.timer"
}

# The role, for the fleet package's settings of one role (`fleet maintenance --role`).
mkdir -p "$(dirname "$fleet_role_file")"
printf '%s\n' "$role" | write_file "$fleet_role_file" 644

{{backup}}

# Not from stdin (apt_get reads /dev/null): piped in (`… | ssh root@host sh`), the rest
# of this script is there.
apt_get update
# The fleet settings, once the suite has a fleet switch.
if LC_ALL=C apt-cache policy "$fleet_package" 2>/dev/null | grep -q '^  Candidate: [^(]'; then
    set -- "$@" "$fleet_package"
fi
apt_get install -y -o Dpkg::Options::=--force-confold unattended-upgrades "$keyring_package" "$@"
install_fleet_follower
if [ -n "$restart" ] && [ -d /run/systemd/system ]; then
    for unit in $restart; do
        if systemctl --quiet is-enabled "$unit" 2>/dev/null; then
            systemctl restart "$unit" </dev/null ||
                echo "speedy server-setup: $unit did not start with its new secrets: see journalctl -u $unit" >&2
        fi
    done
fi
echo "speedy server-setup: $role server ready ($*)"
