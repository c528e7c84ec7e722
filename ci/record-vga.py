#!/usr/bin/env python3
"""Drives one QEMU VGA recording for ci/record-vga: waits for a guest state, types commands
on the serial console, then stops the VM and takes QEMU's own screendump through QMP.

  record-vga.py QMP_SOCKET SERIAL_SOCKET OUT_PNG [--wait TEXT] [--settle S] [--send LINE]...

--wait TEXT   wait until the serial console has printed TEXT (default: do not wait)
--send LINE   type LINE + newline on the serial console (after --wait), in order
--settle S    seconds to let the guest finish drawing before the VM is stopped (default 3)
--timeout S   give up after S seconds waiting for --wait (default 300)
--vram FILE   also save the VGA's whole video memory (its PCI BAR 0, found with query-pci)
              with pmemsave: writes that went to RAM (VBE linear framebuffer, chain-4)
              are not in the trace
"""
import argparse
import json
import socket
import sys
import time


def connect(path, timeout=30.0):
    deadline = time.time() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.time() > deadline:
                raise
            time.sleep(0.1)


class Qmp:
    def __init__(self, path):
        self.f = connect(path).makefile("rw")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "error" in reply:
                raise RuntimeError(f"{name}: {reply['error']}")
            if "return" in reply:
                return reply["return"]


def vga_bar0(qmp):
    """BAR 0 (the video memory) of QEMU's std VGA, PCI ID 1234:1111."""
    for bus in qmp.cmd("query-pci"):
        for dev in bus["devices"]:
            if dev["id"]["vendor"] == 0x1234 and dev["id"]["device"] == 0x1111:
                for region in dev["regions"]:
                    if region["bar"] == 0:
                        return region
    sys.exit("no std VGA (1234:1111) with a BAR 0 in query-pci")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("qmp")
    p.add_argument("serial")
    p.add_argument("out")
    p.add_argument("--wait")
    p.add_argument("--send", action="append", default=[])
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--vram")
    a = p.parse_args()

    qmp = Qmp(a.qmp)
    ser = connect(a.serial)
    ser.settimeout(0.5)
    seen = b""
    if a.wait:
        deadline = time.time() + a.timeout
        while a.wait.encode() not in seen:
            if time.time() > deadline:
                sys.exit(f"timed out waiting for {a.wait!r}; console tail: {seen[-500:]!r}")
            try:
                chunk = ser.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                sys.exit("serial console closed")
            seen += chunk
    time.sleep(1.0)
    for line in a.send:
        ser.sendall(line.encode() + b"\n")
        time.sleep(1.0)
    time.sleep(a.settle)
    qmp.cmd("stop")
    qmp.cmd("screendump", filename=a.out, format="png")
    if a.vram:
        bar = vga_bar0(qmp)
        qmp.cmd("pmemsave", val=bar["address"], size=bar["size"], filename=a.vram)
    qmp.cmd("quit")


if __name__ == "__main__":
    main()
