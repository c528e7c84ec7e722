#!/bin/sh
# sound-play: the guest's virtio-sound card (saffron's vhost-user backend) plays the test
# chirp. Loads virtio_snd (trixie guest only; snd, snd_pcm, snd_timer and soundcore come with
# it) with a 320 ms buffer, waits for /dev/snd/pcmC0D0p, prints /proc/asound/cards as SAFFRON-SOUND-CARD lines,
# then runs
#   saffron-guest sound-play --sync-id sound --frames "${1:-144000}"
# which hands over to the host (SAFFRON-SYNC id=sound label=sound-ready, the host links its
# playback client and answers "go"), plays the chirp and prints SAFFRON-SOUND-PLAY.
# Prints SAFFRON-STEP after each step and exits 1 if any failed.

# step, skip, wait_for and $failed.
. /workloads/steps.sh

# A 320 ms ring buffer (the driver's default is 160 ms): a TCG guest on a busy host can stall
# for longer than 160 ms, and an underrun fails the play step.
step modprobe-virtio-snd modprobe virtio_snd pcm_buffer_ms=320
step wait-pcm wait_for /dev/snd/pcmC0D0p 20
if [ -e /proc/asound/cards ]; then
    while read -r line; do
        [ -n "$line" ] && echo "SAFFRON-SOUND-CARD line=$(echo "$line" | tr ' ' '_')"
    done </proc/asound/cards
fi
if [ -e /dev/snd/pcmC0D0p ]; then
    step play saffron-guest sound-play --sync-id sound --frames "${1:-144000}"
else
    skip play no-pcm
fi
exit "$failed"
