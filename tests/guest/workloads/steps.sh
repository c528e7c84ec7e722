#!/bin/sh
# steps.sh: helpers the workloads source (`. /workloads/steps.sh`): each step prints
# SAFFRON-STEP with its status, and `failed` becomes 1 when one fails, so a workload runs every
# step and exits with "$failed". Run on its own it only defines them.

failed=0

# step NAME CMD...: runs CMD and reports its status.
step() {
    step_name=$1
    shift
    "$@"
    step_rc=$?
    if [ "$step_rc" -eq 0 ]; then
        echo "SAFFRON-STEP name=$step_name status=ok rc=0"
    else
        echo "SAFFRON-STEP name=$step_name status=fail rc=$step_rc"
        failed=1
    fi
}

# skip NAME WHY: reports a step that could not run; counts as a failure.
skip() {
    echo "SAFFRON-STEP name=$1 status=skip rc=- why=$2"
    failed=1
}

# wait_for PATH SECONDS: waits for PATH to exist, polling ten times a second.
wait_for() {
    wait_i=0
    while [ "$wait_i" -lt $(($2 * 10)) ]; do
        [ -e "$1" ] && return 0
        saffron-guest settle --ms 100
        wait_i=$((wait_i + 1))
    done
    [ -e "$1" ] && return 0
    echo "SAFFRON-ERROR cmd=wait msg=no $1 after $2 s"
    return 1
}

# scroll_text: 120 distinct lines on the console, so fbcon scrolls again and again.
scroll_text() {
    i=0
    while [ "$i" -lt 120 ]; do
        printf 'line %d: the quick brown fox jumps over the lazy dog %d\n' "$i" $((i * i)) >/dev/tty0 ||
            return 1
        i=$((i + 1))
    done
}

# scroll_slowly N: N more lines, 100 ms apart, so that each one reaches the device as a
# scroll of its own (what a terminal shows as someone types, rather than a burst).
scroll_slowly() {
    i=0
    while [ "$i" -lt "$1" ]; do
        printf 'slow line %d: pack my box with five dozen liquor jugs\n' "$i" >/dev/tty0 ||
            return 1
        saffron-guest settle --ms 100
        i=$((i + 1))
    done
}
