#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# qxl-fbcon: the kernel's own text console (fbcon on qxldrmfb) drawing through our device.
# Loads qxl, waits for /dev/fb0, prints the kernel's qxl/fbcon lines, stops the cursor blink and
# hides the cursor (the VT stays in text mode), clears the screen and prints known lines on
# /dev/tty0, waits 1 s for the deferred flush, then
#   saffron-guest fbhash -> SAFFRON-FB ... format=rgb ... sha256=<what fbcon drew>
#   saffron-guest sync   -> SAFFRON-SYNC id=1 label=fbcon, then waits (60 s) for "go".
# Prints SAFFRON-STEP after each step and exits 1 if any failed.

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

# show_text: clears the foreground VT and writes fixed lines (the same bytes every run).
show_text() {
    printf '\033[2J\033[H' >/dev/tty0 || return 1
    printf 'Saffron fbcon test\n' >/dev/tty0 &&
        printf 'The quick brown fox jumps over the lazy dog 0123456789\n' >/dev/tty0 &&
        printf '\033[1;31mred\033[0m \033[1;32mgreen\033[0m \033[1;34mblue\033[0m\n' >/dev/tty0 &&
        printf '%s\n' '~!@#$%^&*()_+{}|:"<>?`-=[]\;,./' >/dev/tty0
}

step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
dmesg | grep -E "qxl|fbcon"
if [ -e /dev/fb0 ]; then
    step fbcon-off saffron-guest fbcon-off
    step text show_text
    step settle saffron-guest settle --ms 1000
    step fbhash saffron-guest fbhash
    step sync saffron-guest sync --id 1 --label fbcon
else
    skip fbcon no-fb0
fi
exit "$failed"
