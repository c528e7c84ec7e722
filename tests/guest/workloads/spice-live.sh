#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# spice-live: many KMS frames while a Spice client watches.
# Loads qxl, waits for /dev/dri/card0, puts the VT in graphics mode, then
#   saffron-guest sync --id 1 --label connect
# (the host connects its display client while the guest holds still), then
#   saffron-guest kms --width W --height H --frames N --pattern hgrad --sync 2
# which draws N frames as fast as it can (full-frame and partial DIRTYFB updates), prints
# SAFFRON-KMS width= height= frames= fps= sha256=... for the last one and SAFFRON-SYNC id=2
# label=kms, and keeps it on screen until the host's "go".
# Prints SAFFRON-STEP after each step and exits 1 if any failed.
# $1,$2,$3 (saffron.args=W,H,N): mode size and frame count, default 1024,768,120.

width=${1:-1024}
height=${2:-768}
frames=${3:-120}

# step, skip, wait_for and $failed.
. /workloads/steps.sh

step modprobe modprobe qxl
step wait-card0 wait_for /dev/dri/card0 20
if [ -e /dev/dri/card0 ]; then
    if [ -e /dev/fb0 ]; then
        step fbcon-off saffron-guest fbcon-off --kd graphics
    fi
    step connect saffron-guest sync --id 1 --label connect
    step kms saffron-guest kms --width "$width" --height "$height" --frames "$frames" \
        --pattern hgrad --sync 2
else
    skip kms no-card0
fi
exit "$failed"
