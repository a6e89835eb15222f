/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A consumer of the installed library, built with pkg-config alone. */
#include <errno.h>
#include <stdio.h>
#include <ovc/ovc.h>

int main(void)
{
	printf("libovc %s (headers %s)\n", ovc_version_string(), OVC_VERSION_STRING);
	printf("EPERM: %s\n", ovc_strerror(-EPERM));
	return ovc_version() == OVC_VERSION_NUMBER ? 0 : 1;
}
