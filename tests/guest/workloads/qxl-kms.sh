#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# qxl-kms: a KMS client (raw DRM ioctls) on the qxl driver: dumb buffer, SETCRTC, then frames
# with full-frame and partial DIRTYFB updates.
# Loads qxl, waits for /dev/dri/card0, prints the kernel's qxl/fbcon lines, puts the VT in
# graphics mode, then runs
#   saffron-guest kms --width W --height H --frames N --pattern hgrad --sync 1
# which prints SAFFRON-KMS modes=..., then SAFFRON-KMS width= height= frames= fps= sha256=...,
# then SAFFRON-SYNC id=1 label=kms and waits (60 s) for "go" on the console while its buffer is
# still on screen (closing the device would give the screen back to fbcon).
# Prints SAFFRON-STEP after each step and exits 1 if any failed.
# $1,$2,$3 (saffron.args=W,H,N): mode size and frame count, default 1024,768,60.
# $4,$5,$6,$7 (optional, saffron.args=W,H,N,FW,FH,X,Y): a framebuffer of FWxFH larger than the
# mode, shown from (X, Y): the screen is a window of it.

width=${1:-1024}
height=${2:-768}
frames=${3:-60}
window=""
if [ -n "$4" ]; then
    window="--fb-width $4 --fb-height $5 --x $6 --y $7"
fi

# step, skip, wait_for and $failed.
. /workloads/steps.sh

step modprobe modprobe qxl
step wait-card0 wait_for /dev/dri/card0 20
dmesg | grep -E "qxl|fbcon|\[drm\] slot"
if [ -e /dev/dri/card0 ]; then
    # fbcon cannot reach a CRTC another master owns, but in KD_GRAPHICS it does not even try.
    if [ -e /dev/fb0 ]; then
        step fbcon-off saffron-guest fbcon-off --kd graphics
    fi
    # $window is a list of options: split on purpose.
    # shellcheck disable=SC2086
    step kms saffron-guest kms --width "$width" --height "$height" --frames "$frames" \
        --pattern hgrad --sync 1 $window
else
    skip kms no-card0
fi
exit "$failed"
