/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the VMM and its guest payload share: the memory layout, the mailbox
 * and the I/O ports. Included by both sides; the guest is 32-bit.
 *
 * Guest-physical layout (identity mapped with 2 MiB pages):
 *   0x0000_2000  PML4, 0x3000 PDPT, 0x4000..0x7fff four page directories
 *   0x0000_8000  mailbox (struct vmm_mailbox), written by both
 *   0x0001_0000  payload code and data (< 512 KiB)
 *   0x0009_0000  top of the guest stack (grows down)
 *   0x0010_0000  checksum table: one uint32_t per page of the data area
 *   data_start   data area, 2 MiB aligned, to the end of RAM
 */
#ifndef OVC_VMM_PROTOCOL_H
#define OVC_VMM_PROTOCOL_H

#include <stdint.h>

#define VMM_PML4_GPA 0x2000u
#define VMM_PDPT_GPA 0x3000u
#define VMM_PD_GPA 0x4000u /* 4 page directories: 4 GiB */
#define VMM_MAILBOX_GPA 0x8000u
#define VMM_PAYLOAD_GPA 0x10000u
#define VMM_STACK_TOP 0x90000u
#define VMM_CSUM_GPA 0x100000u
#define VMM_PAGE 4096u

/* Ports the guest writes with outl. */
#define VMM_PORT_CHAR 0x3f8   /* one character of log text */
#define VMM_PORT_PHASE 0x500  /* the guest reached phase N (enum vmm_phase) */
#define VMM_PORT_DONE 0x501   /* the guest is done; value = checksum mismatches */

enum vmm_phase {
	VMM_PHASE_FILLED = 1,  /* data area written, checksums taken */
	VMM_PHASE_HOT = 2,     /* one round of work on the hot set done */
	VMM_PHASE_VERIFIED = 3,/* every page read back and compared */
	VMM_PHASE_REWRITTEN = 4,/* zero and cold pages written again, re-verified */
};

struct vmm_mailbox {
	/* Host → guest, before the vCPU starts. */
	uint32_t data_start;   /* GPA of the data area */
	uint32_t data_pages;   /* pages in it */
	uint32_t seed;
	uint32_t hot_permille; /* share of the data area the guest keeps working on */
	/* Host → guest while it runs: nonzero = stop idling, come back to all
	 * of memory. The guest polls it between rounds of hot work. */
	volatile uint32_t come_back;
	/* Guest → host. */
	volatile uint32_t rounds;     /* rounds of hot work done */
	volatile uint32_t mismatches; /* pages whose checksum did not match */
	volatile uint32_t pages_checked;
	volatile uint32_t zero_pages; /* pages the guest left zero at fill */
};

/* Per page of the data area: which kind of content the payload writes. 40%
 * of 64-page groups stay zero; in the rest, every 4th page is zero (single
 * zero pages between written ones); the other pages carry a pattern. */
static inline uint32_t vmm_hash32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

static inline int vmm_page_is_zero(uint32_t seed, uint32_t page)
{
	if (vmm_hash32((page >> 6) ^ seed) % 10 < 4)
		return 1;
	return (page & 3) == 3;
}

#endif
