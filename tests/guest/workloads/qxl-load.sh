#!/bin/sh
# qxl-load: loads the stock qxl DRM driver and prints what the kernel says about it. The host
# checks for "Initialized qxl" and "fbcon: qxldrmfb (fb0) is primary device", and looks at the
# device's own state (memslots, primary surface, async completions, no guest bug).
modprobe qxl || exit 1
i=0
while [ ! -e /dev/fb0 ] && [ "$i" -lt 40 ]; do
    sleep 0.5
    i=$((i + 1))
done
# Let fbcon's first full-screen update reach the device.
sleep 2
dmesg | grep -E "qxl|fbcon|\[drm\]"
[ -e /dev/fb0 ] && [ -e /dev/dri/card0 ]
