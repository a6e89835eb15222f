/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ovc/common.h>

unsigned ovc_version(void)
{
	return OVC_VERSION_NUMBER;
}

const char *ovc_version_string(void)
{
	return OVC_VERSION_STRING;
}
