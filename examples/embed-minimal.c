/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * embed-minimal: the smallest complete program that embeds libovc — what
 * docs/embedding.md walks through. Built by the build (so it cannot rot)
 * and run as a test.
 *
 * It stands in for a VMM: 64 MiB of "guest RAM" (anonymous memory, as a VMM
 * would hand to KVM_SET_USER_MEMORY_REGION), a quarter written with data,
 * the rest zeros. The engine shares the zero pages; the program then checks
 * that every byte still reads as written, and with a directory argument
 * publishes the engine there for ovcd while it runs.
 *
 *   embed-minimal [PUBLISH_DIR]
 *
 * Exit status: 0 when the engine shared memory and nothing changed, 1 on a
 * mismatch or error, 77 when this machine cannot run an engine (no
 * userfaultfd permission), so that a test harness skips.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <ovc/ovc.h>

#define RAM_BYTES (64u << 20)

static void log_cb(void *userdata, enum ovc_log_level level, const char *msg)
{
	/* Called from the engine's threads: print, never touch guest RAM. */
	fprintf(stderr, "ovc[%d]: %s\n", (int)level, msg);
}

int main(int argc, char **argv)
{
	struct ovc_engine_opts opts = {
		.size = sizeof(opts), /* always: lets the library grow */
		.log_fn = log_cb,
	};
	struct ovc_engine_stats st = { .size = sizeof(st) };
	ovc_engine *e = NULL;
	uint8_t *ram;
	int r, rc = 1;

	/* 1. Guest RAM: private anonymous memory, page aligned. */
	ram = mmap(NULL, RAM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (size_t i = 0; i < RAM_BYTES / 4; i++)
		ram[i] = (uint8_t)(i * 7 + 1);
	memset(ram + RAM_BYTES / 4, 0, RAM_BYTES - RAM_BYTES / 4);

	/* 2. An engine with its own threads (the default). */
	r = ovc_engine_new(&opts, &e);
	if (r == -EPERM || r == -ENOSYS) {
		fprintf(stderr, "embed-minimal: cannot run an engine here: %s\n", ovc_strerror(r));
		return 77;
	}
	if (r < 0) {
		fprintf(stderr, "ovc_engine_new: %s\n", ovc_strerror(r));
		goto out;
	}

	/* 3. Hand the RAM over. From here the range is MADV_DONTFORK, and
	 *    every access to a page the engine took away is served by its
	 *    fault handler; the program keeps using the memory as before. */
	r = ovc_region_add(e, ram, RAM_BYTES, 0 /* guest-physical address */, 0);
	if (r < 0) {
		fprintf(stderr, "ovc_region_add: %s\n", ovc_strerror(r));
		goto out;
	}

	/* 4. Optionally, let ovcd see and steer this engine. */
	if (argc > 1) {
		struct ovc_publish_opts p = {
			.size = sizeof(p),
			.dir = argv[1],
			.name = "embed-minimal",
			.max_bytes = RAM_BYTES,
		};

		r = ovc_engine_publish(e, &p);
		if (r < 0) {
			fprintf(stderr, "ovc_engine_publish: %s\n", ovc_strerror(r));
			goto out;
		}
	}

	/* 5. The engine scans on its own; a VMM need not call this. Here one
	 *    pass now makes the result certain. */
	if (ovc_engine_scan_sync(e, 0) < 0)
		goto out;
	r = ovc_engine_stats(e, &st);
	if (r < 0)
		goto out;
	printf("embed-minimal: %llu MiB registered, %llu MiB given back\n",
	       (unsigned long long)(st.region_bytes >> 20), (unsigned long long)(st.saved_bytes >> 20));

	/* 6. The guest's view is unchanged. */
	for (size_t i = 0; i < RAM_BYTES; i++) {
		uint8_t want = i < RAM_BYTES / 4 ? (uint8_t)(i * 7 + 1) : 0;

		if (ram[i] != want) {
			fprintf(stderr, "embed-minimal: byte %zu reads %u, not %u\n", i, ram[i], want);
			goto out;
		}
	}
	rc = st.saved_bytes > 0 ? 0 : 1;
out:
	/* 7. Free the engine before unmapping: it puts every page back and
	 *    removes the published socket. */
	ovc_engine_free(e);
	munmap(ram, RAM_BYTES);
	return rc;
}
