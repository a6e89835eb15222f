/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The grammar of amounts that ovcd's config, its control protocol, ovcctl
 * and the policy's reasons share: sizes ("512MiB", "1.5GiB", "10%"),
 * durations ("100ms", "2min"), percentages, booleans and plain integers,
 * parsed and formatted the same way everywhere. Pure: any thread, no
 * state.
 */
#ifndef OVC_HOST_UNITS_H
#define OVC_HOST_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef TIB
#define TIB (UINT64_C(1) << 40)
#endif

/* A size written either in bytes ("512MiB") or as a share of a reference
 * stated per key ("10%": of MemTotal, of the guest's maximum, ...). */
struct ovcd_conf_size {
	bool automatic;             /* "auto": computed (only where a key allows it) */
	bool percent;
	uint64_t bytes;             /* when !percent */
	uint32_t basis_points;      /* when percent: 1/100 of a percent, 0..10000 */
};

/* The size in bytes, a percentage taken of @of_bytes (rounded down); 0 for
 * "auto", which only its key's own resolver knows. */
uint64_t ovcd_conf_size_bytes(const struct ovcd_conf_size *s, uint64_t of_bytes);

/*
 * The typed value parsers. A number may have a fraction ("0.25%",
 * "1.5GiB"; at most 9 digits of it count, the result is rounded down) and
 * blanks before its unit; a bare number is refused, except 0.
 *  - size: B, KiB, MiB, GiB, TiB, or "%" (basis points) with
 *    @allow_percent; never "auto" (the config's keys say where it may be);
 *  - duration: us, ms, s, min, h, in microseconds;
 *  - percent: "%" only, in basis points (0..10000);
 *  - bool: yes/no, true/false, on/off, 1/0, any case;
 *  - uint: decimal digits only.
 * Return 0, or -EINVAL on bad syntax, -ERANGE on overflow or a percentage
 * above 100%; *ret untouched on failure.
 */
int ovcd_parse_size(const char *s, bool allow_percent, struct ovcd_conf_size *ret);
int ovcd_parse_duration(const char *s, uint64_t *ret_usec);
int ovcd_parse_percent(const char *s, uint32_t *ret_basis_points);
int ovcd_parse_bool(const char *s, bool *ret);
int ovcd_parse_uint(const char *s, uint64_t *ret);

/*
 * Exact formatting, which the parsers read back: the value in the largest
 * unit that divides it ("1536MiB", "1GiB", "4097B", "2min", "500ms",
 * "0s"), a percentage with at most two decimals ("0.25%"), a struct
 * ovcd_conf_size as its text ("auto", "20%", "1GiB"). Return @buf.
 */
char *ovcd_format_size(uint64_t bytes, char *buf, size_t n);
char *ovcd_format_duration(uint64_t usec, char *buf, size_t n);
char *ovcd_format_percent(uint32_t basis_points, char *buf, size_t n);
char *ovcd_format_conf_size(const struct ovcd_conf_size *s, char *buf, size_t n);

/* Short human size for reasons and logs, rounded down: "512MiB",
 * "1.2GiB", "4KiB". Returns @buf. */
char *ovcd_format_size_short(uint64_t bytes, char *buf, size_t n);
/* The same into a buffer of the enclosing full expression: for one
 * printf-like call's arguments. */
#define SIZE_SHORT(v) ovcd_format_size_short((v), (char[24]){ 0 }, 24)

#endif
