/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest names within one driver (names.c): pure, any thread. Inside the
 * balloon drivers and their fuzzer; not for the daemon.
 */
#ifndef OVC_BALLOON_NAMES_H
#define OVC_BALLOON_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* 1..OVC_BALLOON_NAME_MAX-1 bytes, no control character (it reaches logs). */
bool balloon_name_valid(const char *name);

/* A socket file's name without its last extension ("web1.qmp" -> "web1"). */
void balloon_socket_stem(const char *file, char *stem, size_t size);

/* One peer of a driver: its socket's stem, what it says it is, and whether
 * it was admitted before (then @name is its name, kept). */
struct balloon_name_peer {
	const char *stem;  /* the socket file's name without extension */
	const char *claim; /* what the peer says (QMP query-name); NULL/"": none */
	bool holds;        /* admitted before: keeps @name */
	/* out (in too when holds) */
	const char *name;  /* @claim or @stem; NULL: refused */
	const char *why;   /* refused: why, a static sentence */
};

/*
 * Give every peer not admitted yet a name, in order: its valid claim, else
 * its stem. Refused (name NULL, why set): a name with control characters,
 * a name another peer holds (duplicates are never shared: the first keeps
 * it), and a name that is another socket's stem (web1.qmp is web1's,
 * whatever another monitor says, and whoever came first).
 */
void balloon_names_assign(struct balloon_name_peer *v, size_t n);

#endif
