/* Checkpoint files: see checkpoint.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/checkpoint.h"

#define CKPT_MAGIC "INVARCKP"
#define CKPT_VERSION 1u

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void w_raw(struct ckpt_writer *w, const void *data, size_t n)
{
    if (w->st != INVAR_OK)
        return;
    if (n && fwrite(data, 1, n, w->f) != n)
        w->st = invar_error_set(w->err, INVAR_ERR_IO, "%s: write failed: %s", w->tmp,
                                strerror(errno));
    w->hash = fnv1a(w->hash, data, n);
}

static enum invar_status w_io_put(struct invar_state_io *io, const char *key, const void *data,
                                  size_t bytes)
{
    struct ckpt_writer *w = io->impl;
    char name[128];
    snprintf(name, sizeof name, "state:%s", key);
    return ckpt_put(w, name, data, bytes);
}

enum invar_status ckpt_writer_open(struct ckpt_writer *w, const char *path,
                                   struct invar_error *err)
{
    memset(w, 0, sizeof *w);
    w->err = err;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", path, (long)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f)
        return invar_error_set(err, INVAR_ERR_IO, "%s: cannot create: %s", w->tmp,
                               strerror(errno));
    w->hash = 0xcbf29ce484222325ULL;
    w->io.put = w_io_put;
    w->io.impl = w;
    uint32_t v = CKPT_VERSION;
    w_raw(w, CKPT_MAGIC, 8);
    w_raw(w, &v, sizeof v);
    return w->st;
}

enum invar_status ckpt_put(struct ckpt_writer *w, const char *name, const void *data,
                           size_t bytes)
{
    uint32_t len = (uint32_t)strlen(name);
    uint64_t n = bytes;
    INVAR_ASSERT(len > 0 && len < 128);
    w_raw(w, &len, sizeof len);
    w_raw(w, name, len);
    w_raw(w, &n, sizeof n);
    w_raw(w, data, bytes);
    return w->st;
}

enum invar_status ckpt_writer_commit(struct ckpt_writer *w)
{
    uint64_t h = w->hash;
    ckpt_put(w, "end", &h, sizeof h);
    if (w->st == INVAR_OK && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0))
        w->st = invar_error_set(w->err, INVAR_ERR_IO, "%s: cannot flush: %s", w->tmp,
                                strerror(errno));
    if (fclose(w->f) != 0 && w->st == INVAR_OK)
        w->st = invar_error_set(w->err, INVAR_ERR_IO, "%s: cannot close: %s", w->tmp,
                                strerror(errno));
    w->f = NULL;
    if (w->st == INVAR_OK && rename(w->tmp, w->path) != 0)
        w->st = invar_error_set(w->err, INVAR_ERR_IO, "%s: cannot rename to %s: %s", w->tmp,
                                w->path, strerror(errno));
    if (w->st != INVAR_OK)
        unlink(w->tmp);
    return w->st;
}

static enum invar_status r_io_get(struct invar_state_io *io, const char *key, void *data,
                                  size_t bytes)
{
    struct ckpt_reader *r = io->impl;
    char name[128];
    snprintf(name, sizeof name, "state:%s", key);
    return ckpt_get(r, name, data, bytes);
}

static enum invar_status corrupt(struct ckpt_reader *r, const char *what)
{
    return invar_error_set(r->err, INVAR_ERR_FORMAT, "%s: not a valid checkpoint (%s)", r->path,
                           what);
}

enum invar_status ckpt_reader_open(struct ckpt_reader *r, const char *path,
                                   struct invar_error *err)
{
    memset(r, 0, sizeof *r);
    r->err = err;
    r->path = path;
    r->io.get = r_io_get;
    r->io.impl = r;
    FILE *f = fopen(path, "rb");
    if (!f)
        return invar_error_set(err, INVAR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    r->buf = malloc(size > 0 ? (size_t)size : 1);
    if (!r->buf || size < 12 || fread(r->buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        return corrupt(r, "too short or unreadable");
    }
    fclose(f);
    r->size = (size_t)size;
    if (memcmp(r->buf, CKPT_MAGIC, 8) != 0)
        return corrupt(r, "bad magic");
    size_t off = 12, cap = 0;
    uint64_t hash = fnv1a(0xcbf29ce484222325ULL, r->buf, 12);
    for (;;) {
        uint32_t len;
        uint64_t n;
        size_t start = off;
        if (off + 4 > r->size)
            return corrupt(r, "truncated");
        memcpy(&len, r->buf + off, 4);
        off += 4;
        if (len == 0 || len >= 128 || off + len + 8 > r->size)
            return corrupt(r, "truncated section header");
        char name[128];
        memcpy(name, r->buf + off, len);
        name[len] = '\0';
        off += len;
        memcpy(&n, r->buf + off, 8);
        off += 8;
        if (n > r->size - off)
            return corrupt(r, "truncated section");
        if (strcmp(name, "end") == 0) {
            uint64_t want;
            if (n != 8)
                return corrupt(r, "bad end section");
            memcpy(&want, r->buf + off, 8);
            /* the writer's hash covers everything before this section */
            if (want != hash)
                return corrupt(r, "checksum mismatch");
            return INVAR_OK;
        }
        if (r->n_sec == cap) {
            cap = cap ? cap * 2 : 32;
            struct ckpt_section *s = realloc(r->sec, cap * sizeof *s);
            if (!s)
                return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
            r->sec = s;
        }
        struct ckpt_section *s = &r->sec[r->n_sec++];
        memcpy(s->name, name, len + 1);
        s->data = r->buf + off;
        s->bytes = n;
        off += n;
        hash = fnv1a(hash, r->buf + start, off - start);
    }
}

enum invar_status ckpt_get(struct ckpt_reader *r, const char *name, void *data, size_t bytes)
{
    for (size_t i = 0; i < r->n_sec; i++)
        if (strcmp(r->sec[i].name, name) == 0) {
            if (r->sec[i].bytes != bytes)
                return invar_error_set(r->err, INVAR_ERR_FORMAT,
                                       "%s: section %s holds %llu bytes, expected %zu (a "
                                       "different configuration?)",
                                       r->path, name, (unsigned long long)r->sec[i].bytes,
                                       bytes);
            if (bytes) /* an empty section may come with data == NULL (SGD without momentum) */
                memcpy(data, r->sec[i].data, bytes);
            return INVAR_OK;
        }
    return invar_error_set(r->err, INVAR_ERR_FORMAT, "%s: no section %s", r->path, name);
}

void ckpt_reader_close(struct ckpt_reader *r)
{
    free(r->buf);
    free(r->sec);
    memset(r, 0, sizeof *r);
}
