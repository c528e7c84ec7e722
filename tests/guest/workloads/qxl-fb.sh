#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# qxl-fb: the qxl DRM driver's fbdev emulation (qxldrmfb) drawing through our device.
# Loads qxl, waits for /dev/fb0, prints the kernel's qxl/fbcon lines (the host looks for
# "Initialized qxl" and "fbcon: qxldrmfb (fb0) is primary device"), puts the VT in graphics mode
# so fbcon leaves the screen alone, then for each pattern:
#   saffron-guest fbfill   -> SAFFRON-FBFILL pattern=P ... sha256=<rgb digest of the picture>
#   saffron-guest fbhash   -> SAFFRON-FB ... format=rgb ... sha256=<rgb digest read back>
#   saffron-guest sync     -> SAFFRON-SYNC id=N label=P, then waits (60 s) for "go" on the
#                             console: the host takes its screendump in between.
# The SYNC lines come even after a failed fill, so the host's count stays in step; if qxl or
# /dev/fb0 never shows up there are none, and the workload ends with status 1.
# Runs every step, prints SAFFRON-STEP after each, and exits 1 if any failed.
# $@ (saffron.args): patterns to use instead of the default five.

# step, skip, wait_for and $failed.
. /workloads/steps.sh

if [ "$#" -eq 0 ]; then
    set -- solid:ff0000 hgrad vgrad random:1 checker:8
fi

step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
dmesg | grep -E "qxl|fbcon"
if [ -e /dev/fb0 ]; then
    step fbcon-off saffron-guest fbcon-off --kd graphics
    n=0
    for pattern in "$@"; do
        n=$((n + 1))
        step "fbfill-$n" saffron-guest fbfill --pattern "$pattern"
        step "fbhash-$n" saffron-guest fbhash
        step "sync-$n" saffron-guest sync --id "$n" --label "$pattern"
    done
else
    skip patterns no-fb0
fi
exit "$failed"
