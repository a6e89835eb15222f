/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An engine's stats reply as clamped guest figures (engine-figures.c).
 * Pure, any thread; inside the balloon drivers and their fuzzer.
 */
#ifndef OVC_ENGINE_FIGURES_H
#define OVC_ENGINE_FIGURES_H

#include <stdint.h>

#include "common/endpoint-proto.h"
#include "host/guest.h"

/* The engine's maximum as believed: its claim, at most the RAM it
 * registered (when it says), the VMM's address space @vm_bytes (the
 * kernel's word; OVC_UNKNOWN if unknown) and OVC_GUEST_BYTES_MAX. */
uint64_t engine_max_bytes(const struct ep_reply *rp, uint64_t vm_bytes);

/* Fill @out (reset first) from a stats reply: actual = max (no balloon),
 * no guest-side figures, engine figures clamped to the maximum, optional
 * ones unknown unless sent and possible. collected_usec stays 0. */
void engine_figures(const struct ep_reply *rp, uint64_t vm_bytes, struct ovcd_guest_stats *out);

#endif
