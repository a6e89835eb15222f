/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness: who gets which guest name within a driver
 * (balloon_names_assign, balloon-driver/names.c) and when an engine joins a
 * balloon guest (ovcd_balloon_may_join). Peers arrive one by one, as sockets
 * appear: each has a socket stem and a claim (what QMP query-name says),
 * taken from the input as short strings separated by 0xff bytes; the
 * admitted ones hold their names. Checked after every arrival: no two
 * peers share a name; a holder keeps its name; a name is the peer's claim
 * or its stem, valid (no control character); a claim that is another
 * socket's stem is refused. And may_join is true only for one pid > 0.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "driver.h"
#include "names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PEERS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char str[2 * PEERS][OVC_BALLOON_NAME_MAX];
	struct balloon_name_peer v[PEERS];
	const char *held[PEERS];
	size_t ns = 0, off = 0;

	/* Strings: runs of bytes up to 0xff, at most 40 bytes each. */
	while (ns < 2 * PEERS && off < size) {
		size_t n = 0;

		while (off < size && data[off] != 0xff && n < 40)
			str[ns][n++] = (char)data[off++];
		str[ns][n] = '\0';
		ns++;
		off++;
	}
	memset(v, 0, sizeof(v));
	for (size_t k = 0; k + 1 < ns && k / 2 < PEERS; k += 2) {
		size_t n = k / 2 + 1, self = n - 1;

		v[self] = (struct balloon_name_peer){ .stem = str[k], .claim = str[k + 1] };
		for (size_t i = 0; i < self; i++)
			held[i] = v[i].name;
		balloon_names_assign(v, n);
		for (size_t i = 0; i < n; i++) {
			if (i < self)
				assert(v[i].name == held[i]); /* holders keep theirs */
			if (!v[i].name) {
				assert(i != self || v[i].why); /* or refused before */
				continue;
			}
			assert(v[i].name == v[i].claim || v[i].name == v[i].stem);
			assert(balloon_name_valid(v[i].name));
			for (size_t j = 0; j < n; j++)
				assert(j == i || !v[j].name || strcmp(v[i].name, v[j].name) != 0);
		}
		if (v[self].name && strcmp(v[self].name, v[self].stem) != 0)
			for (size_t j = 0; j < self; j++)
				assert(strcmp(v[j].stem, v[self].name) != 0);
		/* What was admitted holds from now on; the refused leave. */
		if (v[self].name)
			v[self].holds = true;
		else
			memset(&v[self], 0, sizeof(v[self])), v[self].stem = "", v[self].holds = true;
	}

	if (size >= 8) {
		struct ovcd_balloon_guest a = { .pid = (int32_t)(data[0] | data[1] << 8 | data[2] << 16 | (uint32_t)data[3] << 24) };
		struct ovcd_balloon_guest e = { .pid = (int32_t)(data[4] | data[5] << 8 | data[6] << 16 | (uint32_t)data[7] << 24) };

		memcpy(a.name, "web1", 5);
		memcpy(e.name, size > 8 && (data[8] & 1) ? "web2" : "web1", 5);
		assert(ovcd_balloon_may_join(&a, &e) == ovcd_balloon_may_join(&e, &a));
		if (ovcd_balloon_may_join(&a, &e))
			assert(a.pid > 0 && a.pid == e.pid && strcmp(a.name, e.name) == 0);
	}
	return 0;
}
