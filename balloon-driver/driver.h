/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Balloon drivers: one interface to every way of reaching a guest's
 * virtio-balloon — libvirt (libvirt.c) and a bare QEMU's QMP socket (qmp.c)
 * — and the engines VMMs embed (ovc.c).
 * ovcd links this as the static library ovc-balloon; it is not part of
 * libovc's ABI.
 *
 * No call waits for a peer (QEMU, libvirtd, an engine): each peer is a
 * state machine driven by ovcd_balloon_process() with one request in flight
 * and one deadline, or is served by the backend's own thread (libvirt).
 * ovcd_balloon_list() and ovcd_balloon_guest() answer from each guest's last
 * figures; targets and reclaim requests are queued, and a later failure
 * comes as OVC_BALLOON_EVENT_FAILED. Only OVC_BALLOON_TARGET_WAIT blocks,
 * by its caller's choice.
 *
 * Threads: an ovcd_balloon handle belongs to one thread (the daemon's control
 * loop); its calls are not thread-safe against each other. Backends may run
 * their own threads (libvirt's event loop and worker), but user callbacks
 * are only ever called from ovcd_balloon_process(), in the caller's thread,
 * with no lock of the driver held. Events are queued under an internal mutex
 * and signalled through the fd of ovcd_balloon_fd().
 *
 * Units: bytes everywhere in this interface. libvirt speaks KiB: targets are
 * rounded down to a whole KiB (ovcd_balloon_bytes_to_kib) so that a guest is
 * never given more than it was allowed.
 *
 * Errors: -errno (see ovc_strerror). Every failure that concerns a guest also
 * leaves a sentence naming the guest in ovcd_balloon_error(), e.g.
 * "failed to inflate balloon of 'web1' to 1536MiB: No such domain", with
 * control bytes escaped as \xNN (peers' words reach it). The driver logs it
 * at debug level only: the caller handles it and logs once. A peer refused
 * for who it claims to be (a symlink, a socket its listener does not own,
 * a QMP name that is another socket's, an engine maximum beyond its RAM)
 * is logged by the driver itself as a warning, once per socket file.
 */
#ifndef OVC_BALLOON_DRIVER_H
#define OVC_BALLOON_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/guest.h"
#include "common/log.h"

typedef struct ovcd_balloon ovcd_balloon;

enum ovcd_balloon_backend {
	OVC_BALLOON_LIBVIRT = 1, /* libvirtd over a connection URI */
	OVC_BALLOON_QMP = 2,     /* QEMU processes by their QMP sockets */
	OVC_BALLOON_ENGINE = 3,  /* libovc engines in VMMs by their control sockets (ovc.c) */
};

/* Per-guest capabilities (struct ovcd_balloon_guest.caps). */
enum {
	OVC_BALLOON_CAP_DEVICE = 1u << 0,              /* has a virtio-balloon device */
	OVC_BALLOON_CAP_FREE_PAGE_REPORTING = 1u << 1, /* free-page-reporting=on */
	OVC_BALLOON_CAP_DEFLATE_ON_OOM = 1u << 2,      /* deflate-on-oom=on (libvirt autodeflate) */
	OVC_BALLOON_CAP_STATS_POLLING = 1u << 3,       /* stats polling period > 0 */
};

/* Whether the guest kernel runs a balloon driver. QEMU accepts a target even
 * when none is loaded, so this is inferred: LOADED once the guest has sent
 * statistics or moved its balloon; ABSENT when polling has been on for a
 * grace period (or a confirmed target) without the guest ever answering. */
enum ovcd_balloon_guest_driver {
	OVC_BALLOON_DRIVER_UNKNOWN = 0,
	OVC_BALLOON_DRIVER_LOADED = 1,
	OVC_BALLOON_DRIVER_ABSENT = 2,
};

#define OVC_BALLOON_NAME_MAX 256
#define OVC_BALLOON_ID_MAX 64

struct ovcd_balloon_guest {
	char name[OVC_BALLOON_NAME_MAX]; /* libvirt domain name; QMP: query-name (when no other socket
					 * holds it or is named after it) or the socket's stem;
					 * engines: the socket's stem, never the claim */
	char id[OVC_BALLOON_ID_MAX];     /* libvirt UUID; QMP: socket path's base name */
	/* The process behind the guest, as the kernel says (never as the
	 * peer says): QMP and engines the listener's SO_PEERCRED pid, libvirt
	 * the domain's QEMU pid; 0 when unknown. An engine joins a balloon
	 * guest only when both have the same pid. */
	int32_t pid;
	unsigned caps;                   /* OVC_BALLOON_CAP_* */
	enum ovcd_balloon_guest_driver driver;
	struct ovcd_guest_stats stats;    /* max_bytes and actual_bytes always known */
};

enum ovcd_balloon_event_type {
	OVC_BALLOON_EVENT_CHANGED = 1,      /* the balloon moved; actual_bytes is the new size */
	OVC_BALLOON_EVENT_STARTED = 2,      /* a guest appeared or was started */
	OVC_BALLOON_EVENT_STOPPED = 3,      /* a guest stopped or its socket closed */
	OVC_BALLOON_EVENT_DISCONNECTED = 4, /* connection to the hypervisor lost; guest = NULL */
	OVC_BALLOON_EVENT_RECONNECTED = 5,  /* connection is back; re-list the guests */
	/* Fresh statistics of `guest` arrived; ovcd_balloon_guest() returns
	 * the cached figures, never a round trip. Every backend delivers it
	 * whenever a guest's stats are refreshed. */
	OVC_BALLOON_EVENT_STATS = 6,
	/* A request the caller made for `guest` (set_target: request =
	 * OVC_BALLOON_REQ_TARGET, set_reclaim: OVC_BALLOON_REQ_RECLAIM, for
	 * request_bytes) failed after the call returned; err is its -errno
	 * and error the sentence naming the guest, for the log. */
	OVC_BALLOON_EVENT_FAILED = 7,
};

enum ovcd_balloon_request {
	OVC_BALLOON_REQ_TARGET = 1,
	OVC_BALLOON_REQ_RECLAIM = 2,
};

struct ovcd_balloon_event {
	enum ovcd_balloon_event_type type;
	const char *guest;     /* name, valid during the callback; NULL for (DIS|RE)CONNECTED */
	uint64_t actual_bytes; /* CHANGED only, else OVC_UNKNOWN */
	/* FAILED only (else 0, OVC_UNKNOWN, 0, NULL): */
	enum ovcd_balloon_request request;
	uint64_t request_bytes;
	int err;
	const char *error; /* valid during the callback; no control characters */
};

typedef void (*ovcd_balloon_event_fn)(void *userdata, const struct ovcd_balloon_event *ev);

struct ovcd_balloon_opts {
	size_t size; /* sizeof(struct ovcd_balloon_opts) */
	enum ovcd_balloon_backend backend;
	/* libvirt: connection URI; NULL means "qemu:///system". */
	const char *uri;
	/* QMP: a directory whose sockets (any name; *.qmp by convention) are
	 * QEMU monitors, re-scanned on every list, and/or a NULL-terminated
	 * list of socket paths. */
	const char *qmp_dir;
	const char *const *qmp_sockets;
	/* QMP: the balloon device's id (-device virtio-balloon-pci,id=...);
	 * NULL means "balloon0" (what libvirt uses) or, if there is none,
	 * the first virtio-balloon under /machine/peripheral. */
	const char *qmp_balloon_id;
	/* Turn guest stats polling on with this period for guests that have
	 * it off; 0 leaves polling alone. */
	unsigned stats_period_sec;
	/* Guest-side stats older than this are unknown (0: 3 periods + 5 s). */
	unsigned stale_sec;
	/* How long OVC_BALLOON_TARGET_WAIT waits (0: 30 s), and how long a
	 * guest may take to answer once polling is on before its balloon
	 * driver counts as absent (same value). */
	unsigned confirm_timeout_msec;
	/* Reconnect back-off after a lost connection: first and last delay
	 * (0: 250 ms and 30 s), doubling in between. */
	unsigned reconnect_min_msec;
	unsigned reconnect_max_msec;
	const struct logger *logger; /* may be NULL */
	ovcd_balloon_event_fn event_fn;   /* may be NULL */
	void *event_userdata;
	/* OVC_BALLOON_ENGINE: the directory engines publish in (watched with
	 * inotify, created if missing); NULL means OVC_PUBLISH_DIR,
	 * "/run/ovc/engines". */
	const char *engine_dir;
};

/* Open a driver. Fails with -ENOTCONN (with a message) if the hypervisor
 * cannot be reached at all, -EINVAL on bad options. On success the handle
 * must be freed with ovcd_balloon_free(). */
int ovcd_balloon_new(const struct ovcd_balloon_opts *opts, ovcd_balloon **ret);
void ovcd_balloon_free(ovcd_balloon *b);

/* The last error's sentence (names the guest); "" if none. Valid until the
 * next call on @b. */
const char *ovcd_balloon_error(const ovcd_balloon *b);

/* Every running guest that has answered, with its last normalised figures
 * (never a round trip), and ask every peer for fresh ones: they arrive
 * through the fd, each announced by OVC_BALLOON_EVENT_STATS. Figures nobody
 * refreshed for stale_sec come back stale. *ret is an array of *ret_n
 * entries owned by the caller (free()). -ENOTCONN while libvirtd is not
 * connected (the worker reconnects with back-off meanwhile). */
int ovcd_balloon_list(ovcd_balloon *b, struct ovcd_balloon_guest **ret, size_t *ret_n);

/* One guest's last figures by name (cached: never a round trip). -ENOENT
 * if there is no such running guest. */
int ovcd_balloon_guest(ovcd_balloon *b, const char *name, struct ovcd_balloon_guest *ret);

enum {
	/* Block the calling thread (tools and tests; never a daemon's loop)
	 * until the hypervisor took the target and the balloon reaches it
	 * (confirm_timeout_msec), running the backend meanwhile; events stay
	 * queued for ovcd_balloon_process(). Returns the hypervisor's refusal,
	 * -ENODEV if the balloon did not move at all (no balloon driver in
	 * the guest), -ETIMEDOUT if it moved but did not get there. */
	OVC_BALLOON_TARGET_WAIT = 1u << 0,
};

/* Ask @name's balloon to leave the guest @target_bytes (QEMU's "logical
 * size": max - balloon). Checked against the last figures: 0 <
 * target_bytes <= max_bytes, else -ERANGE; -ENODEV when the guest has no
 * balloon device or its driver is known to be absent; -ENOENT for no such
 * guest. Then queued (0): the hypervisor's refusal comes later as
 * OVC_BALLOON_EVENT_FAILED; a newer target replaces one not sent yet
 * (FAILED with -ECANCELED). */
int ovcd_balloon_set_target(ovcd_balloon *b, const char *name, uint64_t target_bytes,
			   unsigned flags);

/* Tell the embedded engine of @name to keep @reclaim_bytes of its guest's
 * RAM given back (zero-shared plus swapped; 0: zero sharing only). Only the
 * ovc backend has engines: -EOPNOTSUPP for libvirt and QMP. -ENOENT for no
 * such guest. Queued (0); the engine's own refusal comes later as
 * OVC_BALLOON_EVENT_FAILED with its errno (-EPERM when the caller is
 * neither root nor the VMM's uid, -ENOSPC beyond its swap). No flags yet
 * (-EINVAL). */
int ovcd_balloon_set_reclaim(ovcd_balloon *b, const char *name, uint64_t reclaim_bytes,
			    unsigned flags);

/* Event-loop integration: poll the fd for POLLIN, and call
 * ovcd_balloon_process() when it is readable or when
 * ovcd_balloon_timeout_msec() has passed (-1: no timer wanted; peers'
 * deadlines and back-offs are such timers). process() reads peer input,
 * runs deadlines, sends what is queued, takes the libvirt worker's results
 * and calls event_fn for each queued event. Returns the number of events
 * delivered or -errno. */
int ovcd_balloon_fd(const ovcd_balloon *b);
int ovcd_balloon_timeout_msec(const ovcd_balloon *b);
int ovcd_balloon_process(ovcd_balloon *b);

/* Whether the engine guest @engine may join the balloon guest @balloon of
 * the same name (one guest with both): only when the kernel says both are
 * one process (pid known and equal). A name alone proves nothing: anyone
 * who may publish an engine can pick any name. Pure (names.c). */
bool ovcd_balloon_may_join(const struct ovcd_balloon_guest *balloon, const struct ovcd_balloon_guest *engine);

/* The OVC_BALLOON_CAP_* of a libvirt domain's live XML (virDomainGetXMLDesc):
 * from its <memballoon> (the last one: the device's, after any look-alike
 * in metadata) — not model='none', autodeflate='on', freePageReporting='on'
 * and a <stats period> above 0. Pure (domain-xml.c). */
unsigned ovcd_balloon_caps_from_xml(const char *xml);

/* --- Pure helpers, unit-tested (stats.c) --- */

/* Bytes to whole KiB for libvirt, rounded down. -EINVAL if that is 0,
 * -ERANGE if it does not fit libvirt's unsigned long. */
int ovcd_balloon_bytes_to_kib(uint64_t bytes, unsigned long *ret_kib);

/* One named figure as libvirt's bulk stats give it ("balloon.current"). */
struct ovcd_balloon_kv {
	const char *name;
	uint64_t value;
};

/* Normalise libvirt's balloon group (KiB, last-update in s) into @st.
 * Unknown names are ignored; a figure missing, or that overflows in bytes,
 * stays OVC_UNKNOWN. Needs balloon.current and balloon.maximum:
 * -EBADMSG without them (@st is then reset). Applies
 * ovcd_guest_stats_sanitize() with @now_sec and @max_age_sec. */
int ovcd_balloon_stats_from_libvirt(const struct ovcd_balloon_kv *kv, size_t n, uint64_t now_sec,
				   uint64_t max_age_sec, struct ovcd_guest_stats *st);

/* Normalise QMP's qom-get guest-stats value (the JSON object with "stats"
 * and "last-update", given as text) plus query-balloon's actual and the
 * configured maximum (bytes). u64 -1, negative, non-integer or missing
 * figures stay OVC_UNKNOWN. -EBADMSG if @json is not such an object. */
int ovcd_balloon_stats_from_qmp(const char *json, size_t len, uint64_t actual_bytes,
			       uint64_t max_bytes, uint64_t now_sec, uint64_t max_age_sec,
			       struct ovcd_guest_stats *st);

#endif
