#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# xorg: X.org on the qxl device (the X guest only: ci/build-guest --xorg).
# Loads qxl, waits for /dev/dri/card0, starts Xorg :0 with the qxl driver (xf86-video-qxl, which
# drives the device through the kernel driver's DRM ioctls) from a minimal xorg.conf (no input
# devices, no glx, no screen saver or DPMS), and waits until it answers a client; prints
#   SAFFRON-XORG started=1 start_ms=<from Xorg's launch to its first answer> mode=WxH
#                driver=<the DDX driving screen 0> kms=<1: xf86-video-qxl in its KMS mode>
# Then x11perf runs a few short tests (fills, window-to-window copies, text, image puts; about
# 5 s each under TCG), and a scene is put up that then holds still: an xterm with known text,
# xlogo, xcalc and xeyes on the root window (black, the server's default). After a pause it dumps
# the root window (xwd -root) and prints
#   saffron-guest xwd -> SAFFRON-XWDBAND y= rows= sha256= per 64 rows, then
#                        SAFFRON-XWD width= height= depth= ... sha256=<packed RGB of the dump>
#   saffron-guest sync -> SAFFRON-SYNC id=1 label=xorg, then waits (60 s) for "go".
# Then it stops the clients and the server. Prints SAFFRON-STEP after each step and exits 1 if
# any failed; on a failure Xorg's log is printed.
# $1 (saffron.args=): x11perf tests as one word joined by '+', e.g. rect100+copywinwin100;
# "none" for no x11perf run. Default: a small set.

tests=${1:-rect100+copywinwin100+ftext+putimage100}

# step, skip, wait_for and $failed.
# shellcheck source=tests/guest/workloads/steps.sh
. /workloads/steps.sh

# uptime_ms, write_conf, start_x (sets xpid), XLOG.
# shellcheck source=tests/guest/workloads/xorg/xorg-lib.sh
. /workloads/xorg-lib.sh

# perf: x11perf, one repetition of each test, each timed for 1 s; its result lines go to the
# console as they are.
perf() {
    [ "$tests" = none ] && return 0
    set --
    for t in $(echo "$tests" | tr '+' ' '); do
        set -- "$@" "-$t"
    done
    x11perf -repeat 1 -time 1 "$@"
}

# scene: clients that draw once and then hold still (no clock, no blinking cursor, the
# pointer never moves).
scene() {
    xterm -T xterm -geometry 58x9+24+24 -fg black -bg lightyellow +sb -e sh -c \
        'printf "Saffron X.org test\n\nThe quick brown fox jumps over the lazy dog\n0123456789 ~!@#$%%^&*()_+{}|:<>?\n"; exec sleep 100000' &
    xlogo -geometry 160x160+420+24 &
    xcalc -geometry +600+24 &
    xeyes -geometry 160x100+420+220 &
    # Up to 30 s for all four windows to be mapped (xwd -name finds a window by its name).
    for name in xterm xlogo Calculator xeyes; do
        i=0
        until xwd -name "$name" -silent -out /dev/null 2>/dev/null; do
            i=$((i + 1))
            if [ "$i" -gt 300 ]; then
                echo "SAFFRON-ERROR cmd=scene msg=no window $name"
                return 1
            fi
            saffron-guest settle --ms 100
        done
    done
}

step modprobe modprobe qxl
step wait-card0 wait_for /dev/dri/card0 20
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts 2>/dev/null
step conf write_conf
step xorg start_x
if [ -n "$xpid" ] && kill -0 "$xpid" 2>/dev/null; then
    step x11perf perf
    step scene scene
    step settle saffron-guest settle --ms 1000
    step xwd xwd -root -silent -out /tmp/root.xwd
    step xwd-hash saffron-guest xwd --file /tmp/root.xwd --bands 64
    step sync saffron-guest sync --id 1 --label xorg
else
    skip scene no-xorg
fi
if [ "$failed" != 0 ]; then
    echo "--- Xorg.0.log"
    cat "$XLOG" /tmp/Xorg.out 2>/dev/null
    echo "--- end of Xorg.0.log"
fi
grep -E '\(EE\)|\[KMS\]|initial mode|UXA' "$XLOG" 2>/dev/null | head -40
# shellcheck disable=SC2046
kill $(jobs -p) 2>/dev/null
[ -n "$xpid" ] && kill "$xpid" 2>/dev/null && wait "$xpid"
exit "$failed"
