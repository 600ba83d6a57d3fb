/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clam_fmap.c - cl_fmap_open_handle without libclamav's aging map for the
 * small objects it extracts while it scans.
 *
 * Why: libclamav writes every object it extracts from a message (each
 * decoded MIME part, each archive member) to a temporary file and scans
 * that file through fmap(), which maps it with cl_fmap_open_handle(...,
 * use_aging 1) whatever its size: an anonymous mmap made, and at the end
 * unmapped, under one mutex for the whole process (fmap_mutex), each page
 * faulted in twice (read, then copy-on-write). With two scan threads the
 * mutex is held across those system calls, which wait for the address
 * space's lock the other thread's page faults hold: in the server (set-up
 * 4, 10 KB, 10 sessions, perf sched_switch with call graphs) the scan
 * threads went to sleep on that mutex 0.9 times per message, 9% of their
 * time, and every munmap interrupted the other core for a TLB flush.
 * Our own map of the message is a heap map already (clam.c); this gives
 * libclamav's inner maps the same: fmap_check_empty calls
 * cl_fmap_open_handle through the PLT, so this executable's definition
 * is the one it reaches; a call that asks for the aging map of at most
 * CLAM_HEAP_MAP_MAX bytes gets use_aging 0 (libclamav's heap map: one
 * malloc, pages read with pread as the scan needs them, freed at the
 * end), larger ones keep the aging map (memory bound), and libclamav's
 * own function does the work either way, found with dlvsym. The bytes a
 * scan sees are the same in both kinds of map.
 *
 * Threads: any (state set before scan threads start).
 */
#include <clamav.h>
#include <dlfcn.h>
#include <stddef.h>

#include "filters/clam.h"
#include "filters/clam_fmap.h"

typedef cl_fmap_t *(*clam_fmap_open_fn)(void *handle, size_t offset, size_t len,
                                        clcb_pread pread_cb, int use_aging);

static clam_fmap_open_fn clam_fmap_real;
static int clam_fmap_plain;
static unsigned long clam_fmap_nheap, clam_fmap_naging; /* atomics */

int
clam_fmap_setup(int plain)
{
    clam_fmap_plain = plain;
    if (clam_fmap_real == NULL) {
        /* the version libclamav 0.103+ exports it under, then any */
        clam_fmap_real = (clam_fmap_open_fn) dlvsym(
            RTLD_NEXT, "cl_fmap_open_handle", "CLAMAV_PUBLIC");
        if (clam_fmap_real == NULL)
            clam_fmap_real =
                (clam_fmap_open_fn) dlsym(RTLD_NEXT, "cl_fmap_open_handle");
    }
    return clam_fmap_real != NULL ? 0 : -1;
}

cl_fmap_t *
cl_fmap_open_handle(void *handle, size_t offset, size_t len,
                    clcb_pread pread_cb, int use_aging)
{
    if (clam_fmap_real == NULL)
        return NULL;
    if (use_aging) {
        if (!clam_fmap_plain && len <= CLAM_HEAP_MAP_MAX) {
            use_aging = 0;
            __atomic_fetch_add(&clam_fmap_nheap, 1, __ATOMIC_RELAXED);
        } else {
            __atomic_fetch_add(&clam_fmap_naging, 1, __ATOMIC_RELAXED);
        }
    }
    return clam_fmap_real(handle, offset, len, pread_cb, use_aging);
}

void
clam_fmap_counts(unsigned long *heap, unsigned long *aging)
{
    *heap = __atomic_load_n(&clam_fmap_nheap, __ATOMIC_RELAXED);
    *aging = __atomic_load_n(&clam_fmap_naging, __ATOMIC_RELAXED);
}
