/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libovc — reuse the memory of virtual machines: share zero pages with
 * copy-on-write and swap cold pages through io_uring, faulted back through
 * userfaultfd, with no guest write ever lost.
 *
 * Include this header; it pulls in the whole public API. See libovc(3).
 */
#ifndef OVC_OVC_H
#define OVC_OVC_H

#include <ovc/common.h>
#include <ovc/engine.h>
#include <ovc/endpoint.h>

#endif
