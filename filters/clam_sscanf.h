/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clam_sscanf.h - sscanf without stdio for libclamav's "%u" and "%u,%u"
 * (clam_sscanf.c says why and how it stays exactly glibc's).
 * Linking clam_sscanf.o into an executable replaces sscanf for the whole
 * process; clam.c calls clam_sscanf_setup so that every executable with
 * the ClamAV filter has it.
 * Threads: call clam_sscanf_setup before scan threads start.
 */
#ifndef SLUICE_CLAM_SSCANF_H
#define SLUICE_CLAM_SSCANF_H

void clam_sscanf_setup(int plain); /* 1: glibc's for every call (bench) */

#endif
