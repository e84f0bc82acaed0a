# apt_get ARGS: apt-get ARGS, waiting up to $apt_lock_wait seconds while another apt
# holds a lock it needs (apt-daily and unattended-upgrades, the fleet follower every
# 20 s, an operator). apt waits for dpkg's lock when told to (DPkg::Lock::Timeout)
# but never for the lists' lock that `apt-get update` takes, nor for the archives'
# lock of a download: it fails at once, which a timer or a cloud-init run cannot
# answer by trying again. In the C locale, so its complaint can be recognised; only
# a run that failed on a lock ("E: Could not get lock", not the "Waiting for cache
# lock" it prints while it waits) is run again.
apt_get() {
    apt_waited=0
    while :; do
        # stderr is kept to be read (and then shown); stdout goes out as it comes.
        if { apt_err=$(LC_ALL=C apt-get -o DPkg::Lock::Timeout=60 "$@" </dev/null 2>&1 >&3 3>&-); } 3>&1; then
            [ -z "$apt_err" ] || printf '%s\n' "$apt_err" >&2
            return 0
        else
            apt_status=$?
        fi
        case $apt_err in
        *"E: Could not get lock"*) ;;
        *)
            printf '%s\n' "$apt_err" >&2
            return "$apt_status"
            ;;
        esac
        if [ "$apt_waited" -ge "$apt_lock_wait" ]; then
            printf '%s\n' "$apt_err" >&2
            echo "speedy: apt-get $1 waited $apt_waited s for another apt to finish: run it again when it has" >&2
            return "$apt_status"
        fi
        if [ "$apt_waited" = 0 ]; then
            printf '%s\n' "$apt_err" | grep -m1 'E: Could not get lock' >&2 || true
            echo "speedy: another apt is running; apt-get $1 waits for it (up to $apt_lock_wait s)" >&2
        fi
        sleep 2
        apt_waited=$((apt_waited + 2))
    done
}
