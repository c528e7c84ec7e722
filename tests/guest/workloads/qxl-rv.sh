#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# qxl-rv: what the remote-viewer test needs. Loads qxl; for each pattern draws it into
# /dev/fb0, hashes it (SAFFRON-FB) and holds still while the host screenshots remote-viewer
# (sync N, label = the pattern); then puts the console back in text mode and prints enough
# lines to scroll it many times (sync label scroll, after the hash of what fbcon drew); then
# lets the host type a line into remote-viewer (sync with label typing) and reads it from the
# framebuffer console's tty: SAFFRON-TYPED hex=<the line's bytes in hex>; then pastes two
# pictures in turn at 30 places through KMS (the same images again and again: the pixmap
# cache's case) and holds the last frame (SAFFRON-KMS, sync label kms).
# $@ (saffron.args): the patterns (default random:11).

. /workloads/steps.sh

if [ "$#" -eq 0 ]; then
    set -- random:11
fi
step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
step wait-tty1 wait_for /dev/tty1 5
# Keep tty1 open from here on: keys typed while nobody has the tty open are dropped.
exec 3</dev/tty1
step fbcon-off saffron-guest fbcon-off --kd graphics
n=0
for pattern in "$@"; do
    n=$((n + 1))
    step "fbfill-$n" saffron-guest fbfill --pattern "$pattern"
    step "fbhash-$n" saffron-guest fbhash
    step "sync-$n" saffron-guest sync --id "$n" --label "$pattern"
done
step fbcon-text saffron-guest fbcon-off --kd text
step scroll scroll_text
step scroll-slowly scroll_slowly 8
step settle saffron-guest settle --ms 1000
step fbhash-scroll saffron-guest fbhash
step sync-scroll saffron-guest sync --id $((n + 1)) --label scroll
step sync-typing saffron-guest sync --id $((n + 2)) --label typing
typed() {
    # busybox ash has read -t.
    # shellcheck disable=SC3045
    read -r -t 60 line <&3 || return 1
    echo "SAFFRON-TYPED hex=$(printf %s "$line" | od -An -tx1 | tr -d ' \n')"
}
step typed typed
step kms-graphics saffron-guest fbcon-off --kd graphics
step kms saffron-guest kms --width 1024 --height 768 --frames 60 --motion tiles \
    --sync $((n + 3))
exit "$failed"
