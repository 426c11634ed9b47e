/* Helpers for cmocka unit tests: a fresh temp directory per test. */
#ifndef SBX_TESTUTIL_H
#define SBX_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sbx/error.h"

/* Create a fresh directory under $TMPDIR (or /tmp); caller frees with tu_tmpdir_free. */
char *tu_tmpdir(void);
/* rm -rf the directory and free the string. */
void tu_tmpdir_free(char *dir);
/* Path join into a static-ish buffer owned by the caller (malloc'd). */
char *tu_path(const char *dir, const char *name);
/* Write a file with content; fails the test on error. */
void tu_write_file(const char *path, const char *content);
/* Assert an error has the given code and its message contains needle. */
#define tu_assert_error(err, want_code, needle)                                       \
    do {                                                                              \
        if ((err)->code != (want_code) || !strstr((err)->msg, (needle)))              \
            fail_msg("want code %d with '%s', got code %d: '%s' (where '%s')",        \
                     (int)(want_code), (needle), (err)->code, (err)->msg, (err)->where); \
    } while (0)
/* Count directory entries (not . or ..), recursively; -1 if missing. */
long tu_count_files(const char *dir);

#endif
