/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-vmm — a small VMM on the raw KVM API whose guest RAM is run by libovc.
 *
 * It gives a guest (payload.c, 64-bit, user mode) at least 1 GiB of
 * RAM, registers that RAM with an ovc engine, and runs one vCPU. The guest
 * fills its memory with patterns and zeros, keeps a checksum per page, works
 * on a hot set while the rest idles, then comes back to all of it and checks
 * every page. Meanwhile the engine shares the zero pages and, asked to
 * reclaim, swaps cold pages to disk; every vCPU access to such a page is a
 * userfaultfd fault the engine serves. Exit status 0 only if every checksum
 * matched (and, with --check, the engine really shared and swapped).
 *
 * Threads: main runs the vCPU (KVM_RUN) and handles its exits; a control
 * thread drives the engine (scan, reclaim target, waiting for progress) and
 * tells the guest to come back through the mailbox. The engine's own threads
 * serve faults. Only public libovc API is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ovc/ovc.h>

#include "payload.h"
#include "protocol.h"

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

struct vmm {
	/* options */
	uint64_t mem_bytes;
	unsigned reclaim_percent; /* of guest RAM the engine is asked to give back */
	unsigned hot_permille;
	unsigned timeout_sec;
	const char *swap_dir;
	const char *publish_dir;  /* --publish: control endpoint for ovcd */
	bool hold;                /* --hold: idle until SIGTERM/SIGINT, then verify */
	bool use_engine;
	bool json;
	bool check;
	bool verbose;

	/* KVM */
	int kvm_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *ram;

	ovc_engine *engine;
	struct vmm_mailbox *mb;

	pthread_t control;
	atomic_int phase;          /* last enum vmm_phase reached */
	atomic_bool done;

	/* figures for the summary */
	uint64_t rss_filled_bytes, rss_reclaimed_bytes, rss_end_bytes;
	struct ovc_engine_stats st_reclaimed, st_end;
	uint32_t mismatches;
	double run_sec;
	char linebuf[256];
	size_t linelen;
};

/* --hold: set by SIGTERM/SIGINT; the control thread then calls the guest
 * back, which verifies every page before the VMM exits. */
static volatile sig_atomic_t stop_holding;

static void on_stop(int sig)
{
	stop_holding = 1;
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "ovc-vmm: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void engine_log(void *userdata, enum ovc_log_level level, const char *msg)
{
	struct vmm *v = userdata;
	if (v->verbose || level <= OVC_LOG_WARNING)
		fprintf(stderr, "ovc-vmm: engine: %s\n", msg);
}

static void engine_io_error(void *userdata, uint64_t guest_phys, int err)
{
	fprintf(stderr, "ovc-vmm: engine cannot read back guest page 0x%" PRIx64 ": %s\n",
		guest_phys, ovc_strerror(err));
}

/* Resident bytes of the guest RAM mapping, from /proc/self/smaps. The
 * kernel's shared zero page is not counted: shared zero pages show here as
 * memory given back. */
static uint64_t ram_rss_bytes(const struct vmm *v)
{
	char line[256];
	char want[32];
	bool in = false;
	uint64_t kib = 0;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f)
		return 0;
	snprintf(want, sizeof(want), "%" PRIxPTR "-", (uintptr_t)v->ram);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, want, strlen(want)) == 0) {
			in = true;
			continue;
		}
		if (in && sscanf(line, "Rss: %" SCNu64 " kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib * 1024;
}

static void get_stats(struct vmm *v, struct ovc_engine_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	if (v->engine) {
		int r = ovc_engine_stats(v->engine, st);
		if (r < 0)
			die("ovc_engine_stats: %s", ovc_strerror(r));
	}
}

static void setup_ram(struct vmm *v)
{
	v->ram = mmap(NULL, v->mem_bytes, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (v->ram == MAP_FAILED)
		die("cannot map %" PRIu64 " MiB of guest RAM: %m", v->mem_bytes / MIB);

	/* The payload and its mailbox go in before the engine sees the RAM. */
	memcpy(v->ram + VMM_PAYLOAD_GPA, ovc_vmm_payload, sizeof(ovc_vmm_payload));
	v->mb = (struct vmm_mailbox *)(v->ram + VMM_MAILBOX_GPA);

	uint64_t pages_guess = v->mem_bytes / VMM_PAGE;
	uint64_t data_start = VMM_CSUM_GPA + pages_guess * sizeof(uint32_t);
	data_start = (data_start + 2 * MIB - 1) & ~(2 * MIB - 1);
	v->mb->data_start = (uint32_t)data_start;
	v->mb->data_pages = (uint32_t)((v->mem_bytes - data_start) / VMM_PAGE);
	v->mb->seed = (uint32_t)time(NULL);
	v->mb->hot_permille = v->hot_permille;

	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = v->mem_bytes,
		.userspace_addr = (uintptr_t)v->ram,
	};
	if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die("KVM_SET_USER_MEMORY_REGION: %m");
}

static void setup_engine(struct vmm *v)
{
	struct ovc_engine_opts opts = {
		.size = sizeof(opts),
		.log_fn = engine_log,
		.log_userdata = v,
		.log_level = v->verbose ? OVC_LOG_DEBUG : OVC_LOG_NOTICE,
		.scan_interval_usec = 200000,
		.scan_cpu_permille = 500,
		.swap_path = v->swap_dir,
		.swap_size_bytes = v->swap_dir ? v->mem_bytes : 0,
		.cold_age_usec = 1000000,
		.io_error_fn = engine_io_error,
		.io_error_userdata = v,
	};
	int r = ovc_engine_new(&opts, &v->engine);
	if (r < 0)
		die("cannot create the ovc engine: %s", ovc_strerror(r));
	r = ovc_region_add(v->engine, v->ram, v->mem_bytes, 0, 0);
	if (r < 0)
		die("cannot register guest RAM with the engine: %s", ovc_strerror(r));
	if (v->publish_dir) {
		char name[OVC_PUBLISH_NAME_MAX + 1];
		struct ovc_publish_opts p = {
			.size = sizeof(p),
			.dir = v->publish_dir,
			.name = name,
			.max_bytes = v->mem_bytes,
		};

		snprintf(name, sizeof(name), "ovc-vmm-%d", (int)getpid());
		r = ovc_engine_publish(v->engine, &p);
		if (r < 0)
			die("cannot publish the engine in %s: %s", v->publish_dir, ovc_strerror(r));
	}
}

static void setup_vcpu(struct vmm *v)
{
	v->vcpu_fd = ioctl(v->vm_fd, KVM_CREATE_VCPU, 0);
	if (v->vcpu_fd < 0)
		die("KVM_CREATE_VCPU: %m");
	int sz = ioctl(v->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0)
		die("KVM_GET_VCPU_MMAP_SIZE: %m");
	v->run_size = (size_t)sz;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu_fd, 0);
	if (v->run == MAP_FAILED)
		die("mmap kvm_run: %m");

	/* The CPUID KVM supports, as is: the payload needs long mode only. */
	struct {
		struct kvm_cpuid2 head;
		struct kvm_cpuid_entry2 entries[128];
	} cpuid = { .head.nent = 128 };
	if (ioctl(v->kvm_fd, KVM_GET_SUPPORTED_CPUID, &cpuid) < 0)
		die("KVM_GET_SUPPORTED_CPUID: %m");
	if (ioctl(v->vcpu_fd, KVM_SET_CPUID2, &cpuid) < 0)
		die("KVM_SET_CPUID2: %m");

	/* Identity map the first 4 GiB with 2 MiB user pages. */
	uint64_t *pml4 = (uint64_t *)(v->ram + VMM_PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(v->ram + VMM_PDPT_GPA);
	uint64_t *pd = (uint64_t *)(v->ram + VMM_PD_GPA);
	const uint64_t P = 1, RW = 2, US = 4, PS = 0x80;
	pml4[0] = VMM_PDPT_GPA | P | RW | US;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (VMM_PD_GPA + i * 4096) | P | RW | US;
	for (uint64_t i = 0; i < 4 * 512 && (i << 21) < v->mem_bytes; i++)
		pd[i] = (i << 21) | P | RW | US | PS;

	/* Long mode, and the payload at CPL 3 with IOPL 3: on the PVM backend
	 * of these machines guest kernel mode is emulated instruction by
	 * instruction while user mode runs natively, and the payload needs no
	 * privilege (no IDT; it talks through outl, which IOPL 3 allows). */
	struct kvm_sregs sregs;
	if (ioctl(v->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		die("KVM_GET_SREGS: %m");
	struct kvm_segment seg = {
		.base = 0, .limit = 0xffffffff, .selector = 0x1b, .present = 1, .dpl = 3,
		.type = 11 /* code: execute, read, accessed */, .s = 1, .l = 1, .g = 1,
	};
	sregs.cs = seg;
	seg.type = 3; /* data: read, write, accessed */
	seg.selector = 0x23;
	seg.l = 0;
	seg.db = 1;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
	sregs.cr3 = VMM_PML4_GPA;
	sregs.cr4 = 1u << 5;                   /* PAE */
	sregs.cr0 = 0x80000001u | (1u << 16);  /* PG, PE, WP */
	sregs.efer = (1u << 8) | (1u << 10);   /* LME, LMA */
	if (ioctl(v->vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		die("KVM_SET_SREGS: %m");

	struct kvm_regs regs = {
		.rip = VMM_PAYLOAD_GPA,
		.rsp = VMM_STACK_TOP,
		.rflags = 2 | (3u << 12), /* IOPL 3 */
	};
	if (ioctl(v->vcpu_fd, KVM_SET_REGS, &regs) < 0)
		die("KVM_SET_REGS: %m");
}

static void guest_char(struct vmm *v, char c)
{
	if (c == '\n' || v->linelen == sizeof(v->linebuf) - 1) {
		v->linebuf[v->linelen] = 0;
		if (!v->json)
			printf("%s\n", v->linebuf);
		v->linelen = 0;
		if (c == '\n')
			return;
	}
	v->linebuf[v->linelen++] = c;
}

/* The control thread: once the guest has filled its memory, let the engine
 * share zeros and reclaim part of the RAM while the guest keeps working on
 * its hot set; then call the guest back to all of its memory. */
static void *control_main(void *arg)
{
	struct vmm *v = arg;
	double t0;

	while (atomic_load(&v->phase) < VMM_PHASE_FILLED && !atomic_load(&v->done))
		usleep(1000);
	if (atomic_load(&v->done))
		return NULL;
	v->rss_filled_bytes = ram_rss_bytes(v);

	if (v->engine) {
		int64_t n = ovc_engine_scan_sync(v->engine, 0);
		if (n < 0)
			fprintf(stderr, "ovc-vmm: scan: %s\n", ovc_strerror((int)n));
		uint64_t target = v->mem_bytes / 100 * v->reclaim_percent;
		/* --reclaim 0 leaves the target to whoever steers the engine
		 * (ovcd through --publish). */
		int r = target ? ovc_engine_reclaim(v->engine, target, 0) : 0;
		if (r < 0)
			fprintf(stderr, "ovc-vmm: reclaim %" PRIu64 " MiB: %s\n", target / MIB,
				ovc_strerror(r));
		/* Wait until the engine has given back the target, or stopped
		 * making progress, while the guest works. */
		t0 = now_sec();
		uint64_t last = 0;
		double last_progress = t0;
		for (;;) {
			struct ovc_engine_stats st;
			get_stats(v, &st);
			if (st.saved_bytes >= target)
				break;
			if (st.saved_bytes != last) {
				last = st.saved_bytes;
				last_progress = now_sec();
			}
			if (now_sec() - last_progress > 5 || now_sec() - t0 > v->timeout_sec)
				break;
			usleep(50000);
		}
	}
	/* At least a few rounds of hot work while the rest is idle. */
	t0 = now_sec();
	while (v->mb->rounds < 3 && now_sec() - t0 < v->timeout_sec)
		usleep(10000);
	if (v->hold) {
		printf("ovc-vmm: holding (pid %d) until SIGTERM\n", (int)getpid());
		fflush(stdout);
		while (!stop_holding)
			usleep(20000);
	}
	get_stats(v, &v->st_reclaimed);
	v->rss_reclaimed_bytes = ram_rss_bytes(v);
	v->mb->come_back = 1;
	return NULL;
}

static unsigned long long rip_of(struct vmm *v)
{
	struct kvm_regs regs;
	return ioctl(v->vcpu_fd, KVM_GET_REGS, &regs) < 0 ? 0 : regs.rip;
}

static void run_vcpu(struct vmm *v)
{
	double t0 = now_sec();

	for (;;) {
		if (ioctl(v->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN: %m");
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO: {
			uint32_t val = 0;
			if (v->run->io.direction != KVM_EXIT_IO_OUT)
				die("guest read port 0x%x", v->run->io.port);
			memcpy(&val, (uint8_t *)v->run + v->run->io.data_offset,
			       v->run->io.size < 4 ? v->run->io.size : 4);
			switch (v->run->io.port) {
			case VMM_PORT_CHAR:
				guest_char(v, (char)val);
				break;
			case VMM_PORT_PHASE:
				atomic_store(&v->phase, (int)val);
				break;
			case VMM_PORT_DONE:
				v->mismatches = val;
				v->run_sec = now_sec() - t0;
				return;
			default:
				die("guest wrote unknown port 0x%x", v->run->io.port);
			}
			break;
		}
		case KVM_EXIT_HLT:
			die("guest halted before it was done");
		case KVM_EXIT_MMIO:
			die("guest touched unbacked memory at 0x%llx", (unsigned long long)v->run->mmio.phys_addr);
		case KVM_EXIT_SHUTDOWN:
			die("guest shut down (triple fault) at rip 0x%llx", rip_of(v));
		case KVM_EXIT_INTERNAL_ERROR:
			die("KVM internal error, suberror %u", v->run->internal.suberror);
		default:
			die("unexpected KVM exit %u", v->run->exit_reason);
		}
	}
}

static void print_summary(struct vmm *v)
{
	const struct ovc_engine_stats *a = &v->st_reclaimed, *e = &v->st_end;
	const double mib = (double)MIB;

	if (v->json) {
		printf("{\"mem_bytes\":%" PRIu64 ",\"engine\":%s,\"pages_checked\":%u,"
		       "\"mismatches\":%u,\"rounds\":%u,\"guest_zero_pages\":%u,"
		       "\"rss_filled_bytes\":%" PRIu64 ",\"rss_reclaimed_bytes\":%" PRIu64
		       ",\"rss_end_bytes\":%" PRIu64 ",\"zero_pages_shared\":%" PRIu64
		       ",\"pages_swapped_out\":%" PRIu64 ",\"pages_swapped_in\":%" PRIu64
		       ",\"zero_faults\":%" PRIu64 ",\"swap_faults\":%" PRIu64
		       ",\"swap_cache_hits\":%" PRIu64 ",\"saved_bytes_at_peak\":%" PRIu64 ",\"run_sec\":%.2f}\n",
		       v->mem_bytes, v->engine ? "true" : "false", v->mb->pages_checked,
		       v->mismatches, v->mb->rounds, v->mb->zero_pages, v->rss_filled_bytes,
		       v->rss_reclaimed_bytes, v->rss_end_bytes, a->zero_pages_now,
		       e->pages_swapped_out, e->pages_swapped_in, e->zero_faults, e->swap_faults,
		       e->swap_cache_hits, a->saved_bytes, v->run_sec);
		return;
	}
	printf("\novc-vmm: %" PRIu64 " MiB guest, %s, %.1f s\n", v->mem_bytes / MIB,
	       v->engine ? "RAM under the ovc engine" : "no engine", v->run_sec);
	printf("  guest RSS after fill       %8.1f MiB\n", (double)v->rss_filled_bytes / mib);
	printf("  guest RSS while idle       %8.1f MiB  (engine gave back %.1f MiB)\n",
	       (double)v->rss_reclaimed_bytes / mib, (double)a->saved_bytes / mib);
	printf("  guest RSS at the end       %8.1f MiB\n", (double)v->rss_end_bytes / mib);
	printf("  zero pages shared          %8" PRIu64 "  (guest left %u zero)\n",
	       a->zero_pages_now, v->mb->zero_pages);
	printf("  pages swapped out / in     %8" PRIu64 " / %" PRIu64 "\n", e->pages_swapped_out,
	       e->pages_swapped_in);
	printf("  faults served: zero / swap %8" PRIu64 " / %" PRIu64 "\n", e->zero_faults,
	       e->swap_faults);
	printf("  swap-cache hits (no write) %8" PRIu64 "\n", e->swap_cache_hits);
	printf("  hot rounds while idle      %8u\n", v->mb->rounds);
	printf("  pages checked              %8u  mismatches: %u  -> %s\n", v->mb->pages_checked,
	       v->mismatches, v->mismatches ? "FAILED" : "every checksum matched");
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t n = strtoull(s, &end, 10);
	if (!strcmp(end, "GiB") || !strcmp(end, "G"))
		return n * GIB;
	if (!strcmp(end, "MiB") || !strcmp(end, "M"))
		return n * MIB;
	if (!*end)
		return n;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ovc-vmm [--mem SIZE] [--no-engine] [--no-swap] [--swap-dir DIR] [--reclaim PERCENT]\n"
		"               [--hot PERMILLE] [--timeout SEC] [--publish DIR] [--check] [--json]\n"
		"               [--hold] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "no-engine", no_argument, NULL, 'n' },
		{ "no-swap", no_argument, NULL, 'S' },
		{ "swap-dir", required_argument, NULL, 's' },
		{ "reclaim", required_argument, NULL, 'r' },
		{ "hot", required_argument, NULL, 'H' },
		{ "timeout", required_argument, NULL, 't' },
		{ "publish", required_argument, NULL, 'P' },
		{ "hold", no_argument, NULL, 'o' },
		{ "check", no_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct vmm v = {
		.mem_bytes = GIB,
		.reclaim_percent = 60,
		.hot_permille = 200,
		.timeout_sec = 60,
		.swap_dir = "/var/tmp",
		.use_engine = true,
		.kvm_fd = -1,
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:nSs:r:H:t:P:ocjvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			v.mem_bytes = parse_size(optarg);
			if (v.mem_bytes < 64 * MIB || v.mem_bytes > 3 * GIB || v.mem_bytes % (2 * MIB))
				die("--mem must be a multiple of 2 MiB between 64 MiB and 3 GiB");
			break;
		case 'n':
			v.use_engine = false;
			break;
		case 's':
			v.swap_dir = optarg;
			break;
		case 'S':
			v.swap_dir = NULL;
			break;
		case 'r':
			v.reclaim_percent = (unsigned)atoi(optarg);
			if (v.reclaim_percent > 95)
				die("--reclaim takes 0..95 (percent of guest RAM)");
			break;
		case 'H':
			v.hot_permille = (unsigned)atoi(optarg);
			if (v.hot_permille > 1000)
				die("--hot takes 0..1000 (permille of guest RAM)");
			break;
		case 't':
			v.timeout_sec = (unsigned)atoi(optarg);
			break;
		case 'P':
			v.publish_dir = optarg;
			break;
		case 'o': {
			struct sigaction sa = { .sa_handler = on_stop };

			v.hold = true;
			sigaction(SIGTERM, &sa, NULL);
			sigaction(SIGINT, &sa, NULL);
			break;
		}
		case 'c':
			v.check = true;
			break;
		case 'j':
			v.json = true;
			break;
		case 'v':
			v.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}

	v.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v.kvm_fd < 0)
		die("cannot open /dev/kvm: %m");
	if (ioctl(v.kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		die("unexpected KVM API version");
	v.vm_fd = ioctl(v.kvm_fd, KVM_CREATE_VM, 0);
	if (v.vm_fd < 0)
		die("KVM_CREATE_VM: %m");

	setup_ram(&v);
	if (v.use_engine)
		setup_engine(&v);
	setup_vcpu(&v);

	if (pthread_create(&v.control, NULL, control_main, &v))
		die("cannot start the control thread");
	run_vcpu(&v);
	atomic_store(&v.done, true);
	pthread_join(v.control, NULL);

	get_stats(&v, &v.st_end);
	v.rss_end_bytes = ram_rss_bytes(&v);
	print_summary(&v);

	int rc = v.mismatches ? 1 : 0;
	if (v.check && v.engine) {
		if (!v.st_reclaimed.zero_pages_now) {
			fprintf(stderr, "ovc-vmm: --check: the engine shared no zero page\n");
			rc = 1;
		}
		if (v.swap_dir && (!v.st_end.pages_swapped_out || !v.st_end.pages_swapped_in)) {
			fprintf(stderr, "ovc-vmm: --check: the engine swapped nothing out and back\n");
			rc = 1;
		}
	}
	ovc_engine_free(v.engine);
	munmap(v.run, v.run_size);
	close(v.vcpu_fd);
	close(v.vm_fd);
	close(v.kvm_fd);
	munmap(v.ram, v.mem_bytes);
	return rc;
}
