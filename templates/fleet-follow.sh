#!/bin/sh
# cargo speedy server-setup: the fleet follower. Run by {{unit}} every few seconds and
# at boot before the services start, it asks only this repository's suite whether
# it changed (apt sends If-Modified-Since for InRelease: unchanged, one small
# request) and installs only the fleet package, whose postinst applies the settings
# of `cargo speedy fleet`. apt verifies it against the signed indices as always: a
# tampered package is refused and the settings in place stay.
set -eu
export DEBIAN_FRONTEND=noninteractive
sources={{sources_path}}
package={{fleet_package}}

# An operator's apt or apt-daily may hold apt's locks: wait for them, within the
# service's TimeoutStartSec (90 s); the next run comes 20 s later anyway.
apt_lock_wait=60
{{apt_get}}

# This source alone; the lists of the others stay as they are.
apt_get update -qq \
    -o Dir::Etc::sourcelist="$sources" \
    -o Dir::Etc::sourceparts=- \
    -o APT::Get::List-Cleanup=0
policy=$(LC_ALL=C apt-cache policy "$package")
installed=$(printf '%s\n' "$policy" | awk '$1 == "Installed:" { print $2 }')
candidate=$(printf '%s\n' "$policy" | awk '$1 == "Candidate:" { print $2 }')
case $candidate in
"" | "(none)")
    case $installed in
    "" | "(none)") exit 0 ;; # no fleet switch in this suite yet
    esac
    # A rollback took the suite back to before its first switch: the package's prerm
    # puts back what server-setup set.
    echo "fleet settings $installed -> none"
    apt_get remove -y -q "$package"
    exit 0
    ;;
esac
[ "$candidate" = "$installed" ] && exit 0
echo "fleet settings $installed -> $candidate"
# The version named: a rollback of a switch is a downgrade (the pin allows it).
apt_get install -y -q --allow-downgrades \
    -o Dpkg::Options::=--force-confold \
    "$package=$candidate"
