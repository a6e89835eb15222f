/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness for ovcd's control protocol parser (daemon/control.c),
 * the one parser that reads what local users send. Properties checked
 * beyond "no crash, no leak, no UB under ASan/UBSan":
 *  - a refused request gets a non-empty, NUL-terminated error that fits;
 *  - an accepted request, formatted again as ovcctl would send it, parses
 *    to the same command (and guest and what, for set);
 *  - the error reply built from any error text is one line of JSON.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ovcd_request req, again;
	char err[OVCD_ERROR_MAX];
	char *line, *nl;
	int r;

	memset(err, 'x', sizeof(err));
	r = ovcd_request_parse((const char *)data, size, &req, err, sizeof(err));
	if (r < 0) {
		if (r != -EINVAL && r != -EPROTO && r != -EMSGSIZE && r != -ENOMEM)
			abort();
		if (!memchr(err, '\0', sizeof(err)) || err[0] == '\0')
			abort();
		line = ovcd_reply_error(err);
		if (!line)
			return 0;
		nl = strchr(line, '\n');
		if (!nl || nl[1] != '\0')
			abort();
		free(line);
		return 0;
	}
	line = ovcd_request_format(req.command, req.guest, req.what, req.clear ? "none" : "1MiB");
	if (!line)
		return 0;
	if (ovcd_request_parse(line, strlen(line) - 1, &again, err, sizeof(err)) != 0)
		abort();
	if (again.command != req.command)
		abort();
	if (req.command == OVCD_CMD_SET &&
	    (strcmp(again.guest, req.guest) != 0 || again.what != req.what || again.clear != req.clear))
		abort();
	free(line);
	return 0;
}
