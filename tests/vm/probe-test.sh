#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Guest script for the kvm-probe tests (see tests.cmake): runs kvm-probe on
# the edu device that init bound to vfio-pci. Argument: on|off, the
# snoop-control setting QEMU was started with. busybox sh.
set -eu
snoop=$1
exec kvm-probe --slot "$COH_EDU_SLOT" --group "$COH_EDU_GROUP" --snoop "$snoop" --tracefs "$COH_TRACEFS"
