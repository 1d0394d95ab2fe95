/* Temporary trees for the store tests. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tmptree.h"

static int
tmptree_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

void
tmptree_rm(const char *path)
{
    (void) nftw(path, tmptree_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
