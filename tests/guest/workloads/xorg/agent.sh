#!/bin/sh
# The helpers below are called through step's "$@", which shellcheck cannot follow.
# shellcheck disable=SC2317
# agent: the Spice guest agent in the X guest (ci/build-guest --xorg), clipboard both ways.
# Starts Xorg :0 on the qxl driver, loads virtio_console and uinput, makes the link udev would
# make (/dev/virtio-ports/com.redhat.spice.0), starts spice-vdagentd (foreground, no
# systemd/ConsoleKit session integration) and the X session agent spice-vdagent, then:
#   saffron-guest sync label=no-agent (before the agents start): the host checks INIT says so;
#   saffron-guest sync label=agent-up: the host connects remote-viewer and waits for the agent;
#   host to guest, per kind in $2 (a '+'-joined list of MIME types, one per round):
#     sync label=h2g-N: the host puts its clipboard; after "go" the guest polls
#     `xclip -o -selection clipboard -t TYPE` until it returns something other than the
#     previous round and prints
#       SAFFRON-CLIP dir=h2g n=N type=TYPE status=ok bytes= sha256= ms=<from go>
#     (status=none after the timeout: nothing came);
#   then sync label=agent-restart, both agents are stopped and started again (spice-vdagentd
#   closes and reopens the port) and sync label=agent-restarted: the host waits for the new agent, resets the agent
#   link on its side (QEMU's chardev reconnects) and waits for it again;
#   guest to host, per size in $3 ('+'-joined byte counts), see below; then sync label=xfer:
#   the host sends a file through the agent (FILE_XFER_*), and the guest prints
#     SAFFRON-XFER name= bytes= sha256= per file the session agent saved in /tmp/xfer;
#   guest to host:
#     the guest sets its clipboard to that many bytes of agent_text (below) with xclip and
#     prints SAFFRON-CLIP dir=g2h n=N status=set bytes= sha256=, then sync label=g2h-N: the
#     host reads its own clipboard.
# $1: "copy" (rounds wait up to 120 s) or "nocopy" (the server drops the clipboard: rounds
# wait 6 s and expect nothing), or "resize": after agent-up only sync label=resized (the host
# waits for X to take remote-viewer's window size), then xwd -root's size (SAFFRON-XWD), then,
# in the same session, the client mouse mode: saffron-guest input on every event device once
# spice-vdagentd's uinput tablet is there (its sync label=ready; the host presses F12 to end).
# Prints SAFFRON-STEP per step; on a failure the agents' and Xorg's logs.

agent_mode=${1:-copy}
h2g_types=${2:-text/plain}
g2h_sizes=${3:-1024}

# step, skip, wait_for and $failed.
# shellcheck source=tests/guest/workloads/steps.sh
. /workloads/steps.sh
# uptime_ms, write_conf, start_x (sets xpid), XLOG.
# shellcheck source=tests/guest/workloads/xorg/xorg-lib.sh
. /workloads/xorg-lib.sh

timeout=120
[ "$agent_mode" = nocopy ] && timeout=6
extra=/lib/modules/$(uname -r)/extra

# agent_modules: the virtio console (the port) and uinput (spice-vdagentd's pointer).
agent_modules() {
    modprobe virtio_pci || return 1
    insmod "$extra/virtio_console.ko" || return 1
    insmod "$extra/uinput.ko" || return 1
}

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
            echo "SAFFRON-AGENTPORT dev=/dev/$dev"
            return 0
        done
        saffron-guest settle --ms 100
        i=$((i + 1))
    done
    echo "SAFFRON-ERROR cmd=agent-port msg=no virtio port named com.redhat.spice.0"
    return 1
}

# start_agents: the daemon (it opens the port and announces itself to the server) and the
# X session agent (it connects to the daemon's socket and owns the clipboard for the client).
start_agents() {
    mkdir -p /run/spice-vdagentd
    spice-vdagentd -x -X -d >/tmp/vdagentd.log 2>&1 &
    vdpid=$!
    wait_for /run/spice-vdagentd/spice-vdagent-sock 30 || return 1
    mkdir -p /tmp/xfer
    NO_AT_BRIDGE=1 HOME=/root spice-vdagent -x -d -f /tmp/xfer -o 0 >/tmp/vdagent.log 2>&1 &
    vspid=$!
    saffron-guest settle --ms 2000
    kill -0 "$vdpid" && kill -0 "$vspid"
}

# agent_tablet: waits for spice-vdagentd's uinput tablet (made once the session agent has
# told it the screen's size) and sets ndev to the number of event devices then.
agent_tablet() {
    modprobe evdev 2>/dev/null
    i=0
    while [ "$i" -lt 300 ]; do
        if grep -q 'spice vdagent tablet' /proc/bus/input/devices 2>/dev/null; then
            saffron-guest settle --ms 500
            ndev=$(find /dev/input -name 'event*' | wc -l)
            echo "SAFFRON-AGENTTABLET devices=$ndev"
            return 0
        fi
        saffron-guest settle --ms 100
        i=$((i + 1))
    done
    echo "SAFFRON-ERROR cmd=agent-tablet msg=no spice vdagent tablet after 30 s"
    return 1
}

# restart_agents: both agents stop (the daemon closes the port) and start again.
restart_agents() {
    kill "$vspid" "$vdpid" 2>/dev/null
    wait "$vspid" "$vdpid" 2>/dev/null
    rm -f /run/spice-vdagentd/spice-vdagent-sock
    start_agents
}

# xfer_files: what file transfers left in /tmp/xfer (the session agent's save directory).
xfer_files() {
    for f in /tmp/xfer/*; do
        [ -f "$f" ] || continue
        echo "SAFFRON-XFER name=$(basename "$f") bytes=$(wc -c <"$f") sha256=$(sha256sum "$f" | cut -d' ' -f1)"
    done
}

# agent_text BYTES: BYTES bytes of a fixed line, repeated (the host makes the same bytes).
agent_text() {
    yes 'Saffron guest clipboard: 0123456789 abcdefghijklmnopqrstuvwxyz.' | head -c "$1"
}

prev=
# h2g N TYPE: one host-to-guest round.
h2g() {
    saffron-guest sync --id "$((10 + $1))" --label "h2g-$1"
    t0=$(uptime_ms)
    while :; do
        if xclip -o -selection clipboard -t "$2" >/tmp/h2g 2>/dev/null && [ -s /tmp/h2g ]; then
            sum=$(sha256sum /tmp/h2g | cut -d' ' -f1)
            [ "$sum" != "$prev" ] && break
        fi
        ms=$(($(uptime_ms) - t0))
        if [ "$ms" -gt $((timeout * 1000)) ]; then
            echo "SAFFRON-CLIP dir=h2g n=$1 type=$2 status=none ms=$ms"
            [ "$agent_mode" = nocopy ]
            return
        fi
        saffron-guest settle --ms 200
    done
    prev=$sum
    echo "SAFFRON-CLIP dir=h2g n=$1 type=$2 status=ok bytes=$(wc -c </tmp/h2g) sha256=$sum ms=$(($(uptime_ms) - t0))"
    [ "$agent_mode" = copy ]
}

# g2h N BYTES: one guest-to-host round.
g2h() {
    agent_text "$2" >"/tmp/g2h-$1"
    # xclip serves the selection from the background until another owner takes it.
    xclip -i -selection clipboard "/tmp/g2h-$1" || return 1
    echo "SAFFRON-CLIP dir=g2h n=$1 status=set bytes=$(wc -c <"/tmp/g2h-$1") sha256=$(sha256sum "/tmp/g2h-$1" | cut -d' ' -f1)"
    saffron-guest sync --id "$((20 + $1))" --label "g2h-$1"
}

step modprobe modprobe qxl
step wait-card0 wait_for /dev/dri/card0 20
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts 2>/dev/null
step conf write_conf
step xorg start_x
step agent-modules agent_modules
step agent-port agent_port
# Before the agents start, the host sees a server without an agent.
step no-agent saffron-guest sync --id 2 --label no-agent
step agents start_agents
if [ "$failed" = 0 ] && [ "$agent_mode" = resize ]; then
    # The client's window size reaches X through the agent (xrandr by spice-vdagent).
    step agent-up saffron-guest sync --id 1 --label agent-up
    step resized saffron-guest sync --id 5 --label resized
    step xwd xwd -root -silent -out /tmp/root.xwd
    step xwd-size saffron-guest xwd --file /tmp/root.xwd
    # What spice-vdagentd made of the monitors configs it got.
    echo "SAFFRON-AGENTLOG monitors_configs=$(grep -c 'monitors config' /tmp/vdagent.log) invalid=$(grep -c 'invalid message size for VDAgentMonitorsConfig' /tmp/vdagentd.log)"
    # The client mouse mode through the agent: spice-vdagentd's own uinput tablet reports the
    # client's pointer (the host moves it in remote-viewer, then presses F12 to end).
    step agent-tablet agent_tablet
    step input saffron-guest input --devices "$ndev" --end-key 88 --timeout-ms 60000
elif [ "$failed" = 0 ]; then
    step agent-up saffron-guest sync --id 1 --label agent-up
    n=1
    for t in $(echo "$h2g_types" | tr '+' ' '); do
        step "h2g-$n" h2g "$n" "$t"
        n=$((n + 1))
    done
    step agent-restart saffron-guest sync --id 4 --label agent-restart
    step agents-restart restart_agents
    step agent-restarted saffron-guest sync --id 3 --label agent-restarted
    n=1
    for b in $(echo "$g2h_sizes" | tr '+' ' '); do
        step "g2h-$n" g2h "$n" "$b"
        n=$((n + 1))
    done
    step xfer saffron-guest sync --id 30 --label xfer
    step xfer-files xfer_files
    step done saffron-guest sync --id 99 --label done
else
    skip clipboard setup-failed
fi
if [ "$failed" != 0 ]; then
    for f in /tmp/vdagentd.log /tmp/vdagent.log "$XLOG"; do
        echo "--- $f"
        tail -n 60 "$f" 2>/dev/null
    done
    echo "--- end of logs"
fi
# shellcheck disable=SC2046
kill $(jobs -p) 2>/dev/null
killall xclip 2>/dev/null
[ -n "$xpid" ] && kill "$xpid" 2>/dev/null && wait "$xpid"
exit "$failed"
