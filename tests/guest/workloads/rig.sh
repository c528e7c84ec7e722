#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# rig: the device smoke test. Enumerates the device, checks BAR0 reads and writes, rings the LOG
# port, binds uio_pci_generic and checks INTx delivery, then writes BAR0 at speed (the host
# checks afterwards that the BAR is still mapped).
# Runs every step even after a failure, prints SAFFRON-STEP after each, and exits 1 if any failed.
# $1 (saffron.args): MiB for the closing BAR0 copy, default 32; 0 leaves it out (with real INTx
# under TCG, QEMU traps the BAR after the first interrupt and a copy would take hours).

memcpy_mib=${1:-32}

# step, skip, wait_for and $failed.
. /workloads/steps.sh

# find_slot: prints the sysfs name of the first 1b36:0100 function (same order as saffron-guest).
find_slot() {
    for fs_dev in /sys/bus/pci/devices/*; do
        [ "$(cat "$fs_dev/vendor" 2>/dev/null)" = 0x1b36 ] || continue
        [ "$(cat "$fs_dev/device" 2>/dev/null)" = 0x0100 ] || continue
        echo "${fs_dev##*/}"
        return 0
    done
    return 1
}

# bind_uio: binds the device to uio_pci_generic and sets uio_dev to its /dev node.
# uio_pci_generic refuses (with a dmesg line) a device that does not support PCI 2.3 INTx masking.
uio_dev=
bind_uio() {
    if ! uio_slot=$(find_slot); then
        echo "SAFFRON-ERROR cmd=uio msg=no 1b36:0100 device in /sys/bus/pci/devices"
        return 1
    fi
    uio_sys=/sys/bus/pci/devices/$uio_slot
    if ! modprobe uio_pci_generic; then
        echo "SAFFRON-ERROR cmd=uio msg=modprobe uio_pci_generic failed"
        return 1
    fi
    # new_id makes the driver probe every matching device that has no driver yet; it fails with
    # EEXIST if the id was added before, which is harmless.
    echo "1b36 0100" > /sys/bus/pci/drivers/uio_pci_generic/new_id 2>/dev/null
    if sleep 0.1 2>/dev/null; then
        uio_tick=0.1
        uio_ticks=100
    else
        uio_tick=1
        uio_ticks=10
    fi
    uio_i=0
    while [ "$uio_i" -lt "$uio_ticks" ]; do
        for uio_entry in "$uio_sys"/uio/uio*; do
            [ -e "$uio_entry" ] || continue
            uio_name=${uio_entry##*/}
            # devtmpfs creates the node; without it, make one from the sysfs major:minor.
            if [ ! -e "/dev/$uio_name" ] && [ -r "$uio_entry/dev" ]; then
                uio_mm=$(cat "$uio_entry/dev")
                mknod "/dev/$uio_name" c "${uio_mm%%:*}" "${uio_mm##*:}" 2>/dev/null
            fi
            if [ -e "/dev/$uio_name" ]; then
                uio_dev=/dev/$uio_name
                echo "SAFFRON-UIO bound=1 dev=$uio_dev slot=$uio_slot"
                return 0
            fi
        done
        sleep "$uio_tick"
        uio_i=$((uio_i + 1))
    done
    uio_driver=none
    if [ -L "$uio_sys/driver" ]; then
        uio_driver=$(readlink "$uio_sys/driver")
        uio_driver=${uio_driver##*/}
    fi
    echo "SAFFRON-UIO bound=0 slot=$uio_slot driver=$uio_driver"
    echo "SAFFRON-ERROR cmd=uio msg=no uio device for $uio_slot after 10 s (driver=$uio_driver)"
    dmesg | tail -n 20
    return 1
}

step find saffron-guest find
step bar-rw saffron-guest bar-rw --read-off 0x100000 --read-len 0x100000 \
    --write-off 0x200000 --write-len 0x100000 --seed 0x5AFF0001
step log saffron-guest log --text "hello from the guest" --count 16
step uio bind_uio
if [ -n "$uio_dev" ]; then
    step irq saffron-guest irq --count 20 --uio "$uio_dev"
else
    skip irq no-uio-device
fi
if [ "$memcpy_mib" -gt 0 ]; then
    step bench-memcpy saffron-guest bench-memcpy --mib "$memcpy_mib"
else
    echo "SAFFRON-STEP name=bench-memcpy status=skip rc=- why=not-asked"
fi
exit "$failed"
