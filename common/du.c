/* Disk usage of trees, as du counts it: st_blocks * 512, each inode once
 * (hardlinks inside a tree, or shared with other trees), directories as
 * met.  A file also linked from outside the trees walked frees nothing
 * when they go: sbx__du_freed counts an inode only when every one of its
 * links was seen.  The walk does not cross mount points and skips what it
 * cannot read: a size, not a verdict. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "sbx_common.h"

typedef struct {
    dev_t dev;
    ino_t ino;
    nlink_t nlink;
    nlink_t seen;
    uint64_t bytes;
} du_inode;

struct sbx__du {
    du_inode *v; /* open addressing; ino 0 marks an empty slot */
    size_t n, cap;
    uint64_t dir_bytes; /* directories cannot be hardlinked: counted as met */
};

sbx__du *sbx__du_new(void) { return calloc(1, sizeof(sbx__du)); }

void sbx__du_free(sbx__du *du)
{
    if (du)
        free(du->v);
    free(du);
}

static size_t slot_of(const du_inode *v, size_t cap, dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)ino * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)dev * 0xc2b2ae3d27d4eb4full);
    size_t i = (size_t)(h >> 17) & (cap - 1);
    while (v[i].ino && (v[i].ino != ino || v[i].dev != dev))
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(sbx__du *du)
{
    size_t cap = du->cap ? du->cap * 2 : 1024;
    du_inode *v = calloc(cap, sizeof *v);
    if (!v)
        return -1;
    for (size_t i = 0; i < du->cap; i++)
        if (du->v[i].ino)
            v[slot_of(v, cap, du->v[i].dev, du->v[i].ino)] = du->v[i];
    free(du->v);
    du->v = v;
    du->cap = cap;
    return 0;
}

static int note_inode(sbx__du *du, const struct stat *st)
{
    if (S_ISDIR(st->st_mode)) {
        du->dir_bytes += (uint64_t)st->st_blocks * 512;
        return 0;
    }
    if ((du->n + 1) * 2 > du->cap && grow(du) < 0)
        return -1;
    ino_t ino = st->st_ino ? st->st_ino : (ino_t)-1; /* 0 is the empty-slot mark */
    du_inode *e = &du->v[slot_of(du->v, du->cap, st->st_dev, ino)];
    if (!e->ino) {
        *e = (du_inode){st->st_dev, ino, st->st_nlink, 0, (uint64_t)st->st_blocks * 512};
        du->n++;
    }
    e->seen++;
    return 0;
}

static int walk(sbx__du *du, int parent, const char *name, dev_t dev)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0; /* gone meanwhile, or unreadable */
    if (S_ISDIR(st.st_mode) && st.st_dev != dev)
        return 0; /* a mount point: not the store's disk */
    if (note_inode(du, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return 0;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rc = walk(du, dirfd(d), de->d_name, dev);
    closedir(d);
    return rc;
}

int sbx__du_add_at(sbx__du *du, int dirfd, const char *name)
{
    struct stat top;
    if (fstatat(dirfd, name, &top, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    return walk(du, dirfd, name, top.st_dev);
}

uint64_t sbx__du_total(const sbx__du *du)
{
    uint64_t n = du->dir_bytes;
    for (size_t i = 0; i < du->cap; i++)
        n += du->v[i].bytes;
    return n;
}

uint64_t sbx__du_freed(const sbx__du *du)
{
    uint64_t n = du->dir_bytes;
    for (size_t i = 0; i < du->cap; i++)
        if (du->v[i].ino && du->v[i].seen >= du->v[i].nlink)
            n += du->v[i].bytes;
    return n;
}
