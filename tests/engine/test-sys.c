/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: the syscall ops table and the fault injector the other suites use. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ovc/common.h>

#include "engine/compat.h"
#include "fault-inject.h"
#include "ovc-test.h"
#include "engine/sys.h"
#include "common/util.h"

static void test_open_uffd_real(void **state)
{
	int fd = sys_open_uffd(&sys_default, O_CLOEXEC | O_NONBLOCK);
	if (fd == -ENOSYS)
		skip_because("kernel without userfaultfd");
	if (fd == -EPERM)
		skip_because("no permission for userfaultfd (not root, no /dev/userfaultfd)");
	assert_true(fd >= 0);

	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	assert_int_equal(ioctl(fd, UFFDIO_API, &api), 0);
	print_message("userfaultfd features: 0x%llx%s%s\n", (unsigned long long)api.features,
		      (api.features & UFFD_FEATURE_MOVE) ? " MOVE" : "",
		      (api.features & UFFD_FEATURE_WP_ASYNC) ? " WP_ASYNC" : "");
	assert_true(api.features & UFFD_FEATURE_EVENT_REMOVE);
	close(fd);
}

/* Failing the Nth call: exactly that call fails, with the errno asked for,
 * whichever op it is; the others go to the kernel. */
static void test_fail_nth(void **state)
{
	struct fault_inject fi;
	long page = sysconf(_SC_PAGESIZE);

	for (long n = 1; n <= 3; n++) {
		fault_inject_init(&fi, n, ENOMEM, 0);
		void *p = SYS(&fi.sys, mmap, NULL, page, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		int r1 = p == MAP_FAILED ? -errno : 0;
		int r2 = p == MAP_FAILED ? 0 : SYS(&fi.sys, madvise, p, page, MADV_DONTNEED);
		r2 = r2 < 0 ? -errno : r2;
		int r3 = p == MAP_FAILED ? 0 : SYS(&fi.sys, munmap, p, page);
		r3 = r3 < 0 ? -errno : r3;

		assert_int_equal(r1, n == 1 ? -ENOMEM : 0);
		if (n >= 2) {
			assert_int_equal(r2, n == 2 ? -ENOMEM : 0);
			assert_int_equal(r3, n == 3 ? -ENOMEM : 0);
		}
		assert_int_equal(fi.injected, 1);
		if (n == 3) /* the injected munmap left the page mapped */
			munmap(p, page);
	}
}

static void test_op_mask_and_cqe(void **state)
{
	struct fault_inject fi;

	fault_inject_init(&fi, 2, EIO, 1u << OVC_SYS_URING_CQE);
	assert_int_equal(SYS(&fi.sys, uring_cqe, 4096), 4096);
	assert_int_equal(SYS(&fi.sys, uring_cqe, 4096), -EIO);
	assert_int_equal(SYS(&fi.sys, uring_cqe, 4096), 4096);
	assert_int_equal(fi.per_op[OVC_SYS_URING_CQE], 3);

	fault_inject_init(&fi, 1, EIO, 1u << OVC_SYS_URING_CQE);
	fi.short_res = 512;
	assert_int_equal(SYS(&fi.sys, uring_cqe, 4096), 512);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_uffd_real),
		cmocka_unit_test(test_fail_nth),
		cmocka_unit_test(test_op_mask_and_cqe),
	};
	return cmocka_run_group_tests_name("sys", tests, NULL, NULL);
}
