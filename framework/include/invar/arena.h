/* invar/arena.h — bump allocator.
 *
 *     struct invar_arena a;
 *     invar_arena_init(&a, 1 << 20);
 *     for (step = 0; step < n; step++) {
 *         invar_arena_reset(&a);              // O(1) after the first steps
 *         float *buf = invar_arena_alloc(&a, n * sizeof *buf);
 *         ...
 *     }
 *     invar_arena_deinit(&a);
 *
 * The graph of a training step lives in one arena that is reset every step. When a step needs
 * more than the arena holds it chains an overflow block; the next reset folds every block into
 * one block of the high-water size, so from the second step on a step never calls malloc.
 * Allocations are 64-byte aligned (a cache line, and enough for any vector load).
 */
#ifndef INVAR_ARENA_H
#define INVAR_ARENA_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct invar_arena_block;

struct invar_arena {
    struct invar_arena_block *head; /* current block (newest first) */
    size_t used;                    /* bytes handed out since the last reset, all blocks */
    size_t high_water;              /* the largest `used` seen */
    uint64_t sys_allocs;            /* blocks obtained from the system, ever: tests watch it */
};

INVAR_API void invar_arena_init(struct invar_arena *a, size_t initial_bytes);
INVAR_API void invar_arena_deinit(struct invar_arena *a);
/* Aborts on out-of-memory: a step that cannot get its scratch has nothing sensible to do. */
INVAR_API void *invar_arena_alloc(struct invar_arena *a, size_t bytes);
/* Same, zero-filled. */
INVAR_API void *invar_arena_calloc(struct invar_arena *a, size_t bytes);
INVAR_API void invar_arena_reset(struct invar_arena *a);

#ifdef __cplusplus
}
#endif
#endif
