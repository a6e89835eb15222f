/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's configuration file (/etc/ovc/ovcd.conf, INI syntax, parsed by
 * libinih). Internal to ovcd and its tests; not exported from libovc.so.
 *
 * Every key lives in one table (config.c) of {section, key, type, field,
 * default, min, max}; the defaults, the parser, the printer of the effective
 * config, the shipped example and ovcd.conf(5) all follow that table, and the
 * unit test checks that they agree.
 *
 * A config is parsed and validated into a fresh struct ovcd_config; only a
 * struct that passed every check is handed out, so the daemon can keep its
 * last good config when a reload fails. A struct ovcd_config is immutable
 * after parsing: any thread may read it; the daemon swaps the pointer on its
 * main thread and frees the old one there.
 */
#ifndef OVC_CONFIG_H
#define OVC_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "host/units.h"

#define OVC_CONFIG_DEFAULT_PATH "/etc/ovc/ovcd.conf"

/* Which keys a [guest "PATTERN"] section sets (bits of ovcd_guest_conf.set). */
enum {
	OVC_GUEST_SET_FLOOR = 1u << 0,
	OVC_GUEST_SET_STEP = 1u << 1,
	OVC_GUEST_SET_GUEST_FREE = 1u << 2,
	OVC_GUEST_SET_NEVER_BALLOON = 1u << 3,
	OVC_GUEST_SET_NEVER_SWAP = 1u << 4,
	OVC_GUEST_SET_PRIORITY = 1u << 5,
	OVC_GUEST_SET_KSM = 1u << 6,
};

struct ovcd_guest_conf {
	char *pattern;              /* fnmatch(3) glob on the guest's name */
	unsigned line;              /* where the section starts */
	unsigned set;               /* OVC_GUEST_SET_* */
	struct ovcd_conf_size floor;       /* % of the guest's maximum */
	struct ovcd_conf_size step;        /* % of the guest's maximum */
	struct ovcd_conf_size guest_free;  /* % of the guest's current memory */
	bool never_balloon;
	bool never_swap;
	uint64_t priority;          /* 0..100; higher keeps its memory longer */
	bool ksm;                   /* may share pages with other guests */
};

/* The settings that apply to one guest after [guest] overrides. */
struct ovcd_guest_settings {
	struct ovcd_conf_size floor;
	struct ovcd_conf_size step;
	struct ovcd_conf_size guest_free;
	bool never_balloon;
	bool never_swap;
	uint32_t priority;
	bool ksm;                   /* no: KSM stays off while this guest runs */
};

struct ovcd_config {
	char *path;                 /* the file it came from, for messages */

	struct {
		struct ovcd_conf_size reserve;  /* % of MemTotal */
		struct ovcd_conf_size low;      /* % of MemTotal, or auto */
		struct ovcd_conf_size high;     /* % of MemTotal, or auto */
		bool keep_headroom;            /* the guests' headroom is kept free too */
		uint64_t interval_usec;
		uint32_t psi_some_basis_points;  /* some avg10 above: pressure */
		uint32_t psi_full_basis_points;  /* full avg10 above: pressure */
		uint64_t psi_trigger_stall_usec; /* 0: no trigger fd */
		uint64_t psi_trigger_window_usec;
	} host;

	struct {
		bool enable;
		struct ovcd_conf_size step;       /* % of the guest's maximum */
		struct ovcd_conf_size floor;      /* % of the guest's maximum */
		struct ovcd_conf_size guest_free; /* % of the guest's current memory */
		struct ovcd_conf_size min_change; /* % of the guest's maximum */
		uint64_t stats_period_usec;
		uint64_t stale_after_usec;
		struct ovcd_conf_size emergency_available; /* % of the guest's current memory */
		uint64_t emergency_major_faults;          /* per second */
		struct ovcd_conf_size emergency_swap_in;   /* bytes per second */
		struct ovcd_conf_size emergency_step;      /* % of the guest's maximum */
		uint64_t emergency_stalls;                /* allocation stalls per second */
		uint64_t emergency_direct_reclaim;        /* pages per second */
		struct ovcd_conf_size headroom;            /* % of the guest's maximum */
		uint64_t headroom_decay_usec;             /* half-life of a learned burst */
		uint64_t idle_after_usec;
		uint64_t short_decay_usec;                /* half-life of a raised floor */
		uint64_t oom_cooldown_usec;
		uint64_t pending_timeout_usec;
	} balloon;

	struct {
		bool enable;
		bool use_zero_pages;
		uint64_t min_pages_to_scan;
		uint64_t max_pages_to_scan;
		uint64_t pages_boost;
		uint64_t pages_decay;
		struct ovcd_conf_size threshold;  /* % of MemTotal */
		struct ovcd_conf_size min_profit;
		uint64_t idle_ticks;
		uint64_t retry_after_usec;
	} ksm;

	struct {
		bool enable;
		struct ovcd_conf_size max;        /* % of the guest's maximum */
		struct ovcd_conf_size step;       /* % of the guest's maximum */
	} swap;

	struct {
		char *dir;                  /* "" = off; absolute path */
	} engine;

	struct {
		char *listen;               /* "" = off; loopback host:port */
		char *textfile;             /* "" = off; absolute path */
	} metrics;

	struct {
		char *socket;               /* absolute path */
		char *group;                /* "" = root only */
	} control;

	struct ovcd_guest_conf *guests;  /* in file order */
	size_t n_guests;
};

/* A config with every default (path "(defaults)"). -ENOMEM. */
int ovcd_config_new_default(struct ovcd_config **ret);

/*
 * Parse @text (@len bytes, need not be NUL-terminated) as read from @path
 * (used in messages only). On success *ret is a validated config. On
 * failure returns -EINVAL (-ENOMEM, -EFBIG for text over 1 MiB) and, when
 * @ret_errors is not NULL, sets it to a malloc'd text with one line per
 * error ("PATH:LINE: [SECTION] KEY: REASON\n"), which the caller frees.
 * *ret and *ret_errors are untouched when the call does not set them.
 */
int ovcd_config_parse(const char *path, const char *text, size_t len, struct ovcd_config **ret,
		     char **ret_errors);

/* Read and parse the file at @path; as ovcd_config_parse(), plus -errno of
 * open/read (with an error line naming the file). */
int ovcd_config_load(const char *path, struct ovcd_config **ret, char **ret_errors);

/* Takes NULL. */
void ovcd_config_free(struct ovcd_config *c);
static inline void ovcd_config_freep(struct ovcd_config **c)
{
	ovcd_config_free(*c);
}

/*
 * The settings for the guest named @name: for each key, the first
 * [guest "PATTERN"] section in file order whose pattern matches @name and
 * that sets the key; otherwise the [balloon] / [swap] value. Pure.
 */
void ovcd_config_guest_settings(const struct ovcd_config *c, const char *name,
			       struct ovcd_guest_settings *ret);

/* The host's watermarks in bytes for MemTotal @total_bytes: the reserve
 * (0 when it is not below MemTotal), low and high, "auto" resolved (low =
 * reserve + half of a minimum free size that grows with the square root of
 * MemTotal, 128MiB per GiB^1/2, high = low + the other half); high is never
 * below low. Any pointer may be NULL. Pure. */
void ovcd_config_watermarks(const struct ovcd_config *c, uint64_t total_bytes, uint64_t *ret_reserve,
			   uint64_t *ret_low, uint64_t *ret_high);

/* Write the effective config in the file's own syntax (every key, default
 * or not), for `ovcd --check-config`. Returns 0 or -errno of the stream. */
int ovcd_config_print(const struct ovcd_config *c, FILE *f);

/* Walk the key table (for the test that checks docs and the shipped
 * example): calls @fn for each key with its section ("guest" for
 * [guest "PATTERN"] keys) and default text ("" when the guest key inherits
 * from [balloon] or [swap]). */
void ovcd_config_foreach_key(void (*fn)(void *userdata, const char *section, const char *key,
				       const char *default_text),
			    void *userdata);

#endif
