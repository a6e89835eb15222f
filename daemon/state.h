/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of ovcd's manager share: the manager (manager.c:
 * lifecycle, loop, tick, reload), its guest table (guests.c) and its
 * balloon drivers with the engines' directory (drivers.c). The control
 * socket server (control-server.c) is not one of them: it knows the
 * manager only through struct control_server_ops.
 *
 * ovcd's main thread only; no locks. (The balloon drivers may run threads
 * of their own; they only ever call back from ovcd_balloon_process(), on
 * this thread.)
 */
#ifndef OVCD_MANAGER_INTERNAL_H
#define OVCD_MANAGER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"
#include "host/config.h"
#include "host/policy.h"
#include "host/stats.h"
#include "host/units.h"
#include "logging.h"
#include "loop.h"
#include "manager.h"
#include "view.h"

/* QMP directories, libvirt, and the engines' directory. */
#define MAX_DRIVERS (OVCD_MAX_QMP_DIRS + 2)

struct control_server;

/* One balloon driver (drivers.c); its source is SRC_DRIVER. */
struct mdriver {
	struct source src;
	struct manager *m;
	ovcd_balloon *b;
	const char *kind;          /* "qmp", "libvirt", "ovc" */
	enum ovcd_driver_kind policy_kind;
	bool list_ok;              /* the last list worked: its guests are current */
	struct ovcd_ratelimit rl;
};

/* One guest of the table (guests.c). */
struct mguest {
	struct ovcd_guest_view v;
	/* The driver that lists the guest; for a guest with both a balloon
	 * and an embedded engine, the balloon's, and the engines' driver in
	 * engine_drv (NULL: no engine, or engine-only: then drv is it). */
	struct mdriver *drv;
	struct mdriver *engine_drv;
	bool engine_seen;
	int32_t pid;               /* the process behind drv's guest (driver.h) */
	struct ovcd_guest_stats stats, prev;
	uint64_t last_action_usec, last_emergency_usec;
	uint32_t emergency_count;  /* the policy's emergency streak (policy.h) */
	bool has_floor_override;
	struct ovcd_conf_size floor_override;
	/* What the policy learned about the guest (headroom, raised floor,
	 * distress baselines): from each decision, tick or check, into the
	 * next one. */
	struct ovcd_policy_guest_state pstate;
	bool free_page_reporting;  /* its balloon has free page reporting */
	bool seen;
	struct ovcd_ratelimit rl;
};

struct manager {
	struct manager_opts opts;
	struct ovcd_config *cfg;
	int epfd;
	/* Fresh statistics of a guest arrived (a driver's STATS event): set
	 * by manager.c, which runs the policy's check on them; drivers.c
	 * calls it, so that it never calls up into manager.c by name. */
	void (*stats_arrived)(struct manager *m, struct mguest *g);
	struct source timer, sig, metrics, psi, poll;
	int timer_fd, signal_fd, metrics_fd, psi_fd;
	int poll_fd;               /* every second: guests' stats between ticks */
	struct control_server *control;

	struct mdriver drivers[MAX_DRIVERS];
	size_t n_drivers;
	struct mdriver *engines;   /* the "ovc" driver in drivers[], or NULL */
	char *engine_dir;          /* what it watches (a copy: configs come and go) */

	struct mguest *guests;
	size_t n_guests, cap_guests;

	bool ksm_saved_valid, ksm_touched;
	struct ovcd_ksm_knobs ksm_saved;
	struct ovcd_policy_ksm_state ksm_state;

	uint64_t start_usec, last_tick_usec, ticks;
	uint64_t checks;           /* guest_stats_arrived() runs of the policy */
	struct ovcd_view view;
	struct ovcd_guest_view *view_guests;
	struct ovcd_ratelimit host_rl;
	char *metrics_text;
	size_t metrics_len;
	struct ovcd_metrics_server *http; /* metrics_fd is its epoll fd */
	bool ready, quit;
	char last_status[256];
	uint64_t last_status_usec;
};


/* ---- guests.c: the guest table ---- */

struct mguest *guest_find(struct manager *m, const char *name);
void guest_remove(struct manager *m, struct mguest *g, const char *why);
/* A guest with both a balloon and an engine loses its engine. */
void engine_detach(struct mguest *g, const char *why);
/* The config's settings for @g, with ovcctl's floor override. */
void guest_settings(const struct manager *m, const struct mguest *g, struct ovcd_guest_settings *s);
/* A guest's figures fresh from its driver (a tick's list, or between ticks). */
void guest_take_stats(struct manager *m, struct mguest *g, const struct ovcd_balloon_guest *bg);
/* The tick's list: every driver's guests into the table, the engines
 * joined to the balloon guests of their process, the gone ones out. */
void collect_guests(struct manager *m);

/* ---- drivers.c: the balloon drivers and the engines' directory ---- */

/* The QMP directories and libvirt of the command line. -errno, logged. */
int open_drivers(struct manager *m);
/* Let driver @d do its work: events, replies, deadlines. */
void driver_process(struct mdriver *d);
/* Watch @dir for engines in the engines' slot (the last one). On failure
 * the old handle, if any, stays. -errno, logged. */
int engines_open(struct manager *m, const char *dir);
void engines_close(struct manager *m);

#endif
