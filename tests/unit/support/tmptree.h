/* Temporary trees for the store tests. */
#ifndef ATLS_TEST_TMPTREE_H
#define ATLS_TEST_TMPTREE_H

/* rm -rf path, never following a link (a link is removed itself). */
void tmptree_rm(const char *path);

#endif
