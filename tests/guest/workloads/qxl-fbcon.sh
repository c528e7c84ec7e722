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

# step, skip, wait_for and $failed.
. /workloads/steps.sh

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
