#!/bin/sh
# qxl-surface: an off-screen surface through the qxl driver's own ioctls.
# Loads qxl, waits for /dev/dri/card0, prints the kernel's qxl lines (the surface memory size
# among them), stops fbcon from drawing, then runs
#   saffron-guest qxl-surface --sync 1
# which makes a surface bo, fills it, has the driver create the device surface
# (SAFFRON-QXLSURF ... sha256=..., SAFFRON-SYNC id=1), then closes it (the driver destroys the
# device surface; SAFFRON-SYNC id=2).
# Prints SAFFRON-STEP after each step and exits 1 if any failed.
# $1,$2 (saffron.args=W,H): the surface size, default 64x64. A bo of at most one page (e.g.
# 16x16) is placed at the top of the driver's surface heap.

width=${1:-64}
height=${2:-64}

# step, skip, wait_for and $failed.
. /workloads/steps.sh

step modprobe modprobe qxl
step wait-card0 wait_for /dev/dri/card0 20
dmesg | grep -E "qxl|fbcon|\[drm\] slot"
if [ -e /dev/dri/card0 ]; then
    if [ -e /dev/fb0 ]; then
        step fbcon-off saffron-guest fbcon-off --kd graphics
    fi
    step qxl-surface saffron-guest qxl-surface --width "$width" --height "$height" --sync 1
else
    skip qxl-surface no-card0
fi
exit "$failed"
