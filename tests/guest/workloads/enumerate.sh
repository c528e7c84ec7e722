#!/bin/sh
# enumerate: does the guest see the QXL device, with the IDs and BAR layout we expect?
# Prints SAFFRON-PCI and SAFFRON-BAR lines (an expansion ROM would be index=6 kind=rom);
# the exit status is saffron-guest's.
exec saffron-guest find
