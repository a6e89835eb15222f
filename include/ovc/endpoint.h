/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Publishing an engine: a unix socket through which a host daemon (ovcd's
 * "ovc" balloon driver) reads the engine's stats and sets its reclaim
 * target. Off unless the VMM calls ovc_engine_publish(). The wire protocol
 * is docs/engine-protocol.md.
 *
 * Threads: the endpoint is served by one thread of its own, in both drive
 * modes of the engine (also with OVC_ENGINE_NO_THREADS). That thread calls
 * only ovc_engine_stats() and ovc_engine_reclaim(), never touches guest
 * memory and never blocks on a client (non-blocking sockets, bounded
 * buffers, idle clients dropped). ovc_engine_publish() and
 * ovc_engine_unpublish() must not race each other or ovc_engine_free() on
 * the same engine; call them from the thread that owns the engine's life.
 */
#ifndef OVC_ENDPOINT_H
#define OVC_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <ovc/common.h>
#include <ovc/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where engines publish unless told otherwise; ovcd watches it. */
#define OVC_PUBLISH_DIR "/run/ovc/engines"
/* Longest guest name, without the terminating NUL. */
#define OVC_PUBLISH_NAME_MAX 64

struct ovc_publish_opts {
	/* sizeof(struct ovc_publish_opts) as the caller knows it; the size
	 * rule of ovc/engine.h. */
	uint32_t size;
	/* No flags yet; any bit gives -EINVAL. */
	uint32_t flags;
	/* Directory of the socket; NULL: OVC_PUBLISH_DIR. Created (mode
	 * 0755, with its parent) if missing. */
	const char *dir;
	/* Guest name: 1..OVC_PUBLISH_NAME_MAX characters of [A-Za-z0-9._-],
	 * not starting with '.'; NULL: "pid-<pid>". The socket is
	 * DIR/NAME.sock. */
	const char *name;
	/* The guest's configured RAM in bytes, as the daemon should count it;
	 * 0: the bytes registered with ovc_region_add() at each request. */
	uint64_t max_bytes;
	/* Permission bits of the socket; 0: 0660. Connecting needs write
	 * permission; setting a target also needs the VMM's uid or root.
	 * Bits other than 0777 give -EINVAL. A uint32_t, not a mode_t, so
	 * the layout does not depend on the C library. */
	uint32_t mode;
	uint32_t reserved;     /* must be 0 */
	/* Fields appended later go here, each with "since X.Y". */
};

/* Size of struct ovc_publish_opts in 0.1, its first published layout. */
#define OVC_PUBLISH_OPTS_SIZE_VER0 \
	(offsetof(struct ovc_publish_opts, reserved) + sizeof(uint32_t))

/*
 * ovc_engine_publish - serve the engine's control endpoint
 * @opts: options; NULL means all defaults
 *
 * Creates DIR/NAME.sock (bound under a hidden name, then renamed, so it
 * appears already listening), replacing a stale socket that nobody listens
 * on, and starts the endpoint thread. ovc_engine_unpublish() or
 * ovc_engine_free() remove it.
 *
 * Returns 0, or -EINVAL (bad option, flag or name, opts->size below
 * OVC_PUBLISH_OPTS_SIZE_VER0, a reserved field not 0), -E2BIG (opts->size
 * larger than this library's struct with a non-zero byte past it, or above
 * 4096), -EALREADY (this engine
 * is published already), -EADDRINUSE (a live engine listens on that name),
 * -EEXIST (DIR/NAME.sock exists and is not a socket), -ENAMETOOLONG (path
 * does not fit a unix socket address), -EACCES, -ENOMEM, or the errno of
 * creating the directory or socket.
 */
OVC_EXPORT int ovc_engine_publish(ovc_engine *e, const struct ovc_publish_opts *opts);

/*
 * ovc_engine_unpublish - stop serving and remove the socket
 * @flags: none yet, must be 0
 *
 * Joins the endpoint thread, closes every client and unlinks the socket if
 * it is still the one this engine created. Takes an engine that is not
 * published (then does nothing). Returns 0 or -EINVAL (NULL engine, @flags
 * not 0).
 */
OVC_EXPORT int ovc_engine_unpublish(ovc_engine *e, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif
