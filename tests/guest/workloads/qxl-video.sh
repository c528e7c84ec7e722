#!/bin/sh
# qxl-video: what the video-stream tests need. Loads qxl and leaves the console's picture
# still while the host connects its clients (sync label ready); then plays a "video" (a view
# panning across a photograph, a new picture every frame; 320x240 at 25 frames/s for 4 s by
# default) in the middle of a 1024x768 KMS screen, pausing after frame 60 for the host to
# look at its clients while the stream is live (sync label playing frame=60), and holds the
# last frame (SAFFRON-KMS with its digest, sync label kms) while the host checks what the
# clients end up showing.
# $@ (saffron.args): the number of frames (default 100), the video window's width and height
# (default 320 240), its frames per second (default 25), and the frame from which a pop-up
# lies over the video's top-right corner (none by default).

. /workloads/steps.sh

frames=${1:-100}
vw=${2:-320}
vh=${3:-240}
fps=${4:-25}
# A pop-up over the video's corner from this frame on (kms --overlay-at), when given.
overlay=${5:-}
step modprobe modprobe qxl
step wait-fb0 wait_for /dev/fb0 20
step fbcon-off saffron-guest fbcon-off --kd graphics
step sync-ready saffron-guest sync --id 1 --label ready
step kms saffron-guest kms --width 1024 --height 768 --frames "$frames" --fps "$fps" \
    --motion video --video-width "$vw" --video-height "$vh" --hold-at 60 --hold-sync 3 --sync 2 \
    ${overlay:+--overlay-at "$overlay"}
exit "$failed"
