/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_main.c - replay driver for the fuzz targets.
 * Without --enable-fuzz each target links this main(): it runs every file
 * named on the command line (or every file of the directories named)
 * through LLVMFuzzerTestOneInput once, and prints one TAP line per file.
 * A crash, leak or sanitizer report fails the run.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_n;

static int
fuzz_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL) {
        printf("not ok %d - %s: cannot open\n", ++fuzz_n, path);
        return -1;
    }
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            data = realloc(data, cap);
            if (data == NULL)
                abort();
        }
        n = fread(data + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    printf("ok %d - %s (%zu bytes)\n", ++fuzz_n, path, len);
    fflush(stdout);
    return 0;
}

static int
fuzz_path(const char *path)
{
    struct stat st;
    struct dirent **names;
    int i, n, rc = 0;
    char sub[4096];

    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return fuzz_file(path);
    n = scandir(path, &names, NULL, alphasort);
    for (i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
            rc |= fuzz_path(sub);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int
main(int argc, char **argv)
{
    int i, rc = 0;

    for (i = 1; i < argc; i++)
        rc |= fuzz_path(argv[i]);
    /* the empty input too */
    LLVMFuzzerTestOneInput((const uint8_t *) "", 0);
    printf("ok %d - empty input\n", ++fuzz_n);
    printf("1..%d\n", fuzz_n);
    return rc ? 1 : 0;
}
