/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_mods.c - header and body modifications on arbitrary messages:
 * filter_mods_rewrite() and filter_mods_new_head() must agree. Where the
 * new head is answered (0), it followed by the message past the old head
 * is the rewrite's output, byte for byte; with a read limit that covers
 * the message and no body replacement it must be answered; a failure of
 * one is a failure of the other.
 * Input: a count byte (mods, at most 8), per mod a type byte, an index
 * byte, a name length byte, the name, a value length byte (255: no
 * value), the value; two bytes of read limit; the message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "filters/filter.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum filter_mod_type types[] = {
    FILTER_MOD_ADD_HEADER, FILTER_MOD_INSERT_HEADER, FILTER_MOD_CHANGE_HEADER,
    FILTER_MOD_REPLACE_BODY};

static int
out_buf(void *arg, const void *p, size_t n)
{
    return buf_append(arg, p, n);
}

/* Take n bytes of the input: a pointer, or NULL past its end. */
static const uint8_t *
take(const uint8_t **d, size_t *left, size_t n)
{
    const uint8_t *p = *d;

    if (n > *left)
        return NULL;
    *d += n;
    *left -= n;
    return p;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct filter_mod *mods = NULL, **tail = &mods;
    struct buf *full = NULL, *head = NULL;
    const uint8_t *p, *d = data;
    size_t left = size, nmods, i, max, old = 0;
    int fd = -1, rc_full, rc_head, replace = 0;

    if ((p = take(&d, &left, 1)) == NULL)
        return 0;
    nmods = *p % 9;
    for (i = 0; i < nmods; i++) {
        const uint8_t *h = take(&d, &left, 3), *name, *vl, *value = NULL;
        char nbuf[256];

        if (h == NULL || (name = take(&d, &left, h[2])) == NULL
            || (vl = take(&d, &left, 1)) == NULL
            || (*vl != 255 && (value = take(&d, &left, *vl)) == NULL))
            goto done;
        memcpy(nbuf, name, h[2]);
        nbuf[h[2]] = '\0';
        *tail = filter_mod_new(types[h[0] % 4], nbuf, value, value ? *vl : 0,
                               h[1], NULL);
        if ((*tail)->type == FILTER_MOD_REPLACE_BODY)
            replace = 1;
        tail = &(*tail)->next;
    }
    if ((p = take(&d, &left, 2)) == NULL)
        goto done;
    max = (size_t) p[0] << 8 | p[1];
    if ((fd = memfd_create("fuzz_mods", 0)) < 0 || write(fd, "xx", 2) != 2
        || (left > 0 && write(fd, d, left) != (ssize_t) left))
        abort();
    full = buf_new(1024, BUF_NOCAP);
    head = buf_new(1024, BUF_NOCAP);
    rc_full = filter_mods_rewrite(mods, fd, 2, (off_t) left, out_buf, full);
    rc_head = filter_mods_new_head(mods, fd, 2, (off_t) left, max, head, &old);
    if ((rc_full < 0) != (rc_head < 0))
        abort();
    if (rc_head == 1 && !replace && max >= left)
        abort();
    if (replace && rc_head == 0)
        abort();
    if (rc_head == 0
        && (old > left || buf_len(head) + (left - old) != buf_len(full)
            || memcmp(buf_data(head), buf_data(full), buf_len(head)) != 0
            || memcmp(buf_data(full) + buf_len(head), d + old, left - old)
                   != 0))
        abort();
done:
    if (fd >= 0)
        close(fd);
    buf_free(full);
    buf_free(head);
    filter_mods_free(mods);
    return 0;
}
