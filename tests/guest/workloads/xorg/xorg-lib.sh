#!/bin/sh
# xorg-lib.sh: what the X guest's workloads share (`. /workloads/xorg-lib.sh`): the minimal
# xorg.conf and starting Xorg :0 on the qxl driver. Run on its own it only defines them.

export DISPLAY=:0
XLOG=/tmp/Xorg.0.log

# uptime_ms: the guest's uptime in milliseconds.
uptime_ms() {
    read -r up _ </proc/uptime
    echo $((${up%.*} * 1000 + 10 * ${up#*.}))
}

write_conf() {
    cat >/tmp/xorg.conf <<'CONF'
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AutoEnableDevices" "false"
    Option "AutoAddGPU" "false"
    Option "BlankTime" "0"
    Option "StandbyTime" "0"
    Option "SuspendTime" "0"
    Option "OffTime" "0"
EndSection
Section "Module"
    Disable "glx"
EndSection
Section "Device"
    Identifier "qxl"
    Driver "qxl"
EndSection
Section "Screen"
    Identifier "screen"
    Device "qxl"
    DefaultDepth 24
EndSection
CONF
}

# start_x: launches Xorg in the background and waits (up to 120 s) until a client gets an
# answer (xwd of a 1x1 corner); prints SAFFRON-XORG.
start_x() {
    t0=$(uptime_ms)
    /usr/lib/xorg/Xorg :0 -config /tmp/xorg.conf -logfile "$XLOG" -nolisten tcp -noreset \
        -novtswitch -s 0 -dpms vt2 </dev/null >/tmp/Xorg.out 2>&1 &
    xpid=$!
    i=0
    while [ "$i" -lt 1200 ]; do
        if ! kill -0 "$xpid" 2>/dev/null; then
            echo "SAFFRON-ERROR cmd=xorg msg=Xorg exited"
            return 1
        fi
        if xwd -root -silent -out /dev/null 2>/dev/null; then
            mode=$(sed -n 's/.*Output Virtual-[0-9]* using initial mode \([0-9x]*\).*/\1/p' "$XLOG" | head -1)
            driver=$(sed -n 's/.*(II) \([a-z]*\)(0): Depth 24.*/\1/p; s/.*(\*\*) \([a-z]*\)(0): Depth 24.*/\1/p' "$XLOG" | head -1)
            kms=0
            grep -q 'Kernel modesetting enabled' "$XLOG" && kms=1
            echo "SAFFRON-XORG started=1 start_ms=$(($(uptime_ms) - t0)) mode=${mode:-unknown} driver=${driver:-unknown} kms=$kms"
            return 0
        fi
        saffron-guest settle --ms 100
        i=$((i + 1))
    done
    echo "SAFFRON-ERROR cmd=xorg msg=no answer from Xorg after 120 s"
    return 1
}

