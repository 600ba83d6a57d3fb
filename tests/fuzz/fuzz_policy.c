/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_policy.c - proxy/policy's reply parser, policy_parse_reply: what
 * a policy server sends back, fed whole and in every split a reader
 * could see it in.
 * Besides "no crash, no read past the bytes", what policy.h promises is
 * checked: a complete reply took at most the bytes given, ends with its
 * empty line, and its action is NUL-terminated, shorter than the room
 * given, without a NUL or line end, and is the first "action=" line's
 * value; the same bytes give the same answer whatever prefix was seen
 * before (a prefix is either incomplete or the same complete reply); a
 * reply not complete within POLICY_REPLY_MAX bytes is malformed.
 * The same bytes go to the other side of that framing, the verify
 * service's request parser (queue/verify.c, verify_parse_request), with
 * the same promises: what it took ends with the empty line, the address
 * is shorter than its room, without a NUL or line end, and appears in
 * the bytes taken; prefixes agree; VERIFY_REQUEST_MAX bytes without an
 * end are malformed.
 * And the bytes as an address_verify_map value (verify_entry_parse): what
 * it accepts is formatted back to the same text and parsed the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/policy.h"
#include "queue/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fz_entry(const char *buf, size_t size)
{
    char *s = malloc(size + 1), out[1200];
    enum verify_status st, st2;
    long long pr, up, pr2, up2;
    const char *text, *text2;

    memcpy(s, buf, size);
    s[size] = '\0';
    if (verify_entry_parse(s, &st, &pr, &up, &text) == 0) {
        if ((int) st < 0 || st > VERIFY_TODO || pr < 0 || up < 0
            || (pr == 0 && up == 0))
            abort();
        if (verify_entry_format(out, sizeof(out), st, pr, up, text) >= 0
            && (verify_entry_parse(out, &st2, &pr2, &up2, &text2) != 0
                || st2 != st || pr2 != pr || up2 != up || strcmp(text, text2)))
            abort();
    }
    free(s);
}

static void
fz_verify(const char *buf, size_t size)
{
    char addr[256], again[256];
    size_t used = 0, used2 = 0;
    int rc = verify_parse_request(buf, size, addr, sizeof(addr), &used);

    if (rc < -1 || rc > 1)
        abort();
    if (rc == 1) {
        size_t al = strnlen(addr, sizeof(addr));

        if (used < 2 || used > size || buf[used - 1] != '\n' || al == 0
            || al == sizeof(addr) || strpbrk(addr, "\r\n")
            || memmem(buf, used, addr, al) == NULL)
            abort();
    }
    if (rc == 0 && size >= VERIFY_REQUEST_MAX)
        abort();
    for (size_t n = 0; n < size; n++) {
        int r2 = verify_parse_request(buf, n, again, sizeof(again), &used2);

        if (r2 == 1 && (rc != 1 || used2 != used || strcmp(again, addr)))
            abort();
        if (r2 == -1 && rc != -1)
            abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *) data;
    char action[POLICY_ACTION_MAX], again[POLICY_ACTION_MAX];
    size_t used = 0, used2 = 0;
    int rc;

    if (size > 2 * POLICY_REPLY_MAX)
        return 0;
    fz_verify(buf, size);
    fz_entry(buf, size);
    rc = policy_parse_reply(buf, size, action, sizeof(action), &used);
    if (rc < -1 || rc > 1)
        abort();
    if (rc == 1) {
        size_t al = strnlen(action, sizeof(action));

        if (used == 0 || used > size || buf[used - 1] != '\n'
            || al == sizeof(action) || strchr(action, '\n'))
            abort();
        if (al > 0
            && (memmem(buf, used, "action=", 7) == NULL
                || memmem(buf, used, action, al) == NULL))
            abort();
    }
    if (rc == 0 && size >= POLICY_REPLY_MAX)
        abort();
    /* every prefix: incomplete, malformed, or the same reply */
    for (size_t n = 0; n < size; n++) {
        int r2 = policy_parse_reply(buf, n, again, sizeof(again), &used2);

        if (r2 == 1 && (rc != 1 || used2 != used || strcmp(again, action)))
            abort();
        if (r2 == -1 && rc != -1)
            abort();
    }
    return 0;
}
