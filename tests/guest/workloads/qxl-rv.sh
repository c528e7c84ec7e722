#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# qxl-rv: what the remote-viewer test needs. Loads qxl, draws one pattern into /dev/fb0 and
# hashes it (SAFFRON-FB), holds still while the host screenshots remote-viewer (sync 1), then
# lets the host type a line into remote-viewer (sync 2) and reads it from the framebuffer
# console's tty: SAFFRON-TYPED hex=<the line's bytes in hex>.
# $1 (saffron.args): the pattern (default random:11).

. /workloads/steps.sh

pattern=${1:-random:11}
step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
step wait-tty1 wait_for /dev/tty1 5
# Keep tty1 open from here on: keys typed while nobody has the tty open are dropped.
exec 3</dev/tty1
step fbcon-off saffron-guest fbcon-off --kd graphics
step fbfill saffron-guest fbfill --pattern "$pattern"
step fbhash saffron-guest fbhash
step sync-screen saffron-guest sync --id 1 --label "$pattern"
step sync-typing saffron-guest sync --id 2 --label typing
typed() {
    # busybox ash has read -t.
    # shellcheck disable=SC3045
    read -r -t 60 line <&3 || return 1
    echo "SAFFRON-TYPED hex=$(printf %s "$line" | od -An -tx1 | tr -d ' \n')"
}
step typed typed
exit "$failed"
