/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd: the host daemon. argv → config → requirements → manager → event
 * loop, in the manner of systemd-oomd. Single-threaded (the manager's event
 * loop); see manager.c.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <ovc/ovc.h>

#include "host/config.h"
#include "host/host.h"
#include "logging.h"
#include "manager.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ovcd [OPTIONS]\n"
		"Balloon, KSM and overcommit control for the guests of a KVM host.\n\n"
		"  -c, --config PATH    configuration file (default " OVC_CONFIG_DEFAULT_PATH ")\n"
		"      --check-config   validate the configuration, print the effective one, exit\n"
		"      --dry-run        run the whole loop, log what would be done, change nothing\n"
		"      --libvirt URI    manage the guests of this libvirt connection\n"
		"                       (default qemu:///system when libvirtd's socket exists)\n"
		"      --no-libvirt     do not connect to libvirt\n"
		"      --qmp-dir DIR    manage bare QEMU guests by the QMP sockets in DIR (repeatable)\n"
		"                       (VMMs that embed libovc: [engine] dir in the config)\n"
		"      --only GLOB      manage only the guests whose name matches GLOB (repeatable)\n"
		"      --memory-cgroup DIR\n"
		"                       the guests run in this memory cgroup (e.g.\n"
		"                       /sys/fs/cgroup/memory/machine): its limit is the host's\n"
		"                       memory for them, what it leaves is MemAvailable\n"
		"  -v, --verbose        log at debug level\n"
		"  -h, --help           this text\n"
		"      --version        print the version\n");
}

enum { OPT_CHECK = 256, OPT_DRY, OPT_LIBVIRT, OPT_NO_LIBVIRT, OPT_QMP, OPT_ONLY, OPT_CGROUP, OPT_VERSION };

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "dry-run", no_argument, NULL, OPT_DRY },
		{ "libvirt", required_argument, NULL, OPT_LIBVIRT },
		{ "no-libvirt", no_argument, NULL, OPT_NO_LIBVIRT },
		{ "qmp-dir", required_argument, NULL, OPT_QMP },
		{ "only", required_argument, NULL, OPT_ONLY },
		{ "memory-cgroup", required_argument, NULL, OPT_CGROUP },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ 0 },
	};
	struct manager_opts mo = { .config_path = OVC_CONFIG_DEFAULT_PATH };
	struct ovcd_config *cfg = NULL;
	struct manager *m = NULL;
	enum ovc_log_level level = OVC_LOG_INFO;
	bool check = false;
	char *errors = NULL;
	struct ovcd_meminfo mi;
	int c, r;

	while ((c = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			mo.config_path = optarg;
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_DRY:
			mo.dry_run = true;
			break;
		case OPT_LIBVIRT:
			mo.libvirt_uri = optarg;
			mo.no_libvirt = false;
			break;
		case OPT_NO_LIBVIRT:
			mo.no_libvirt = true;
			mo.libvirt_uri = NULL;
			break;
		case OPT_QMP:
			if (mo.n_qmp_dirs == OVCD_MAX_QMP_DIRS) {
				fprintf(stderr, "ovcd: at most %d --qmp-dir\n", OVCD_MAX_QMP_DIRS);
				return 2;
			}
			mo.qmp_dirs[mo.n_qmp_dirs++] = optarg;
			break;
		case OPT_ONLY:
			if (mo.n_only == OVCD_MAX_QMP_DIRS) {
				fprintf(stderr, "ovcd: at most %d --only\n", OVCD_MAX_QMP_DIRS);
				return 2;
			}
			mo.only[mo.n_only++] = optarg;
			break;
		case OPT_CGROUP:
			if (optarg[0] != '/') {
				fprintf(stderr, "ovcd: --memory-cgroup wants an absolute path, not '%s'\n", optarg);
				return 2;
			}
			mo.memory_cgroup = optarg;
			break;
		case 'v':
			level = OVC_LOG_DEBUG;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_VERSION:
			printf("ovcd %s\n", ovc_version_string());
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ovcd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	ovcd_log_open("ovcd", level);

	r = ovcd_config_load(mo.config_path, &cfg, &errors);
	if (r < 0) {
		/* One line per error, PATH:LINE: [SECTION] KEY: REASON. */
		if (check)
			fputs(errors ? errors : "", stderr);
		else {
			char *save = NULL;

			for (char *l = errors ? strtok_r(errors, "\n", &save) : NULL; l;
			     l = strtok_r(NULL, "\n", &save))
				dlog_err("%s", l);
		}
		if (!errors)
			fprintf(stderr, "ovcd: %s: %s\n", mo.config_path, strerror(-r));
		free(errors);
		return 1;
	}
	if (check) {
		r = ovcd_config_print(cfg, stdout);
		ovcd_config_free(cfg);
		return r < 0 || fflush(stdout) != 0 ? 1 : 0;
	}

	/* Requirements: without /proc/meminfo there is nothing to steer by. */
	r = ovcd_meminfo_read(NULL, &mi);
	if (r < 0) {
		dlog_err("cannot read /proc/meminfo: %s", strerror(-r));
		ovcd_config_free(cfg);
		return 1;
	}
	r = ovcd_psi_read(NULL, &(struct ovcd_psi){ 0 });
	if (r < 0)
		dlog_notice("no memory PSI (%s%s): host pressure from MemAvailable only", strerror(-r),
			    r == -EOPNOTSUPP ? "; boot with psi=1" : "");

	r = manager_new(&mo, cfg, &m);
	if (r < 0)
		return 1;
	r = manager_run(m);
	manager_free(m);
	return r < 0 ? 1 : 0;
}
