#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Turn the flat payload binary into a C header for the VMM.
import sys
data = open(sys.argv[1], 'rb').read()
with open(sys.argv[2], 'w') as f:
    f.write('/* generated from the guest payload; do not edit */\n')
    f.write('static const unsigned char ovc_vmm_payload[%d] = {\n' % len(data))
    for i in range(0, len(data), 16):
        f.write('\t' + ', '.join('0x%02x' % b for b in data[i:i + 16]) + ',\n')
    f.write('};\n')
