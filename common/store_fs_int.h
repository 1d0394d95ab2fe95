/*
 * Shared by the filesystem backend's files only: store_fs.c (resolving
 * beneath the root, the ops table, open), store_fs_read.c (get, list),
 * store_fs_lock.c (the locks), store_fs_write.c (the atomic writers),
 * store_fs_append.c (the audit log's append and rotation) and
 * store_fs_prepare.c with store_fs_prepare_bg.c (the privileged parent's
 * hand-over).  See store_fs.c for the rules they all keep.
 */
#ifndef ATLS_STORE_FS_INT_H
#define ATLS_STORE_FS_INT_H

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include "atls_priv.h"
#include "atls_store.h"

#define FS_DIR_MODE      0700
#define FS_PRIVATE_MODE  0600
#define FS_PUBLIC_MODE   0644
/* Parents above the store root we had to create: traversable (workers must
 * reach their store) but not listable. */
#define FS_PARENT_MODE   0711
/* Nothing the store holds comes near this: a bigger file was planted.
 * CRLs alone may be bigger (fs_read_cap). */
#define FS_MAX_READ      (1024 * 1024)
/* The store is shallow (certs/<id>/<file>); deeper trees are not ours. */
#define FS_MAX_DEPTH     8

typedef struct {
    char  *root;        /* for messages */
    int    rootfd;
    int    as_owner;    /* euid 0 on a store owned by someone else */
    uid_t  uid;
    gid_t  gid;
} fs_impl_t;

struct atls_store_lock_s {
    int   fd;
};

#define FS_N_SUBDIRS     5
/* made at open (and by prepare): accounts, certs, requests, locks, crl */
extern const char *const atls_fs_subdirs[FS_N_SUBDIRS];

/* "a symbolic link, refused" for ELOOP, else strerror. */
const char *atls_fs_strerror(int e);
/* "<root>/<rel>: <why>" (or "<what> <root>/<rel>: <why>") into err. */
void atls_fs_error(fs_impl_t *fs, char *err, size_t errlen, const char *what,
                   const char *rel, const char *why);
/* The directory holding path (created when create), *base its last
 * component; -1 + err naming the directory. */
int atls_fs_parent_open(fs_impl_t *fs, const char *path, int create, const char **base,
                        char *err, size_t errlen);
/* base in dirfd as a regular file, no link followed, set-id bits off. */
int atls_fs_open_reg(fs_impl_t *fs, int dirfd, const char *base, const char *rel,
                     int flags, mode_t mode, char *err, size_t errlen);
void atls_fs_fsync_dir(fs_impl_t *fs, int dirfd, const char *path);
/* The directory rel ("" = the root) as a descriptor, no link followed;
 * -1 + errno (ELOOP for a symbolic link anywhere on the way). */
int atls_fs_dir_open(fs_impl_t *fs, const char *rel, int create);
/* rel opened for reading as a regular file beneath the root; -1 + err. */
int atls_fs_open_read(fs_impl_t *fs, const char *rel, char *err, size_t errlen);
/* Takes the owner's filesystem identity when we are root on a store owned
 * by someone else (else nothing): 0, or -1 + err. */
int atls_fs_enter(fs_impl_t *fs, atls_fsid_t *id, char *err, size_t errlen);
/* the read ops (store_fs_read.c) and the locks (store_fs_lock.c): the ops
 * of atls_store.h */
int atls_fs_get(atls_store_t *st, const char *path, char **data, size_t *len,
                char *err, size_t errlen);
int atls_fs_get_max(atls_store_t *st, const char *path, size_t max, char **data,
                    size_t *len, char *err, size_t errlen);
int atls_fs_list(atls_store_t *st, const char *dir, char ***names, size_t *n,
                 char *err, size_t errlen);
int atls_fs_list_page(atls_store_t *st, const char *dir, void **cursor, size_t max,
                      char ***names, size_t *n, char *err, size_t errlen);
void atls_fs_list_end(atls_store_t *st, void *cursor);
int atls_fs_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
                 char *err, size_t errlen);
/* locks/<name>.lock, already as the owner (inside atls_fs_begin). */
int atls_fs_lock_as(fs_impl_t *fs, const char *name, int wait, atls_store_lock_t **out,
                    char *err, size_t errlen);
void atls_fs_unlock(atls_store_t *st, atls_store_lock_t *lk);
/* Checks path and takes the owner's identity: 0, or -1 + err. */
int atls_fs_begin(fs_impl_t *fs, const char *path, int allow_empty, atls_fsid_t *id,
                  char *err, size_t errlen);
/* Creates dir when missing and opens it: -1 + err, else the fd and *sb. */
int atls_fs_root_open(const char *dir, struct stat *sb, char *err, size_t errlen);

/* the privileged parent's hand-over (store_fs_prepare.c), in two parts so
 * that store_fs_prepare_bg.c can run the second in a detached process */
#define ATLS_FS_PREP_LATE  1
/* Opens the store root (made when missing), makes its fixed
 * sub-directories and hands over the root and its own entries without
 * entering them: the root's descriptor, or -1 + err. */
int atls_fs_prepare_top(const char *dir, long uid, long gid, char *err, size_t errlen);
/* Told of each entry (its path beneath the root) handed to the worker
 * (done 0), and of each directory walked to its end (done 1). */
typedef void (*atls_fs_prep_handed_fn)(void *ctx, const char *rel, int done);
/* The whole walk beneath rootfd, the `prepared` stamp written when it
 * completes: 0; ATLS_FS_PREP_LATE as soon as deadline (CLOCK_MONOTONIC;
 * NULL: none) has passed; -1 + err.  keep_going: an entry's error is
 * logged and the walk goes on (then -1 at the end, and no stamp).
 * handed (NULL: none) is called after each chown and each directory. */
int atls_fs_prepare_walk(int rootfd, const char *dir, long uid, long gid,
                         const struct timespec *deadline, int keep_going,
                         atls_fs_prep_handed_fn handed, void *handed_ctx, char *err,
                         size_t errlen);
/* Unit tests only: called in the background walker before it walks. */
extern void (*atls_fs_prepare_bg_test_hook)(void);

/* the atomic writers (store_fs_write.c) */
/* path written whole (temp file, fsync, rename); the directory fsync'd
 * unless sync_dir is 0 (the caller syncs it once for a batch). */
int atls_fs_put_as(fs_impl_t *fs, const char *path, const char *data, size_t len,
                   int is_private, int sync_dir, char *err, size_t errlen);
/* the put_many op (atls_store.h): every temp, one syncfs, the renames,
 * one fsync of dir */
int atls_fs_put_many(atls_store_t *st, const char *dir, const atls_store_file_t *files,
                     size_t n, size_t *done, char *err, size_t errlen);
/* the put_groups op: the same over several directories */
int atls_fs_put_groups(atls_store_t *st, const atls_store_group_t *groups, size_t n,
                       size_t *done, char *err, size_t errlen);
/* Unit tests only: told of each fsync ("fsync", "fsync-dir") and syncfs
 * ("syncfs") the writers make. */
extern void (*atls_fs_sync_test_hook)(const char *what);

/* the append op (store_fs_append.c) */
/* append_many: the records in writes of whole records and one fsync. */
int atls_fs_append_many(atls_store_t *st, const char *path, const char *const *recs,
                        const size_t *lens, size_t n, size_t rotate_bytes, unsigned keep,
                        char *err, size_t errlen);
int atls_fs_append(atls_store_t *st, const char *path, const char *data, size_t len,
                   size_t rotate_bytes, unsigned keep, char *err, size_t errlen);

#endif
