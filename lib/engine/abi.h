/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one size rule of the ABI's options and stats structs (the rule of
 * openat2 and clone3): every such struct starts with uint32_t size, the
 * caller's sizeof.
 *   - size < the struct's first published size (its SIZE_VER0): -EINVAL;
 *   - size > OVC_ABI_SIZE_MAX (one page): -E2BIG;
 *   - size > the library's sizeof: accepted only when every byte past the
 *     library's sizeof is zero (the caller asks for nothing the library
 *     does not know), else -E2BIG;
 *   - options are read up to min(size, library's sizeof), fields past the
 *     caller's size read as zero;
 *   - stats are written up to min(size, library's sizeof); the caller's
 *     bytes past that are zero (checked above), so the fields this library
 *     does not know read as zero.
 * Pure functions; any thread, no lock.
 */
#ifndef OVC_ENGINE_ABI_H
#define OVC_ENGINE_ABI_H

#include <stddef.h>

#define OVC_ABI_SIZE_MAX 4096u

/* Check @user (its first uint32_t is its size) against the rule, for a
 * struct whose library sizeof is @lib_size. Returns 0, -EINVAL (NULL or
 * too small), -E2BIG. */
int abi_check(const void *user, size_t lib_size, size_t ver0_size);

/* Check @user (its first uint32_t is its size) against the rule and copy
 * min(size, @lib_size) bytes into @lib, zeroing the rest of @lib. @lib is
 * untouched on failure. Returns 0, -EINVAL (NULL or too small), -E2BIG. */
int abi_copy_in(void *lib, size_t lib_size, const void *user, size_t ver0_size);

/* Check @user as abi_copy_in() does, then write @lib into it past its size
 * field, min(size, @lib_size) bytes in all. Returns 0, -EINVAL, -E2BIG. */
int abi_copy_out(void *user, const void *lib, size_t lib_size, size_t ver0_size);

#endif
