// SPDX-License-Identifier: LGPL-2.1-or-later
// unit: the public headers compile as C++ and the symbols link with C names.
#include <ovc/ovc.h>
#include <cstdio>
#include <cstring>

int main()
{
	struct ovc_engine_opts opts = {};
	opts.size = sizeof(opts);
	if (ovc_version() != OVC_VERSION_NUMBER) {
		std::printf("version mismatch: %u vs %u\n", ovc_version(), OVC_VERSION_NUMBER);
		return 1;
	}
	if (std::strcmp(ovc_strerror(0), "Success") != 0)
		return 1;
	std::printf("C++: libovc %s\n", ovc_version_string());
	return 0;
}
