/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What swapin.c and swapout.c share: the word a page gets when it comes
 * back to the guest from swap or from swap-out staging. Pure; any thread.
 */
#ifndef OVC_ENGINE_SWAP_INTERNAL_H
#define OVC_ENGINE_SWAP_INTERNAL_H

#include "engine/region.h"

/* RESIDENT with no slot, keeping the other fields but WAITERS/DISCARDED.
 * Never for a CACHED word: its slot would leak (cache_drop first). */
static inline pst_word resident_word(pst_word w)
{
	/* DISCARD_PENDING stays: a discarded SWAPPED page is a hole until a
	 * fault is served on it. */
	return pst_with_state(w, PST_RESIDENT) & ~(PST_SLOT_LO_MASK | PST_WAITERS | PST_DISCARDED | PST_CACHED);
}

#endif
