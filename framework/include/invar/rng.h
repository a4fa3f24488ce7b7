/* invar/rng.h — counter-based random numbers (Philox4x32-10).
 *
 *     // the randomness of view 1 of sample 1234 in epoch 3, whatever thread computes it
 *     struct invar_rng r;
 *     invar_rng_init(&r, seed, invar_rng_stream(3, 1234, 1, 0));
 *     float u = invar_rng_uniform(&r);   // [0, 1)
 *
 * A generator is the triple (seed, stream, counter): the 64-bit seed is the Philox key, the
 * 128-bit Philox counter is (stream, counter). Draws advance counter only, so any stream can be
 * reproduced from its key alone, and two streams never share a block. invar_rng_stream mixes
 * up to four integers (epoch, sample, view, op) into a stream id with a bijective 64-bit mixer
 * applied in sequence. Same seed and same stream → the same numbers on every machine.
 *
 * Exactly: block k of (seed, stream) is philox(ctr = {k lo, k hi, stream lo, stream hi},
 * key = {seed lo, seed hi}) in 32-bit words; u32 returns its words in order, u64 two of them
 * (low word first). Each generator owns its whole state, so generators used in any
 * interleaving, on any thread, give the same sequences as each used alone. A generator is not
 * itself thread-safe: one per thread (they cost one struct, no allocation).
 */
#ifndef INVAR_RNG_H
#define INVAR_RNG_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct invar_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter; /* next Philox block */
    uint32_t block[4];
    int used;         /* words of block consumed; 4 = empty */
    int has_spare;    /* Box–Muller keeps its second value */
    float spare;
};

/* One Philox4x32-10 block: out = philox(ctr, key). Exposed for tests against the paper's
 * known-answer vectors. */
INVAR_API void invar_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                                   uint32_t out[4]);

INVAR_API void invar_rng_init(struct invar_rng *r, uint64_t seed, uint64_t stream);
INVAR_API uint64_t invar_rng_stream(uint64_t a, uint64_t b, uint64_t c, uint64_t d);
INVAR_API uint32_t invar_rng_u32(struct invar_rng *r);
INVAR_API uint64_t invar_rng_u64(struct invar_rng *r);
/* Uniform in [0, n), unbiased (Lemire's multiply-shift with rejection); n > 0. */
INVAR_API uint32_t invar_rng_below(struct invar_rng *r, uint32_t n);
/* Uniform float in [0, 1) with 24 random bits. */
INVAR_API float invar_rng_uniform(struct invar_rng *r);
/* Uniform in [lo, hi). */
INVAR_API float invar_rng_range(struct invar_rng *r, float lo, float hi);
/* Standard normal: Box–Muller on two 32-bit words, in double; the second value of the pair
 * is kept in the struct and returned by the next call. */
INVAR_API float invar_rng_normal(struct invar_rng *r);
/* Fisher–Yates permutation of 0..n-1 into perm. */
INVAR_API void invar_rng_permutation(struct invar_rng *r, int64_t *perm, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
