/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's batch and list sizes: constants only, shared by every file
 * of lib/engine and by the tests (through testing.h), which check them.
 */
#ifndef OVC_ENGINE_SIZES_H
#define OVC_ENGINE_SIZES_H

/* Pages per batch of a pass: one 2 MiB staging area, one mincore call,
 * one protect/unprotect per batch on the write-protect path. */
#define BATCH_PAGES 512u
/* Pages per swap-out write request (swapout.c, swapout-wp.c). Smaller than a batch: more
 * requests in flight, and each ends its own pages sooner. */
#define SWAPOUT_REQ_PAGES 32u
/* Swap-out candidates listed at a time (8 bytes each): 1/SWAP_CAND_DIV of
 * the largest region's pages, at least SWAP_CAND_MIN; a tick lists again
 * for more. 0.5 byte per page, against 16 listings (two passes over the
 * ages each) when a whole region goes out in one tick. */
#define SWAP_CAND_DIV 16u
#define SWAP_CAND_MIN 4096u
/* Scattered drops per process_madvise() call (UIO_MAXIOV is 1024). */
#define DROP_IOV_MAX 512u

#endif
