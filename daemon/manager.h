/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's manager: the guest table, the balloon drivers, the control socket,
 * the metrics outputs and the one event loop that drives them all
 * (timerfd per tick, signalfd, sockets, driver fds, a PSI trigger).
 *
 * Single-threaded: everything runs on ovcd's main thread; no locks. (The
 * balloon drivers may run threads of their own; they only ever call back
 * from ovcd_balloon_process(), on this thread.)
 */
#ifndef OVCD_MANAGER_H
#define OVCD_MANAGER_H

#include <stdbool.h>
#include <stddef.h>

#include "host/config.h"

#define OVCD_MAX_QMP_DIRS 8

struct manager_opts {
	const char *config_path;
	bool dry_run;
	/* libvirt: a URI, or NULL for qemu:///system when libvirtd's socket
	 * exists; no_libvirt turns it off. */
	const char *libvirt_uri;
	bool no_libvirt;
	const char *qmp_dirs[OVCD_MAX_QMP_DIRS];
	size_t n_qmp_dirs;
	/* Manage only guests whose name matches one of these fnmatch(3)
	 * globs (none: every guest). Others are not touched at all. */
	const char *only[OVCD_MAX_QMP_DIRS];
	size_t n_only;
	/* The guests' memory cgroup directory, or NULL: host memory is then
	 * what the cgroup leaves (ovcd_meminfo_limit_to_cgroup). */
	const char *memory_cgroup;
};

struct manager;

/* Takes ownership of @cfg (also on failure). Opens the drivers, the control
 * socket and the metrics listener; saves the KSM knobs. -errno, logged. */
int manager_new(const struct manager_opts *opts, struct ovcd_config *cfg, struct manager **ret);

/* Run until SIGTERM/SIGINT. Returns 0, or -errno of a fatal error. */
int manager_run(struct manager *m);

/* Restores the saved KSM knobs, removes the control socket. Takes NULL. */
void manager_free(struct manager *m);

#endif
