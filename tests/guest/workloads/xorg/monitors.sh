#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# monitors: the client's monitors config through the QXL ROM, with no agent acting on it.
# Runs no X and no spice-vdagent: loads qxl (KMS, fbcon) and virtio_console, makes the port
# link udev would make, and starts `saffron-guest agent-stub`, which only answers capability
# requests (a client sends monitors configs only while an agent is connected) and prints what
# it got. Then:
#   sync label=agent-up: the host starts remote-viewer full screen on an X screen of another
#   size than the guest's; its monitors config reaches the device, which writes it into the
#   ROM and raises CLIENT_MONITORS_CONFIG; the qxl driver re-reads it and reports a hotplug;
#   the guest waits (up to 60 s) for its connector's preferred mode to change
#   (SAFFRON-MODES before= after= ms=), then does what a compositor does on such a hotplug:
#   `saffron-guest kms` sets the (new) preferred mode and holds its frame at sync label=kms,
#   where the host compares remote-viewer's picture with the guest's.
# $1 = twice: then the host resizes remote-viewer's window (sync id 2), and the guest follows
#   the next change the same way (SAFFRON-MODES, kms at sync id 3).

# step, skip, wait_for and $failed.
# shellcheck source=tests/guest/workloads/steps.sh
. /workloads/steps.sh

extra=/lib/modules/$(uname -r)/extra

# agent_port: the link udev would make for the named port.
agent_port() {
    i=0
    while [ "$i" -lt 200 ]; do
        for d in /sys/class/virtio-ports/*; do
            [ -f "$d/name" ] || continue
            [ "$(cat "$d/name")" = com.redhat.spice.0 ] || continue
            dev=$(basename "$d")
            wait_for "/dev/$dev" 10 || return 1
            mkdir -p /dev/virtio-ports
            ln -sf "../$dev" /dev/virtio-ports/com.redhat.spice.0
            return 0
        done
        saffron-guest settle --ms 100
        i=$((i + 1))
    done
    echo "SAFFRON-ERROR cmd=agent-port msg=no virtio port named com.redhat.spice.0"
    return 1
}

# preferred: the first mode the qxl connector lists (the kernel sorts the preferred first).
preferred() {
    for f in /sys/class/drm/card0-*/modes; do
        head -n 1 "$f"
        return 0
    done
    return 1
}

# follow: waits for the preferred mode to change from $before.
follow() {
    i=0
    while [ "$i" -lt 600 ]; do
        now=$(preferred)
        if [ -n "$now" ] && [ "$now" != "$before" ]; then
            echo "SAFFRON-MODES before=$before after=$now ms=$((i * 100))"
            return 0
        fi
        saffron-guest settle --ms 100
        i=$((i + 1))
    done
    echo "SAFFRON-ERROR cmd=follow msg=the preferred mode stayed $before for 60 s"
    return 1
}

step modprobe modprobe qxl
step wait-card wait_for /dev/dri/card0 20
step virtio modprobe virtio_pci
step virtio-console insmod "$extra/virtio_console.ko"
step agent-port agent_port
saffron-guest agent-stub --seconds 600 &
before=$(preferred)
echo "SAFFRON-MODES before=$before"
step sync-up saffron-guest sync --id 1 --label agent-up
step follow follow
step kms saffron-guest kms --frames 2 --motion bars --sync 2
if [ "$1" = twice ]; then
    # The host resizes the client's window while the first frame was held: follow again,
    # from the mode the first follow saw (the new one may already be there).
    before=$now
    step follow-2 follow
    step kms-2 saffron-guest kms --frames 2 --motion bars --sync 3
fi
exit "$failed"
