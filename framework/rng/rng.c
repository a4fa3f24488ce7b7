/* Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11) keyed by the seed, with
 * the 128-bit counter split into (stream, counter). Everything a draw depends on is in the
 * struct, so two generators never interfere and a stream is reproducible from its key alone. */
#include <math.h>

#include "invar/rng.h"

/* The round multipliers and the Weyl key increments of Philox4x32 (Random123). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

void invar_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        if (round > 0) { /* the key schedule bumps before every round but the first */
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* Counter words: (counter lo, counter hi, stream lo, stream hi); key words: (seed lo, seed hi). */
static void rng_refill(struct invar_rng *r)
{
    const uint32_t ctr[4] = {(uint32_t)r->counter, (uint32_t)(r->counter >> 32),
                             (uint32_t)r->stream, (uint32_t)(r->stream >> 32)};
    const uint32_t key[2] = {(uint32_t)r->seed, (uint32_t)(r->seed >> 32)};
    invar_philox4x32_10(ctr, key, r->block);
    r->counter++;
    r->used = 0;
}

void invar_rng_init(struct invar_rng *r, uint64_t seed, uint64_t stream)
{
    r->seed = seed;
    r->stream = stream;
    r->counter = 0;
    r->block[0] = r->block[1] = r->block[2] = r->block[3] = 0;
    r->used = 4;
    r->has_spare = 0;
    r->spare = 0.0f;
}

/* splitmix64's finaliser (Stafford's Mix13): xor-shifts and odd multipliers, each invertible,
 * so the whole map is a bijection on 64-bit words. */
static uint64_t rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* h <- mix(h + golden + x) for each argument: for a fixed prefix the last argument maps to the
 * stream bijectively, so (e, s, v, 0) and (e, s, v', 0) can never share a stream. Adding the
 * golden gamma first keeps mix(0) = 0 from making (0, 0, 0, 0) a fixed point. */
uint64_t invar_rng_stream(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    const uint64_t golden = 0x9E3779B97F4A7C15ull;
    uint64_t h = 0;
    h = rng_mix64(h + golden + a);
    h = rng_mix64(h + golden + b);
    h = rng_mix64(h + golden + c);
    h = rng_mix64(h + golden + d);
    return h;
}

uint32_t invar_rng_u32(struct invar_rng *r)
{
    if (r->used >= 4)
        rng_refill(r);
    return r->block[r->used++];
}

uint64_t invar_rng_u64(struct invar_rng *r)
{
    uint64_t lo = invar_rng_u32(r);
    uint64_t hi = invar_rng_u32(r);
    return lo | hi << 32;
}

/* Lemire's multiply-shift with rejection of the few low products that would bias the result
 * (Lemire 2019, "Fast random integer generation in an interval"). */
uint32_t invar_rng_below(struct invar_rng *r, uint32_t n)
{
    INVAR_ASSERT(n > 0);
    uint64_t m = (uint64_t)invar_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)-n % n; /* 2^32 mod n */
        while (low < threshold) {
            m = (uint64_t)invar_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* 64-bit bound for permutations longer than 2^32: reject the 2^64 mod n lowest draws. */
static uint64_t rng_below64(struct invar_rng *r, uint64_t n)
{
    uint64_t threshold = (uint64_t)-n % n;
    uint64_t x;
    do
        x = invar_rng_u64(r);
    while (x < threshold);
    return x % n;
}

/* The top 24 bits fill a float's mantissa exactly, so every value is a multiple of 2^-24 and
 * 1.0f is never returned. */
float invar_rng_uniform(struct invar_rng *r)
{
    return (float)(invar_rng_u32(r) >> 8) * 0x1p-24f;
}

float invar_rng_range(struct invar_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * invar_rng_uniform(r);
}

/* Box–Muller in double from two 32-bit draws; u1 lies in (0, 1] so the log is finite. The
 * second value of each pair is kept for the next call. */
float invar_rng_normal(struct invar_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = ((double)invar_rng_u32(r) + 1.0) * 0x1p-32;
    double u2 = (double)invar_rng_u32(r) * 0x1p-32;
    double rad = sqrt(-2.0 * log(u1));
    r->spare = (float)(rad * sin(two_pi * u2));
    r->has_spare = 1;
    return (float)(rad * cos(two_pi * u2));
}

/* Fisher–Yates from the top: perm[i] swaps with a uniform index in [0, i]. */
void invar_rng_permutation(struct invar_rng *r, int64_t *perm, int64_t n)
{
    INVAR_ASSERT(n >= 0);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t bound = (uint64_t)i + 1;
        int64_t j = bound <= UINT32_MAX ? (int64_t)invar_rng_below(r, (uint32_t)bound)
                                        : (int64_t)rng_below64(r, bound);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
