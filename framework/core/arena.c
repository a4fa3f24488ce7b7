/* Bump arena: chained blocks while a step grows, one block of the high-water size after. */
#include <stdlib.h>
#include <string.h>

#include "invar/arena.h"

#define ARENA_ALIGN 64

struct invar_arena_block {
    struct invar_arena_block *next;
    size_t size; /* usable bytes in mem */
    size_t off;
    unsigned char *mem;
};

static struct invar_arena_block *block_new(struct invar_arena *a, size_t size)
{
    struct invar_arena_block *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    b->mem = aligned_alloc(ARENA_ALIGN, size ? size : ARENA_ALIGN);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->next = NULL;
    b->size = size;
    b->off = 0;
    a->sys_allocs++;
    return b;
}

static void blocks_free(struct invar_arena_block *b)
{
    while (b) {
        struct invar_arena_block *next = b->next;
        free(b->mem);
        free(b);
        b = next;
    }
}

void invar_arena_init(struct invar_arena *a, size_t initial_bytes)
{
    memset(a, 0, sizeof *a);
    if (initial_bytes) {
        a->head = block_new(a, initial_bytes);
        INVAR_ASSERT(a->head != NULL);
    }
}

void invar_arena_deinit(struct invar_arena *a)
{
    if (!a)
        return;
    blocks_free(a->head);
    memset(a, 0, sizeof *a);
}

void *invar_arena_alloc(struct invar_arena *a, size_t bytes)
{
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    struct invar_arena_block *b = a->head;
    if (!b || b->size - b->off < need) {
        /* Grow geometrically so a step that outgrows the arena chains few blocks. */
        size_t size = b ? b->size * 2 : (size_t)1 << 20;
        if (size < need)
            size = need;
        struct invar_arena_block *nb = block_new(a, size);
        INVAR_ASSERT(nb != NULL && "arena: out of memory");
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->mem + b->off;
    b->off += need;
    a->used += need;
    if (a->used > a->high_water)
        a->high_water = a->used;
    return p;
}

void *invar_arena_calloc(struct invar_arena *a, size_t bytes)
{
    void *p = invar_arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void invar_arena_reset(struct invar_arena *a)
{
    if (a->head && a->head->next) {
        /* The last step needed more than one block: replace them all with one that fits the
         * high-water mark, so the next steps allocate nothing. */
        size_t size = a->high_water;
        blocks_free(a->head);
        a->head = block_new(a, size);
        INVAR_ASSERT(a->head != NULL && "arena: out of memory");
    } else if (a->head) {
        a->head->off = 0;
    }
    a->used = 0;
}
