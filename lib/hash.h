/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hash.h - FNV-1a (32 bit) over strings, for the in-memory tables
 * (queue IDs in flight, the verify cache, client rates, client names).
 * Not for anything a client could aim at for collisions to slow a
 * lookup down beyond a chain walk.
 * Owns: nothing. Threads: any.
 */
#ifndef SLUICE_HASH_H
#define SLUICE_HASH_H

#include <stdint.h>

#define HASH_FNV_INIT 2166136261u

/* h (HASH_FNV_INIT to start) continued over the bytes of s. */
static inline uint32_t
hash_fnv1a(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char) *s) * 16777619u;
    return h;
}

#endif
