#!/bin/sh
# heads: N monitors lit from a client's N-head layout, with no X and no agent.
# $1 (saffron.args=N): how many heads, default 2.
# Loads qxl (KMS, fbcon), then:
#   sync label=ready: the host's client sends an N-head monitors config; the device writes it
#   into the ROM and raises CLIENT_MONITORS_CONFIG; the qxl driver re-reads it and reports
#   its other connectors connected;
#   `saffron-guest heads --count N` waits for N connectors, scans out one buffer per head
#   (the driver lays them side by side on one primary surface and sends its monitors config),
#   prints each head's digest (SAFFRON-HEAD) and holds them at sync label=heads, where the
#   host compares what its client got for each head.

# step, skip, wait_for and $failed.
# shellcheck source=tests/guest/workloads/steps.sh
. /workloads/steps.sh

step modprobe modprobe qxl
step wait-card wait_for /dev/dri/card0 20
step sync-ready saffron-guest sync --id 1 --label ready
step heads saffron-guest heads --count "${1:-2}" --wait-ms 30000 --sync 2
exit "$failed"
