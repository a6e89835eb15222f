/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness for the ovcd.conf parser (lib/host/config.c). Properties
 * checked beyond "no crash, no leak, no UB under ASan/UBSan":
 *  - a refused file gets -EINVAL/-EFBIG and error text, every line of
 *    which starts with the file's name;
 *  - an accepted file prints (ovcd_config_print) to a text that parses
 *    again and prints identically (the printer and parser agree);
 *  - guest settings resolve for any name without crashing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *print(const struct ovcd_config *c)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	if (!f)
		abort();
	if (ovcd_config_print(c, f) != 0)
		abort();
	fclose(f);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ovcd_config *c = NULL, *c2 = NULL;
	char *errors = NULL;
	int r = ovcd_config_parse("fuzz.conf", (const char *)data, size, &c, &errors);

	if (r < 0) {
		if (r != -EINVAL && r != -EFBIG && r != -ENOMEM)
			abort();
		if (r != -ENOMEM) {
			if (!errors || !*errors)
				abort();
			for (const char *l = errors; *l; l = strchr(l, '\n') + 1) {
				if (strncmp(l, "fuzz.conf:", 10) != 0 || !strchr(l, '\n'))
					abort();
			}
		}
		free(errors);
		return 0;
	}
	if (errors)
		abort();

	struct ovcd_guest_settings s;
	ovcd_config_guest_settings(c, "web-1", &s);
	ovcd_config_guest_settings(c, "", &s);

	char *out1 = print(c);
	r = ovcd_config_parse("fuzz.conf", out1, strlen(out1), &c2, &errors);
	if (r != 0) {
		fprintf(stderr, "printout does not parse:\n%s\n%s", out1, errors ? errors : "");
		abort();
	}
	char *out2 = print(c2);
	if (strcmp(out1, out2) != 0) {
		fprintf(stderr, "printout not stable:\n%s\n---\n%s", out1, out2);
		abort();
	}
	free(out1);
	free(out2);
	ovcd_config_free(c);
	ovcd_config_free(c2);
	return 0;
}
