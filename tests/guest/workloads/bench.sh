#!/bin/sh
# bench: throughput of the two guest->device paths (BAR0 stores, I/O-port writes).
# Runs every step even after a failure, prints SAFFRON-STEP after each, and exits 1 if any failed.

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

step find saffron-guest find
step bench-memcpy saffron-guest bench-memcpy --mib 128
step bench-ioport saffron-guest bench-ioport --count 2000
exit "$failed"
