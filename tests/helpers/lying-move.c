/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A UFFDIO_MOVE that moves and then says it failed (lying-move.h). */
#include <errno.h>
#include <string.h>

#include "engine/compat.h"
#include "lying-move.h"

#define PG 4096u

static bool in_guest(const struct lying_move *lm, uint64_t a)
{
	return a >= (uintptr_t)lm->guest && a < (uintptr_t)lm->guest + lm->len;
}

static int lying_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct lying_move *lm = ctx;
	if (req != UFFDIO_MOVE)
		return SYS(&sys_default, ioctl, fd, req, arg);
	struct uffdio_move *m = arg;
	bool out = in_guest(lm, m->src);
	if (out && lm->touch)
		for (uint64_t a = m->src; a < m->src + m->len; a += PG) {
			size_t i = (size_t)(a - (uintptr_t)lm->guest) / PG;
			if (LIE_TOUCHED(i))
				lm->guest[i * PG + 7] = lm->shadow[i * PG + 7] = (uint8_t)(i | 1);
		}
	int ret = SYS(&sys_default, ioctl, fd, req, arg);
	bool lie = lm->dir == LIE_OUT ? out : in_guest(lm, m->dst);
	if (ret < 0 || !lie)
		return ret;
	int64_t pages = (int64_t)(m->len / PG), told = lm->half ? pages / 2 : 0;
	m->move = told ? told * PG : -EEXIST;
	atomic_fetch_add(&lm->lies, 1);
	atomic_fetch_add(&lm->hidden, pages - told);
	errno = EEXIST;
	return -1;
}

void lying_move_init(struct lying_move *lm, uint8_t *guest, uint8_t *shadow, size_t len, enum lie_dir dir,
		     bool half, bool touch)
{
	memset(lm, 0, sizeof(*lm));
	lm->guest = guest;
	lm->shadow = shadow;
	lm->len = len;
	lm->dir = dir;
	lm->half = half;
	lm->touch = touch;
	lm->sys = sys_default; /* its ops do not use ctx */
	lm->sys.ctx = lm;
	lm->sys.ioctl = lying_ioctl;
}
