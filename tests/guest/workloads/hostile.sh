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

# step, skip, wait_for and $failed.
. /workloads/steps.sh
seed=${1:-1}
rounds=${2:-20000}

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
