/* The per-step arena: alignment, growth, and no system allocation once settled. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "invar/arena.h"

Test(arena, aligned_and_distinct)
{
    struct invar_arena a;
    invar_arena_init(&a, 4096);
    char *p = invar_arena_alloc(&a, 3);
    char *q = invar_arena_alloc(&a, 100);
    cr_assert_eq((uintptr_t)p % 64, 0);
    cr_assert_eq((uintptr_t)q % 64, 0);
    cr_assert(q >= p + 64);
    invar_arena_deinit(&a);
}

Test(arena, settles_after_one_overflowing_step)
{
    struct invar_arena a;
    invar_arena_init(&a, 1024);
    cr_assert_eq(a.sys_allocs, 1);
    for (int step = 0; step < 1000; step++) {
        invar_arena_reset(&a);
        for (int i = 0; i < 50; i++) {
            float *f = invar_arena_alloc(&a, 1000 * sizeof *f);
            f[999] = (float)i; /* touch the end: ASan checks the bounds */
        }
    }
    /* Step 0 chains blocks; the reset before step 1 folds them into one; then nothing. */
    uint64_t settled = a.sys_allocs;
    for (int step = 0; step < 1000; step++) {
        invar_arena_reset(&a);
        for (int i = 0; i < 50; i++)
            invar_arena_alloc(&a, 1000 * sizeof(float));
    }
    cr_assert_eq(a.sys_allocs, settled, "arena allocated %llu blocks after settling",
                 (unsigned long long)(a.sys_allocs - settled));
    cr_assert_geq(a.high_water, 50 * 4032);
    invar_arena_deinit(&a);
}

Test(arena, calloc_zeroes_reused_memory)
{
    struct invar_arena a;
    invar_arena_init(&a, 4096);
    unsigned char *p = invar_arena_alloc(&a, 256);
    for (int i = 0; i < 256; i++)
        p[i] = 0xAB;
    invar_arena_reset(&a);
    unsigned char *z = invar_arena_calloc(&a, 256);
    cr_assert_eq(z, p);
    for (int i = 0; i < 256; i++)
        cr_assert_eq(z[i], 0);
    invar_arena_deinit(&a);
}
