#!/bin/sh
# sound-record: the guest's virtio-sound card captures what a Spice client's record channel
# sends. Loads virtio_snd (trixie guest only) with a 320 ms buffer, waits for
# /dev/snd/pcmC0D0c, then runs
#   saffron-guest sound-capture --sync-id record --frames 48000 --skip-frames 24000
# which hands over to the host (SAFFRON-SYNC id=record label=capture-ready: the host links its
# record channel and starts sending), captures 1.5 s, and prints SAFFRON-SOUND-CAPTURE with the
# dominant frequency of its last second.
# Prints SAFFRON-STEP after each step and exits 1 if any failed.

# step, skip, wait_for and $failed.
. /workloads/steps.sh

step modprobe-virtio-snd modprobe virtio_snd pcm_buffer_ms=320
step wait-pcm wait_for /dev/snd/pcmC0D0c 20
if [ -e /dev/snd/pcmC0D0c ]; then
    step capture saffron-guest sound-capture --sync-id record --frames 48000 --skip-frames 24000
else
    skip capture no-pcm
fi
exit "$failed"
