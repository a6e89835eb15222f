/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test harness for real guests: builds the image (scripts/build-guest-image),
 * starts and stops virtlogd + libvirtd, boots guests as libvirt domains or as
 * bare QEMU processes, and talks to ovc-guest-workload inside them over the
 * guest's second serial port. Used by the balloon driver tests, the daemon
 * tests and the demo.
 *
 * Cleanup guarantees: bare QEMU children get PR_SET_PDEATHSIG(SIGKILL), so
 * they die with a crashed test; every guest is named ovc-test-<pid>-<n> and
 * harness_cleanup_leftovers() removes domains and QEMU processes of test
 * processes that no longer run. A libvirtd the harness did not start is used
 * but never stopped or restarted.
 *
 * Single-threaded: call from the test's main thread only.
 */
#ifndef OVC_GUEST_HARNESS_H
#define OVC_GUEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <libvirt/libvirt.h>

struct harness_image {
	char kernel[512];
	char initrd[512];
};

/* Build (or reuse the cached) guest image. 0, or -errno with *why set to a
 * reason to skip with. */
int harness_image(struct harness_image *img, const char **why);

/* Why a QEMU guest cannot run here, or NULL if it can. */
const char *harness_qemu_missing(void);

struct harness_libvirtd {
	bool started_libvirtd; /* a harness (maybe another process's) started it */
	bool started_virtlogd;
	virConnectPtr conn;    /* the harness's own connection (qemu:///system) */
	int lock_fd;           /* shared flock on /run/ovc-test-libvirtd.lock while in use */
};

/* Make sure a libvirtd runs and qemu:///system answers. *why on failure.
 * Test processes running side by side share it; see harness_libvirtd_stop. */
int harness_libvirtd_start(struct harness_libvirtd *d, const char **why);
/* Destroy our domains (ovc-test-<our pid>-*) and close. The last test
 * process using a libvirtd that a harness started stops it (and virtlogd,
 * if a harness started that too); one started otherwise keeps running. */
void harness_libvirtd_stop(struct harness_libvirtd *d);
/* Kill libvirtd (SIGTERM, wait) and start it again; running domains keep
 * running. -EPERM if no harness started it, -EBUSY if another test process
 * uses it. */
int harness_libvirtd_restart(struct harness_libvirtd *d);
bool harness_libvirtd_running(void);
/* The pid of the running libvirtd, or 0. */
pid_t harness_libvirtd_pid(void);

struct harness_guest_opts {
	unsigned mem_mib;          /* default 1024 */
	bool no_balloon_driver;    /* kernel flag ovc.noballoon: /init skips virtio_balloon */
	bool deflate_on_oom;       /* libvirt autodeflate / QEMU deflate-on-oom */
	bool free_page_reporting;
	unsigned stats_period_sec; /* libvirt <stats period>; 0: none */
	const char *qmp_dir;       /* bare QEMU: put the QMP socket here (default: guest dir) */
};

struct harness_guest {
	char name[64];       /* ovc-test-<pid>-<n> */
	char dir[256];       /* private directory: console log, sockets */
	char qmp_path[300];  /* bare QEMU only */
	char serial_path[300];
	char console_path[300];
	pid_t pid;           /* bare QEMU only, else 0 */
	struct harness_libvirtd *lvd; /* libvirt only: destroyed by name through lvd->conn,
				       * which survives harness_libvirtd_restart() */
	int serial_fd;       /* connection to ovc-guest-workload, or -1 */
};

/* Boot a bare QEMU (TCG) guest with a QMP socket and a balloon device with
 * id balloon0. Returns when QEMU is up (the QMP socket exists); the guest
 * kernel boots on. */
int harness_qemu_start(const struct harness_image *img, const struct harness_guest_opts *opts,
		       struct harness_guest *g);
/* Boot a transient libvirt domain (type qemu) from the image. -EOPNOTSUPP
 * where libvirt cannot give QEMU its mount namespace (/ not a mount point,
 * as in a chroot): the caller skips with HARNESS_NO_NAMESPACE_WHY. */
#define HARNESS_NO_NAMESPACE_WHY \
	"libvirt cannot start QEMU in a private mount namespace here (/ is not a mount point, as in a chroot)"
int harness_domain_start(struct harness_libvirtd *d, const struct harness_image *img,
			 const struct harness_guest_opts *opts, struct harness_guest *g);
/* Stop the guest (SIGKILL / virDomainDestroy) and remove its directory.
 * Safe to call twice and on a zeroed struct. */
void harness_guest_stop(struct harness_guest *g);

/* Wait until ovc-guest-workload answers "ping" (the guest has booted). */
int harness_guest_wait_ready(struct harness_guest *g, unsigned timeout_msec);
/* Send one command line, read its one-line reply ("ok ..." / "err ...")
 * into @reply. -ETIMEDOUT if none came. */
int harness_guest_cmd(struct harness_guest *g, const char *cmd, char *reply, size_t size,
		      unsigned timeout_msec);
/* The guest's own view, from /proc inside it. */
struct harness_meminfo {
	uint64_t total_kib, free_kib, available_kib, oom_kill;
};
int harness_guest_meminfo(struct harness_guest *g, struct harness_meminfo *ret);

/* Destroy domains, kill QEMU processes and remove /tmp directories named
 * ovc-test-<pid>-* whose <pid> no longer runs (left by a crashed earlier
 * run). @d may be NULL: then no domains. */
void harness_cleanup_leftovers(struct harness_libvirtd *d);

/* Poll @cond every 100 ms for up to @timeout_msec; true when it held. */
bool harness_wait_until(bool (*cond)(void *), void *arg, unsigned timeout_msec);

#endif
