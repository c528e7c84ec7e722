#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# qxl-cursor: the hardware cursor through KMS on the qxl driver.
# Loads qxl, waits for /dev/dri/card0, puts the VT in graphics mode, then runs
#   saffron-guest kms --width 1024 --height 768 --frames 2 --pattern hgrad --cursor-sync cursor
# which lights the CRTC with a dumb buffer, then sets a 64x64 ARGB cursor with a hot spot
# (DRM_IOCTL_MODE_CURSOR2), moves it twice and hides it, printing SAFFRON-CURSOR op=... before
# each hand-over SAFFRON-SYNC id=cursor-ready|cursor-set|cursor-move1|cursor-move2|cursor-hide
# (the host checks what its Spice client received at each).
# Prints SAFFRON-STEP after each step and exits 1 if any failed.

# step, skip, wait_for and $failed.
. /workloads/steps.sh

step modprobe modprobe qxl
step wait-card0 wait_for /dev/dri/card0 20
if [ -e /dev/dri/card0 ]; then
    if [ -e /dev/fb0 ]; then
        step fbcon-off saffron-guest fbcon-off --kd graphics
    fi
    step cursor saffron-guest kms --width 1024 --height 768 --frames 2 --pattern hgrad \
        --cursor-sync cursor
else
    skip cursor no-card0
fi
exit "$failed"
