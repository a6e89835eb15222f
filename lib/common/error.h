/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef OVC_ERROR_H
#define OVC_ERROR_H

struct error_text {
	int err;
	const char *text;
};

/* Terminated by { 0, NULL }. Internal; the test walks it. */
extern const struct error_text error_texts[];

#endif
