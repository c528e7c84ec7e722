#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# input: the guest's keyboard, mouse and tablet as the kernel's drivers report them.
# Loads qxl (a primary surface: absolute pointer positions are scaled to the screen's size),
# evdev (the /dev/input/event* interface), psmouse (QEMU's PS/2 mouse; the keyboard's atkbd
# and i8042 are built in), virtio_pci and virtio_input (QEMU's virtio tablet; virtio_pci is
# built into Debian 13's kernel), then runs
#   saffron-guest input --devices 3 --end-key 88 --timeout-ms 60000
# which prints SAFFRON-INPUTDEV node= name= types= [abs_x= abs_y=] per event device, then
# SAFFRON-SYNC id=input label=ready and waits for "go"; then SAFFRON-EV node= type= code= value=
# for every event until F12 (KEY_F12 = 88) has been released and the devices are quiet, and
# SAFFRON-INPUT end events=N (or fails when F12 has not come 60 s after the "go").
# Prints SAFFRON-STEP after each step and exits 1 if any failed.

# step, skip, wait_for and $failed.
. /workloads/steps.sh

# load MODULE: modprobe unless the module is built in (busybox modprobe does not know those).
load() {
    [ -d "/sys/module/$1" ] || modprobe "$1"
}

step modprobe-qxl load qxl
step modprobe-evdev load evdev
step modprobe-psmouse load psmouse
step modprobe-virtio-pci load virtio_pci
step modprobe-virtio-input load virtio_input
step wait-fb0 wait_for /dev/fb0 20
step input saffron-guest input --devices 3 --end-key 88 --timeout-ms 60000
exit "$failed"
