// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The slot-run writer of both swap-out paths (swapout.c's move-out-first
 * pipeline and swapout-wp.c's write-protect path): entries get freshly
 * allocated slot runs, each run goes out as writevs of at most
 * SWAPOUT_REQ_PAGES pages, queued on the out ring. Pass thread (pass_lock
 * held); no lock of its own. Calls nothing of swapout.c or swapout-wp.c but
 * through the hooks they hand in.
 */
#include <sys/uio.h>

#include "engine/internal.h"
#include "engine/swapdev.h"

unsigned swapout_queue_runs(ovc_engine *e, unsigned nd, uint32_t *slot, const struct swapout_writer *w)
{
	struct engine_swap *sw = &e->sw;
	unsigned assigned = 0;

	while (assigned < nd) {
		uint32_t first, got;
		if (swapdev_slot_alloc(sw->sd, nd - assigned, &first, &got) < 0) {
			sw->full = true;
			break;
		}
		for (uint32_t off = 0; off < got;) {
			unsigned k = MIN(got - off, SWAPOUT_REQ_PAGES);
			struct iovec iov[SWAPOUT_REQ_PAGES];
			for (unsigned j = 0; j < k; j++) {
				unsigned d = assigned + off + j;
				slot[d] = first + off + j;
				iov[j] = (struct iovec){ w->src(w->ctx, d), PAGE_SIZE };
			}
			void *q = w->req(w->ctx, assigned + off, k);
			int qr;
			while ((qr = swapdev_queue_write(sw->out_ring, first + off, iov, k, w->done, q)) == -EAGAIN)
				w->wait(e);
			if (qr < 0)
				w->done(q, qr);
			off += k;
		}
		assigned += got;
	}
	return assigned;
}
