/* Checkpoint files: named binary sections, written atomically (temp file, fsync, rename).
 *
 *   "INVARCKP" u32 version, then sections { u32 name_len, name, u64 bytes, data }, then a
 *   section named "end" whose data is a u64 FNV-1a checksum of everything before it.
 */
#ifndef INVAR_TRAIN_CHECKPOINT_H
#define INVAR_TRAIN_CHECKPOINT_H

#include <stdio.h>

#include "invar/core.h"
#include "invar/plugin.h"

#define CKPT_HIDDEN __attribute__((visibility("hidden")))

struct ckpt_writer {
    struct invar_state_io io;
    FILE *f;
    char path[4096], tmp[4200];
    uint64_t hash;
    enum invar_status st;
    struct invar_error *err;
};

struct ckpt_section {
    char name[128];
    const unsigned char *data;
    uint64_t bytes;
};

struct ckpt_reader {
    struct invar_state_io io;
    unsigned char *buf;
    size_t size;
    struct ckpt_section *sec;
    size_t n_sec;
    const char *path;
    struct invar_error *err;
};

CKPT_HIDDEN enum invar_status ckpt_writer_open(struct ckpt_writer *w, const char *path,
                                               struct invar_error *err);
CKPT_HIDDEN enum invar_status ckpt_put(struct ckpt_writer *w, const char *name,
                                       const void *data, size_t bytes);
/* Writes the checksum, fsyncs and renames over path; on any earlier failure removes the temp. */
CKPT_HIDDEN enum invar_status ckpt_writer_commit(struct ckpt_writer *w);

CKPT_HIDDEN enum invar_status ckpt_reader_open(struct ckpt_reader *r, const char *path,
                                               struct invar_error *err);
CKPT_HIDDEN enum invar_status ckpt_get(struct ckpt_reader *r, const char *name, void *data,
                                       size_t bytes);
CKPT_HIDDEN void ckpt_reader_close(struct ckpt_reader *r);

#endif
