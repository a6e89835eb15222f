/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The size rule of the ABI's options and stats structs, once; abi.h says
 * the rule. Pure functions, called on the API caller's thread; no lock.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <ovc/endpoint.h>
#include <ovc/engine.h>

#include "common/util.h"
#include "engine/abi.h"

/* No struct of the ABI has a hole or a padded tail: a field appended later
 * must never land on bytes an older caller left uninitialised. */
#define NO_PADDING(type, last) \
	_Static_assert(sizeof(type) == offsetof(type, last) + sizeof(((type *)0)->last), \
		       #type " has a padded tail")
NO_PADDING(struct ovc_engine_opts, io_error_userdata);
NO_PADDING(struct ovc_engine_stats, pinned_pages_kept);
NO_PADDING(struct ovc_publish_opts, reserved);
_Static_assert(OVC_ENGINE_OPTS_SIZE_VER0 <= sizeof(struct ovc_engine_opts), "VER0");
_Static_assert(OVC_ENGINE_STATS_SIZE_VER0 <= sizeof(struct ovc_engine_stats), "VER0");
_Static_assert(OVC_PUBLISH_OPTS_SIZE_VER0 <= sizeof(struct ovc_publish_opts), "VER0");

static int check_size(const void *user, size_t lib_size, size_t ver0_size, size_t *size)
{
	uint32_t n;

	if (!user)
		return -EINVAL;
	memcpy(&n, user, sizeof(n));
	if (n < ver0_size)
		return -EINVAL;
	if (n > OVC_ABI_SIZE_MAX)
		return -E2BIG;
	for (size_t i = lib_size; i < n; i++)
		if (((const uint8_t *)user)[i])
			return -E2BIG;
	*size = n;
	return 0;
}

int abi_check(const void *user, size_t lib_size, size_t ver0_size)
{
	size_t n;

	return check_size(user, lib_size, ver0_size, &n);
}

int abi_copy_in(void *lib, size_t lib_size, const void *user, size_t ver0_size)
{
	size_t n;
	int r = check_size(user, lib_size, ver0_size, &n);

	if (r < 0)
		return r;
	memset(lib, 0, lib_size);
	memcpy(lib, user, MIN(n, lib_size));
	return 0;
}

int abi_copy_out(void *user, const void *lib, size_t lib_size, size_t ver0_size)
{
	size_t n;
	int r = check_size(user, lib_size, ver0_size, &n);

	if (r < 0)
		return r;
	/* The caller's bytes past lib_size are zero already (checked): the
	 * fields this library does not know read as zero. */
	memcpy((uint8_t *)user + sizeof(uint32_t), (const uint8_t *)lib + sizeof(uint32_t),
	       MIN(n, lib_size) - sizeof(uint32_t));
	return 0;
}
