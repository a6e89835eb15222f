/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who a peer is: the names the drivers give guests and when an engine may
 * join a balloon guest. Pure functions (no I/O, no state), fuzzed by
 * tests/fuzz/fuzz-balloon-names.c; any thread.
 *
 * A name is what the operator's config, ovcctl and the log use to point at
 * a guest, so it must say which process it is. A peer's own words (QMP's
 * query-name, an engine's name= key) are only believed where nobody else
 * has a better claim: the socket file a peer listens on was put there by
 * someone allowed to write the directory, and the kernel says which process
 * listens on it.
 */
#include <string.h>

#include "driver.h"
#include "names.h"

bool balloon_name_valid(const char *name)
{
	size_t n = strnlen(name, OVC_BALLOON_NAME_MAX);

	if (n == 0 || n >= OVC_BALLOON_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return false;
	return true;
}

void balloon_socket_stem(const char *file, char *stem, size_t size)
{
	const char *dot = strrchr(file, '.');
	size_t n = dot && dot != file ? (size_t)(dot - file) : strlen(file);

	if (size == 0)
		return;
	n = n < size - 1 ? n : size - 1;
	memcpy(stem, file, n);
	stem[n] = '\0';
}

static bool held_by_other(const struct balloon_name_peer *v, size_t n, size_t self, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (i != self && v[i].name && strcmp(v[i].name, name) == 0)
			return true;
	return false;
}

static bool stem_of_other(const struct balloon_name_peer *v, size_t n, size_t self, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (i != self && v[i].stem && strcmp(v[i].stem, name) == 0)
			return true;
	return false;
}

void balloon_names_assign(struct balloon_name_peer *v, size_t n)
{
	/* Those admitted before keep their names: a newcomer never takes a
	 * name away from a guest already managed. */
	for (size_t i = 0; i < n; i++) {
		if (!v[i].holds)
			v[i].name = NULL;
		v[i].why = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *want;

		if (v[i].holds)
			continue;
		if (v[i].claim && v[i].claim[0]) {
			if (!balloon_name_valid(v[i].claim)) {
				v[i].why = "it reports a name with control characters or too long";
				continue;
			}
			want = v[i].claim;
		} else {
			want = v[i].stem;
			if (!want || !balloon_name_valid(want)) {
				v[i].why = "its socket's name is not a valid guest name";
				continue;
			}
		}
		if (held_by_other(v, n, i, want)) {
			v[i].why = "another socket's guest has that name already";
			continue;
		}
		/* The socket named after the guest is the guest's: another
		 * socket saying it is that guest is not believed, even when
		 * it comes first. */
		if (strcmp(want, v[i].stem ? v[i].stem : "") != 0 && stem_of_other(v, n, i, want)) {
			v[i].why = "another socket is named after that guest";
			continue;
		}
		v[i].name = want;
	}
}

bool ovcd_balloon_may_join(const struct ovcd_balloon_guest *balloon, const struct ovcd_balloon_guest *engine)
{
	return balloon->pid > 0 && engine->pid == balloon->pid && strcmp(balloon->name, engine->name) == 0;
}
