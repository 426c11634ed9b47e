#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sbx_common.h"
#include "testutil.h"

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = sbx__strdup_printf("%s/sbx-unit-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

void tu_tmpdir_free(char *dir)
{
    if (!dir)
        return;
    sbx_error err = SBX_ERROR_INIT;
    sbx__rm_rf(dir, &err);
    free(dir);
}

char *tu_path(const char *dir, const char *name)
{
    char *p = sbx__strdup_printf("%s/%s", dir, name);
    assert_non_null(p);
    return p;
}

void tu_write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

long tu_count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = sbx__strdup_printf("%s/%s", dir, de->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            n += tu_count_files(p);
        else
            n++;
        free(p);
    }
    closedir(d);
    return n;
}
