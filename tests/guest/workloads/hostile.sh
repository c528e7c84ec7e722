#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# hostile: a guest that writes garbage into the QXL BARs and rings and pokes its I/O ports
# with no driver bound, then resets the device and checks that the real driver gets a working
# screen back.
#   saffron-guest hostile --seed S --rounds N  -> SAFFRON-HOSTILE seed= rounds= writes= ...
#   saffron-guest hostile --rounds 0 --reset yes -> the RESET port (SAFFRON-HOSTILE-RESET)
#   echo 1 > /sys/bus/pci/devices/<slot>/reset  -> a PCI function reset, if the kernel offers
#                                                 one (SAFFRON-HOSTILE-PCIRESET status=...)
#   modprobe qxl, wait for /dev/fb0, fbcon-off, then
#   saffron-guest fbfill --pattern solid:00ff00, fbhash, sync (the host's screendump).
# Runs every step, prints SAFFRON-STEP after each, and exits 1 if any failed.
# $1 (saffron.args): seed (default 1); $2: rounds (default 20000).

failed=0
seed=${1:-1}
rounds=${2:-20000}

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

# The device's slot: the first 1b36:0100 function.
slot=
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x1b36 ] && [ "$(cat "$d/device")" = 0x0100 ]; then
        slot=${d##*/}
        break
    fi
done
if [ -z "$slot" ]; then
    skip hostile no-device
    exit 1
fi

step hostile saffron-guest hostile --slot "$slot" --seed "$seed" --rounds "$rounds"
step reset-port saffron-guest hostile --slot "$slot" --rounds 0 --reset yes
if [ -e "/sys/bus/pci/devices/$slot/reset" ]; then
    if echo 1 >"/sys/bus/pci/devices/$slot/reset"; then
        echo "SAFFRON-HOSTILE-PCIRESET status=ok"
    else
        # Not every VMM offers a reset method for the function; the port reset above is the
        # one the driver itself uses.
        echo "SAFFRON-HOSTILE-PCIRESET status=fail"
    fi
else
    echo "SAFFRON-HOSTILE-PCIRESET status=absent"
fi

step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
dmesg | grep -E "qxl|fbcon"
if [ -e /dev/fb0 ]; then
    step fbcon-off saffron-guest fbcon-off --kd graphics
    step fbfill saffron-guest fbfill --pattern solid:00ff00
    step fbhash saffron-guest fbhash
    step sync saffron-guest sync --id 1 --label solid:00ff00
else
    skip patterns no-fb0
fi
exit "$failed"
