#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# integration: ovc-vmm runs a 1 GiB KVM guest under the engine (zero sharing
# and swapping) and verifies every page; exit 77 (skip) with the reason where KVM is missing.
vmm=$1
if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "SKIP: /dev/kvm is not usable here"
	exit 77
fi
# With swap by default (the engine's swap file in /var/tmp): --check then
# also fails unless pages went to disk and came back. OVC_VMM_NO_SWAP=1
# runs zero sharing alone.
swap=
[ -z "${OVC_VMM_NO_SWAP-}" ] || swap=--no-swap
exec "$vmm" --mem 1GiB --check $swap
