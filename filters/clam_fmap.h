/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clam_fmap.h - libclamav's maps of the objects it extracts from a
 * message kept on the heap up to CLAM_HEAP_MAP_MAX (clam_fmap.c says why).
 * Linking clam_fmap.o into an executable replaces cl_fmap_open_handle for
 * the whole process; clam.c calls clam_fmap_setup so that every
 * executable with the ClamAV filter has it.
 * Threads: call clam_fmap_setup before scan threads start.
 */
#ifndef SLUICE_CLAM_FMAP_H
#define SLUICE_CLAM_FMAP_H

/* Finds libclamav's own cl_fmap_open_handle; -1 if it cannot (every map
 * then fails, which a scan reports as an error). plain 1: pass every call
 * through unchanged (bench_scan -a, to measure the difference). */
int clam_fmap_setup(int plain);

/* Calls that asked for the aging map, since start: given a heap map
 * instead, and kept on the aging map (above CLAM_HEAP_MAP_MAX, or plain).
 * For tests: they show that libclamav's own calls come here. */
void clam_fmap_counts(unsigned long *heap, unsigned long *aging);

#endif
