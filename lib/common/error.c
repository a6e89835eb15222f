/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc_strerror(): every errno the API returns, said in ovc's terms.
 * Thread-safe: only static strings.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <ovc/common.h>

#include "common/error.h"

/* Keep in step with the RETURN VALUE sections of the man pages; the unit
 * test checks that every entry has its own text. */
const struct error_text error_texts[] = {
	{ EINVAL, "Invalid argument: an unknown flag, a reserved field that is not 0, an option or "
		  "stats struct smaller than its first version, an address or length that is not "
		  "page aligned, or a value out of range" },
	{ E2BIG, "Argument list too long: an option or stats struct is larger than this library's, "
		 "and a byte past the end of the library's struct is not zero (the caller was built "
		 "against newer headers and asks for something this library does not have)" },
	{ EPERM, "Operation not permitted: userfaultfd needs read-write access to /dev/userfaultfd, "
		 "CAP_SYS_PTRACE, or vm.unprivileged_userfaultfd=1 to serve faults raised by KVM" },
	{ EACCES, "Permission denied: the control socket or a file of the engine cannot be opened" },
	{ ENOSYS, "Function not implemented: the running kernel lacks a feature ovc needs "
		  "(userfaultfd, io_uring or PAGEMAP_SCAN)" },
	{ EOPNOTSUPP, "Operation not supported: the kernel or the memory of this region cannot do this "
		      "(for example UFFDIO_MOVE on shared memory)" },
	{ ENOMEM, "Cannot allocate memory: the engine could not allocate its metadata or buffers" },
	{ EEXIST, "File exists: the region overlaps one that is already registered" },
	{ ENOENT, "No such file or directory: no region, guest or file by that name" },
	{ EFAULT, "Bad address: the range is not mapped, or is memory userfaultfd cannot register "
		  "(file-backed, hugetlb or read-only)" },
	{ EBUSY, "Device or resource busy: the page or region is in use (in transit, pinned, or shared by KSM)" },
	{ EAGAIN, "Resource temporarily unavailable: retry after pending userfaultfd events are read" },
	{ ENOSPC, "No space left on device: the swap file is full" },
	{ EIO, "Input/output error: a read or write of the swap file failed" },
	{ ENODEV, "No such device: the guest has no balloon device, or its driver is not loaded" },
	{ ENOTCONN, "Transport endpoint is not connected: the connection to libvirtd or QEMU is lost" },
	{ ETIMEDOUT, "Connection timed out: the hypervisor or guest did not answer in time" },
	{ EPROTO, "Protocol error: the peer sent a message ovc cannot parse" },
	{ ERANGE, "Numerical result out of range: a size or ratio does not fit" },
	{ EBADMSG, "Bad message: the input is malformed" },
	{ ECANCELED, "Operation canceled: the engine or region was removed while the call waited" },
	{ ESTALE, "Stale file handle: the guest's statistics are too old to be used" },
	{ EFBIG, "File too large: the configuration file is over 1 MiB, or a /proc or /sys file "
		 "is longer than ovc expects" },
	{ ENAMETOOLONG, "File name too long: a path (with its root prefix) does not fit PATH_MAX" },
	{ EISDIR, "Is a directory: the configuration path names a directory, not a file" },
	{ EALREADY, "Operation already in progress: the engine is published already" },
	{ EADDRINUSE, "Address already in use: a live engine is published under that name" },
	{ EMSGSIZE, "Message too long: a protocol line is longer than the protocol allows" },
	{ EPROTONOSUPPORT, "Protocol not supported: the peer speaks another version of the engine protocol" },
	{ 0, NULL },
};

const char *ovc_strerror(int err)
{
	/* The magnitude as unsigned: negating INT_MIN as an int overflows.
	 * No errno is that large; it falls through to "unknown". */
	unsigned mag = err < 0 ? 0u - (unsigned)err : (unsigned)err;

	if (mag == 0)
		return "Success";
	for (const struct error_text *t = error_texts; t->text; t++)
		if ((unsigned)t->err == mag)
			return t->text;
	/* strerrordesc_np() gives the C library's static text, or NULL for a
	 * number it does not know; strerror() would format those into a
	 * per-thread buffer that the next call overwrites. */
	const char *s = mag <= INT_MAX ? strerrordesc_np((int)mag) : NULL;
	return s ? s : "Unknown error: not an errno value that ovc or the C library knows";
}
