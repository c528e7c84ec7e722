#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# bench-qxl: display throughput through the stock qxl DRM driver, for ci/bench-qxl (which runs it
# on our device and on QEMU's own qxl-vga, and samples host CPU time around each phase).
# Loads qxl first thing and prints the kernel's "Initialized qxl" line at once (with `quiet` the
# kernel does not put it on the console itself; the host takes its time stamp when it sees it),
# waits for /dev/fb0, puts the VT in graphics mode so fbcon draws nothing, then runs phases
# bracketed by
#   SAFFRON-PHASE name=NAME begin / SAFFRON-PHASE name=NAME end
# printed by saffron-guest right around the timed work:
#   idle            2 s of nothing (the host's idle cost, for reference)
#   fb              saffron-guest fbbench: full-screen frames into /dev/fb0 (mmap + msync)
#                   -> SAFFRON-BENCH fb_frames= fb_fps= width= height= ...
#   fbcon           saffron-guest scroll: the VT back in text mode (fbcon-off --kd text), the
#                   cursor on the bottom row, then FBCON_LINES numbered text lines written to
#                   /dev/tty0 as fast as it takes them, each scrolling the console; the VT goes
#                   back to graphics mode afterwards
#                   -> SAFFRON-SCROLL lines= lines_per_s= ... (a "frame" is a line)
#   kms-WxH         saffron-guest kms: dumb buffer + DIRTYFB frames at WxH (half full-frame,
#                   half small clips) -> SAFFRON-KMS width= height= frames= fps= ... motion=bars
#   photo-WxH       saffron-guest kms --motion photo: a 320x240 photograph (smooth gradients and
#                   grain) moved 8 pixels right and down per frame over a plain WxH dumb buffer,
#                   DIRTYFB clips for its old and new place
#                   -> SAFFRON-KMS width= height= frames= fps= ... motion=photo
#   video-640x480   saffron-guest kms --motion video: VIDEO_FRAMES frames of a 640x480 "video"
#                   (a view panning across a photograph, a new picture every frame) in the
#                   middle of a 1024x768 KMS screen, paced at 30 frames/s
#                   -> SAFFRON-KMS width=1024 height=768 frames= fps= ... motion=video
#   latency         saffron-guest kms --interval-ms 200: LAT_FRAMES frames at 1024x768 (as in
#                   kms-WxH), each followed by 200 ms of sleep, so that the host can time each
#                   one from the device's NOTIFY_CMD to the client holding its last update
# and, in the X guest (ci/build-guest --xorg) with X_REPS > 0, an X.org desktop mix on the
# qxl driver (xf86-video-qxl; Xorg is started first, untimed):
#   x11perf         x11perf, X_REPS repetitions of each of fills, window-to-window copies,
#                   scrolls, core text and image puts (-reps: no calibration, a fixed amount
#                   of work) -> SAFFRON-XBENCH phase=x11perf ops= ms= ops_per_s=
#   xterm           an 80x40 xterm printing XTERM_LINES lines (each scrolls it) until it exits
#                   -> SAFFRON-XBENCH phase=xterm ops=<lines> ms= ops_per_s=
# A pause between phases lets the device drain the previous one before the next begins.
# Runs every step, prints SAFFRON-STEP after each, and exits 1 if any failed.
# saffron.args=FB_FRAMES,KMS_FRAMES,FBCON_LINES,PHOTO_FRAMES,PHOTO_SIZE,X_REPS,XTERM_LINES,
# LAT_FRAMES,VIDEO_FRAMES,WxH...: default 60,120,400,300,1024x768,0,0,0,0,1024x768,1920x1080
# (the WxH are the kms phases); FB_FRAMES, KMS_FRAMES, FBCON_LINES, PHOTO_FRAMES, X_REPS,
# XTERM_LINES, LAT_FRAMES or VIDEO_FRAMES 0 leaves that phase out.

fb_frames=${1:-60}
kms_frames=${2:-120}
fbcon_lines=${3:-400}
photo_frames=${4:-300}
photo_size=${5:-1024x768}
x_reps=${6:-0}
xterm_lines=${7:-0}
lat_frames=${8:-0}
video_frames=${9:-0}
if [ "$#" -gt 9 ]; then
    shift 9
else
    set --
fi
if [ "$#" -eq 0 ]; then
    set -- 1024x768 1920x1080
fi

# step, skip, wait_for and $failed.
. /workloads/steps.sh

# x_phase NAME OPS CMD...: runs CMD (an X client) as phase NAME, its output discarded, and
# prints how long it took for OPS operations.
x_phase() {
    x_name=$1
    x_ops=$2
    shift 2
    echo "SAFFRON-PHASE name=$x_name begin"
    x_t0=$(uptime_ms)
    "$@" >/dev/null 2>&1
    x_rc=$?
    x_ms=$(($(uptime_ms) - x_t0))
    echo "SAFFRON-PHASE name=$x_name end"
    [ "$x_ms" -gt 0 ] || x_ms=1
    echo "SAFFRON-XBENCH phase=$x_name ops=$x_ops ms=$x_ms ops_per_s=$(awk -v n="$x_ops" -v ms="$x_ms" 'BEGIN { printf "%.2f", 1000 * n / ms }')"
    return "$x_rc"
}

# idle_phase MS: a phase in which the guest does nothing.
idle_phase() {
    echo "SAFFRON-PHASE name=idle begin"
    saffron-guest settle --ms "$1"
    echo "SAFFRON-PHASE name=idle end"
}

step modprobe modprobe qxl
# One line, printed as soon as modprobe returns (the probe runs synchronously inside it).
echo "SAFFRON-QXL $(dmesg | grep -m 1 'Initialized qxl')"
step wait-fb0 wait_for /dev/fb0 20
dmesg | grep -E "qxl|fbcon"
if [ -e /dev/fb0 ]; then
    step fbcon-off saffron-guest fbcon-off --kd graphics
    # fbcon's first full-screen drawing is still on its way to the device: let it drain.
    step settle saffron-guest settle --ms 1000
    step idle idle_phase 2000
    step settle saffron-guest settle --ms 500
    if [ "$fb_frames" -gt 0 ]; then
        step fb saffron-guest fbbench --frames "$fb_frames" --phase fb
        step settle saffron-guest settle --ms 1000
    fi
    if [ "$fbcon_lines" -gt 0 ]; then
        # Back to text mode: fbcon redraws the whole console; let that drain first.
        step fbcon-text saffron-guest fbcon-off --kd text
        step settle saffron-guest settle --ms 1000
        step fbcon saffron-guest scroll --lines "$fbcon_lines" --phase fbcon
        step settle saffron-guest settle --ms 1000
        step fbcon-graphics saffron-guest fbcon-off --kd graphics
        step settle saffron-guest settle --ms 500
    fi
else
    skip fb no-fb0
fi
if [ -e /dev/dri/card0 ]; then
    [ "$kms_frames" -gt 0 ] || set --
    for size in "$@"; do
        w=${size%x*}
        h=${size#*x}
        step "kms-$size" saffron-guest kms --width "$w" --height "$h" --frames "$kms_frames" \
            --pattern hgrad --phase "kms-$size"
        step settle saffron-guest settle --ms 1000
    done
    if [ "$photo_frames" -gt 0 ]; then
        step "photo-$photo_size" saffron-guest kms --width "${photo_size%x*}" \
            --height "${photo_size#*x}" --frames "$photo_frames" --pattern solid:284058 \
            --motion photo --phase "photo-$photo_size"
        step settle saffron-guest settle --ms 1000
    fi
    if [ "$video_frames" -gt 0 ]; then
        step video-640x480 saffron-guest kms --width 1024 --height 768 --frames "$video_frames" \
            --fps 30 --pattern solid:202020 --motion video --video-width 640 --video-height 480 \
            --phase video-640x480
        step settle saffron-guest settle --ms 1000
    fi
    if [ "$lat_frames" -gt 0 ]; then
        step latency saffron-guest kms --width 1024 --height 768 --frames "$lat_frames" \
            --pattern hgrad --interval-ms 200 --phase latency
        step settle saffron-guest settle --ms 1000
    fi
else
    skip kms no-card0
fi
if [ "$x_reps" -gt 0 ] || [ "$xterm_lines" -gt 0 ]; then
    if [ -x /usr/lib/xorg/Xorg ]; then
        # uptime_ms, write_conf, start_x (sets xpid).
        . /workloads/xorg-lib.sh
        # Linux ignores VT switches away from a VT in graphics mode (VT_AUTO), and Xorg
        # switches to its own VT: text mode first.
        step x-text saffron-guest fbcon-off --kd text
        # xterm needs its pseudo-terminals.
        mkdir -p /dev/pts
        mount -t devpts devpts /dev/pts 2>/dev/null
        step xorg-conf write_conf
        step xorg start_x
        step settle saffron-guest settle --ms 1000
        if [ "$x_reps" -gt 0 ]; then
            step x11perf x_phase x11perf $((5 * x_reps)) x11perf -repeat 1 -reps "$x_reps" \
                -rect100 -copywinwin100 -scroll100 -ftext -putimage100
            step settle saffron-guest settle --ms 1000
        fi
        if [ "$xterm_lines" -gt 0 ]; then
            seq 1 "$xterm_lines" | sed 's/.*/scrolling line & of the xterm phase, padded out to 70 columns/' >/tmp/lines
            step xterm x_phase xterm "$xterm_lines" xterm -geometry 80x40+0+0 +sb -fg black \
                -bg white -e cat /tmp/lines
            step settle saffron-guest settle --ms 1000
        fi
        kill "$xpid" 2>/dev/null
        wait "$xpid" 2>/dev/null
    else
        skip x-desktop no-xorg-in-this-guest
    fi
fi
exit "$failed"
