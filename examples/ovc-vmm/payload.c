/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest of ovc-vmm: a freestanding 64-bit program that exercises its RAM the way a real guest's
 * memory ages — writes patterns and leaves zeros, keeps a checksum of every
 * page, works on a hot set while the rest goes idle, then comes back to all
 * of it and checks every page. It only talks to the VMM through the mailbox
 * and outl; any page the engine shared or swapped is faulted back by the
 * engine's userfaultfd handler behind the vCPU's back.
 *
 * It runs in long mode at CPL 3 with IOPL 3 and no IDT: on this project's
 * machines KVM is the PVM backend, which runs guest user mode natively but
 * emulates guest kernel mode instruction by instruction (~100x slower). So
 * it never executes a privileged instruction; it ends by writing the DONE
 * port forever, and the VMM stops running it.
 */
#include <stdint.h>

#include "protocol.h"

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static void puts_host(const char *s)
{
	while (*s)
		outl(VMM_PORT_CHAR, (uint8_t)*s++);
}

static void putu_host(uint32_t v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_host(buf + i);
}

static uint32_t page_csum(const volatile uint32_t *w)
{
	uint32_t h = 0x811c9dc5u;

	for (uint32_t i = 0; i < VMM_PAGE / 4; i++)
		h = (h ^ w[i]) * 0x01000193u;
	return h;
}

static void write_pattern(volatile uint32_t *w, uint32_t seed, uint32_t page, uint32_t gen)
{
	uint32_t x = vmm_hash32(page ^ seed) + gen * 0x9e3779b9u;

	for (uint32_t i = 0; i < VMM_PAGE / 4; i++) {
		x = x * 1664525u + 1013904223u;
		w[i] = x | 1; /* never a zero word, so never a zero page */
	}
}

static int is_hot(const struct vmm_mailbox *mb, uint32_t page)
{
	return vmm_hash32(page * 2654435761u ^ mb->seed) % 1000 < mb->hot_permille;
}

static uint32_t verify_all(struct vmm_mailbox *mb, uint32_t *csum, uint8_t *data)
{
	uint32_t bad = 0;

	for (uint32_t p = 0; p < mb->data_pages; p++) {
		if (page_csum((const volatile uint32_t *)(data + (uint64_t)p * VMM_PAGE)) != csum[p]) {
			if (bad < 5) {
				puts_host("guest: checksum mismatch on page ");
				putu_host(p);
				puts_host("\n");
			}
			bad++;
		}
		mb->pages_checked++;
	}
	return bad;
}

void _start(void) __attribute__((section(".text.start"), noreturn));

void _start(void)
{
	struct vmm_mailbox *mb = (struct vmm_mailbox *)VMM_MAILBOX_GPA;
	uint32_t *csum = (uint32_t *)VMM_CSUM_GPA;
	uint8_t *data = (uint8_t *)(uintptr_t)mb->data_start;
	static const uint32_t zero_page_words[VMM_PAGE / 4];
	uint32_t zero_csum = page_csum(zero_page_words);
	uint32_t gen = 1;

	/* Fill: patterns and zeros, a checksum per page. Zero pages are
	 * written with zeros, as a guest kernel clears the pages it frees: the
	 * host holds real memory for them until the engine shares them. */
	for (uint32_t p = 0; p < mb->data_pages; p++) {
		volatile uint32_t *w = (volatile uint32_t *)(data + (uint64_t)p * VMM_PAGE);
		if (vmm_page_is_zero(mb->seed, p)) {
			for (uint32_t i = 0; i < VMM_PAGE / 4; i++)
				w[i] = 0;
			csum[p] = zero_csum;
			mb->zero_pages++;
		} else {
			write_pattern(w, mb->seed, p, gen);
			csum[p] = page_csum(w);
		}
	}
	puts_host("guest: filled ");
	putu_host(mb->data_pages);
	puts_host(" pages, ");
	putu_host(mb->zero_pages);
	puts_host(" left zero\n");
	outl(VMM_PORT_PHASE, VMM_PHASE_FILLED);

	/* Work on the hot set until the host says come back; the rest idles
	 * and goes cold. Each round verifies and rewrites every hot page. */
	uint32_t bad = 0;
	while (!mb->come_back) {
		gen++;
		for (uint32_t p = 0; p < mb->data_pages && !mb->come_back; p++) {
			if (!is_hot(mb, p) || vmm_page_is_zero(mb->seed, p))
				continue;
			volatile uint32_t *w = (volatile uint32_t *)(data + (uint64_t)p * VMM_PAGE);
			if (page_csum(w) != csum[p])
				bad++;
			write_pattern(w, mb->seed, p, gen);
			csum[p] = page_csum(w);
		}
		mb->rounds++;
		outl(VMM_PORT_PHASE, VMM_PHASE_HOT);
	}

	/* Come back to every page: shared zero pages read as zeros, swapped
	 * pages come back exactly as they were written. */
	bad += verify_all(mb, csum, data);
	mb->mismatches = bad;
	outl(VMM_PORT_PHASE, VMM_PHASE_VERIFIED);

	/* Write into every 7th page — zero pages take a copy-on-write, cold
	 * ones are faulted in first — and check everything once more. */
	gen++;
	for (uint32_t p = 0; p < mb->data_pages; p += 7) {
		volatile uint32_t *w = (volatile uint32_t *)(data + (uint64_t)p * VMM_PAGE);
		write_pattern(w, mb->seed, p, gen);
		csum[p] = page_csum(w);
	}
	bad += verify_all(mb, csum, data);
	mb->mismatches = bad;
	puts_host("guest: verified every page twice, ");
	putu_host(bad);
	puts_host(" mismatches\n");
	outl(VMM_PORT_PHASE, VMM_PHASE_REWRITTEN);
	for (;;)
		outl(VMM_PORT_DONE, bad);
}
