#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# spice-codecs: still pictures for the per-codec screenshot test. Loads qxl; for each pattern
# draws it into /dev/fb0, hashes it (SAFFRON-FB) and holds still (sync N, label = the pattern)
# while the host screenshots it once per image compression; then puts the console back in
# text mode, prints enough lines to scroll it many times, hashes what fbcon drew and holds
# still again (sync label scroll); then draws 40 KMS frames (full and partial DIRTYFB updates;
# SAFFRON-KMS hashes the last) and holds that still (sync label kms).
# $@ (saffron.args): the patterns (default solid:336699 hgrad random:7).

# step, skip, wait_for and $failed.
. /workloads/steps.sh

if [ "$#" -eq 0 ]; then
    set -- solid:336699 hgrad random:7
fi
step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
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
step settle saffron-guest settle --ms 1000
step fbhash-scroll saffron-guest fbhash
step sync-scroll saffron-guest sync --id $((n + 1)) --label scroll
step kms-graphics saffron-guest fbcon-off --kd graphics
step kms saffron-guest kms --width 1024 --height 768 --frames 40 --pattern hgrad --sync $((n + 2))
exit "$failed"
