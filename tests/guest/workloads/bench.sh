#!/bin/sh
# bench: throughput of the two guest->device paths (BAR0 stores, I/O-port writes).
# Runs every step even after a failure, prints SAFFRON-STEP after each, and exits 1 if any failed.

# step, skip, wait_for and $failed.
. /workloads/steps.sh

step find saffron-guest find
step bench-memcpy saffron-guest bench-memcpy --mib 128
step bench-ioport saffron-guest bench-ioport --count 2000
exit "$failed"
