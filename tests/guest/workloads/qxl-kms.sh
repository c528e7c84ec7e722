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

width=${1:-1024}
height=${2:-768}
frames=${3:-60}

failed=0

# step NAME CMD...: runs CMD and reports its status.
step() {
    step_name=$1
    shift
    "$@"
    step_rc=$?
    if [ "$step_rc" -eq 0 ]; then
        echo "SAFFRON-STEP name=$step_name status=ok rc=0"
    else
        echo "SAFFRON-STEP name=$step_name status=fail rc=$step_rc"
        failed=1
    fi
}

# skip NAME WHY: reports a step that could not run; counts as a failure.
skip() {
    echo "SAFFRON-STEP name=$1 status=skip rc=- why=$2"
    failed=1
}

# wait_for PATH SECONDS: waits for PATH to exist, polling ten times a second.
wait_for() {
    wait_i=0
    while [ "$wait_i" -lt $(($2 * 10)) ]; do
        [ -e "$1" ] && return 0
        saffron-guest settle --ms 100
        wait_i=$((wait_i + 1))
    done
    [ -e "$1" ] && return 0
    echo "SAFFRON-ERROR cmd=wait msg=no $1 after $2 s"
    return 1
}

step modprobe modprobe qxl
step wait-card0 wait_for /dev/dri/card0 20
dmesg | grep -E "qxl|fbcon"
if [ -e /dev/dri/card0 ]; then
    # fbcon cannot reach a CRTC another master owns, but in KD_GRAPHICS it does not even try.
    if [ -e /dev/fb0 ]; then
        step fbcon-off saffron-guest fbcon-off --kd graphics
    fi
    step kms saffron-guest kms --width "$width" --height "$height" --frames "$frames" \
        --pattern hgrad --sync 1
else
    skip kms no-card0
fi
exit "$failed"
