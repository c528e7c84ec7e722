#!/bin/sh
# qxl-video: what the video-stream test needs. Loads qxl and leaves the console's picture
# still while the host connects its client (sync label ready); then plays a 320x240 "video"
# (a view panning across a photograph, a new picture every frame) in the middle of a 1024x768
# KMS screen at 25 frames/s for 4 s (pausing after frame 60 for the host to screenshot the
# client while the stream is live: sync label playing frame=60), and holds the last frame (SAFFRON-KMS with its digest,
# sync label kms) while the host checks what the client ends up showing.
# $@ (saffron.args): the number of frames (default 100).

. /workloads/steps.sh

frames=${1:-100}
step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
step fbcon-off saffron-guest fbcon-off --kd graphics
step sync-ready saffron-guest sync --id 1 --label ready
step kms saffron-guest kms --width 1024 --height 768 --frames "$frames" --fps 25 \
    --motion video --hold-at 60 --hold-sync 3 --sync 2
exit "$failed"
