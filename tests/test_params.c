/* Parameter blocks: layout, initialisers, determinism, copy, EMA and zero-grad. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "invar/params.h"

/* A small model: conv weight, its bias, a BN pair, BN running stats (buffers), an fc. */
static struct invar_params *make_model(uint64_t seed, int extra)
{
    struct invar_params *p = invar_params_create();
    cr_assert_not_null(p);
    invar_params_add(p, "conv.w", 4, (int64_t[]){8, 3, 3, 3}, invar_init_kaiming_uniform(27), 0);
    invar_params_add(p, "conv.b", 1, (int64_t[]){8}, invar_init_kaiming_uniform(27),
                     INVAR_P_NO_DECAY);
    invar_params_add(p, "bn.mean", 1, (int64_t[]){8}, invar_init_zeros(), INVAR_P_BUFFER);
    invar_params_add(p, "bn.var", 1, (int64_t[]){8}, invar_init_const(1.0), INVAR_P_BUFFER);
    invar_params_add(p, "bn.gamma", 1, (int64_t[]){8}, invar_init_const(1.0), INVAR_P_NO_DECAY);
    invar_params_add(p, "bn.beta", 1, (int64_t[]){8}, invar_init_zeros(), INVAR_P_NO_DECAY);
    invar_params_add(p, "fc.w", 2, (int64_t[]){10, 72}, invar_init_normal(0.5, 0.1), 0);
    if (extra)
        invar_params_add(p, "late.w", 2, (int64_t[]){5, 7}, invar_init_uniform(-2, 2), 0);
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(p, seed, &err), INVAR_OK, "%s", err.msg);
    return p;
}

Test(params, layout_and_flat_pointers)
{
    struct invar_params *p = make_model(1, 0);
    cr_assert_eq(invar_params_count(p), 7);
    /* Weights: 216 + 8 + 8 + 8 + 720 = 960 floats; buffers: 8 + 8. */
    cr_assert_eq(invar_params_numel(p), 960);
    cr_assert_eq(invar_params_buffer_numel(p), 16);
    float *w = invar_params_data(p), *g = invar_params_grad(p), *b = invar_params_buffers(p);
    cr_assert_eq((uintptr_t)w % 64, 0);
    cr_assert_eq((uintptr_t)g % 64, 0);
    cr_assert_eq((uintptr_t)b % 64, 0);

    /* Trainable tensors back to back in declaration order, buffers in their own block. */
    static const struct {
        const char *name;
        int64_t offset;
        int buffer;
    } want[] = {{"conv.w", 0, 0},     {"conv.b", 216, 0},  {"bn.mean", 0, 1}, {"bn.var", 8, 1},
                {"bn.gamma", 224, 0}, {"bn.beta", 232, 0}, {"fc.w", 240, 0}};
    for (size_t i = 0; i < 7; i++) {
        const char *name;
        unsigned flags;
        struct invar_tensor *t = invar_params_at(p, i, &name, &flags);
        cr_assert_str_eq(name, want[i].name);
        cr_assert_eq(invar_params_find(p, want[i].name), t);
        cr_assert_eq(!!(flags & INVAR_P_BUFFER), want[i].buffer);
        if (want[i].buffer) {
            cr_assert_eq(t->data, b + want[i].offset);
            cr_assert_null(t->grad);
            cr_assert_eq(t->requires_grad, 0);
        } else {
            cr_assert_eq(t->data, w + want[i].offset);
            cr_assert_eq(t->grad, g + want[i].offset);
            cr_assert_eq(t->requires_grad, 1);
        }
    }
    struct invar_tensor *fc = invar_params_find(p, "fc.w");
    cr_assert_eq(fc->ndim, 2);
    cr_assert_eq(fc->shape[0], 10);
    cr_assert_eq(fc->shape[1], 72);
    cr_assert_eq(fc->stride[0], 72);
    cr_assert_eq(fc->numel, 720);
    cr_assert_null(invar_params_find(p, "fc.bias"));

    /* Constant and zero initialisers, and gradients start at zero. */
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(invar_params_find(p, "bn.gamma")->data[i], 1.0f);
        cr_assert_eq(invar_params_find(p, "bn.beta")->data[i], 0.0f);
        cr_assert_eq(invar_params_find(p, "bn.var")->data[i], 1.0f);
        cr_assert_eq(invar_params_find(p, "bn.mean")->data[i], 0.0f);
    }
    for (size_t i = 0; i < invar_params_numel(p); i++)
        cr_assert_eq(g[i], 0.0f);
    invar_params_destroy(p);
}

Test(params, names_are_copied)
{
    struct invar_params *p = invar_params_create();
    char name[16] = "enc.w";
    struct invar_tensor *t = invar_params_add(p, name, 1, (int64_t[]){3}, invar_init_zeros(), 0);
    strcpy(name, "garbage");
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(p, 0, &err), INVAR_OK);
    cr_assert_eq(invar_params_find(p, "enc.w"), t);
    cr_assert_null(invar_params_find(p, "garbage"));
    invar_params_destroy(p);
    invar_params_destroy(NULL);
}

Test(params, bad_initialiser_is_an_error)
{
    struct invar_params *p = invar_params_create();
    invar_params_add(p, "w", 1, (int64_t[]){3}, invar_init_kaiming_uniform(0), 0);
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(p, 0, &err), INVAR_ERR_INVALID);
    cr_assert(strstr(err.msg, "parameter w") != NULL, "%s", err.msg);
    invar_params_destroy(p);
}

Test(params, duplicate_name_aborts, .signal = SIGABRT)
{
    struct invar_params *p = invar_params_create();
    invar_params_add(p, "w", 1, (int64_t[]){3}, invar_init_zeros(), 0);
    invar_params_add(p, "w", 1, (int64_t[]){3}, invar_init_zeros(), 0);
}

Test(params, add_after_finalize_aborts, .signal = SIGABRT)
{
    struct invar_params *p = invar_params_create();
    invar_params_add(p, "w", 1, (int64_t[]){3}, invar_init_zeros(), 0);
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(p, 0, &err), INVAR_OK);
    invar_params_add(p, "v", 1, (int64_t[]){3}, invar_init_zeros(), 0);
}

static void moments(const float *x, size_t n, double *mean, double *var, double *lo, double *hi)
{
    double s = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
        *lo = fmin(*lo, x[i]);
        *hi = fmax(*hi, x[i]);
    }
    *mean = s / n;
    *var = s2 / n - *mean * *mean;
}

Test(params, initialiser_statistics)
{
    enum { N = 200000 };
    struct invar_params *p = invar_params_create();
    /* fan_in 100: bound 1/sqrt(100) = 0.1, variance bound^2/3 = 1/300. */
    struct invar_tensor *ku =
        invar_params_add(p, "ku", 2, (int64_t[]){N / 100, 100}, invar_init_kaiming_uniform(100), 0);
    /* fan_in 50: std sqrt(2/50) = 0.2. */
    struct invar_tensor *kn =
        invar_params_add(p, "kn", 1, (int64_t[]){N}, invar_init_kaiming_normal(50), 0);
    struct invar_tensor *nm =
        invar_params_add(p, "nm", 1, (int64_t[]){N}, invar_init_normal(-1.0, 0.02), 0);
    struct invar_tensor *un =
        invar_params_add(p, "un", 1, (int64_t[]){N}, invar_init_uniform(2.0, 5.0), INVAR_P_BUFFER);
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(p, 1234, &err), INVAR_OK, "%s", err.msg);
    double mean, var, lo, hi;

    moments(ku->data, N, &mean, &var, &lo, &hi);
    cr_assert(lo >= -0.1 && hi < 0.1, "kaiming uniform range [%f, %f]", lo, hi);
    cr_assert(lo < -0.099 && hi > 0.099, "kaiming uniform does not fill its range");
    cr_assert(fabs(mean) < 5 * 0.1 / sqrt(3.0 * N), "mean %f", mean);
    cr_assert(fabs(var - 1.0 / 300) < 1e-4, "variance %f", var);

    moments(kn->data, N, &mean, &var, &lo, &hi);
    cr_assert(fabs(mean) < 5 * 0.2 / sqrt(N), "mean %f", mean);
    cr_assert(fabs(sqrt(var) - 0.2) < 2e-3, "std %f", sqrt(var));

    moments(nm->data, N, &mean, &var, &lo, &hi);
    cr_assert(fabs(mean + 1.0) < 5 * 0.02 / sqrt(N), "mean %f", mean);
    cr_assert(fabs(sqrt(var) - 0.02) < 2e-4, "std %f", sqrt(var));

    moments(un->data, N, &mean, &var, &lo, &hi);
    cr_assert(lo >= 2.0 && hi < 5.0);
    cr_assert(fabs(mean - 3.5) < 0.01, "mean %f", mean);
    cr_assert(fabs(var - 0.75) < 0.01, "variance %f", var);

    /* Tensors have their own streams: no two tensors of the same kind share values. */
    cr_assert_neq(memcmp(kn->data, nm->data, 64), 0);
    invar_params_destroy(p);
}

Test(params, deterministic_and_independent_of_later_tensors)
{
    struct invar_params *a = make_model(77, 0), *b = make_model(77, 0), *c = make_model(77, 1),
                        *d = make_model(78, 0);
    size_t n = invar_params_numel(a);
    cr_assert_eq(memcmp(invar_params_data(a), invar_params_data(b), n * sizeof(float)), 0);
    /* A tensor declared after the others moves nothing that came before it. */
    cr_assert_eq(invar_params_numel(c), n + 35);
    cr_assert_eq(memcmp(invar_params_data(a), invar_params_data(c), n * sizeof(float)), 0);
    /* Another seed gives other weights (the random ones: conv.w and fc.w). */
    struct invar_tensor *fa = invar_params_find(a, "fc.w"), *fd = invar_params_find(d, "fc.w");
    int same = 0;
    for (int i = 0; i < 720; i++)
        same += fa->data[i] == fd->data[i];
    cr_assert_lt(same, 5);
    invar_params_destroy(a);
    invar_params_destroy(b);
    invar_params_destroy(c);
    invar_params_destroy(d);
}

Test(params, zero_grad_copy_and_ema)
{
    struct invar_params *dst = make_model(1, 0), *src = make_model(2, 0);
    float *dw = invar_params_data(dst), *sw = invar_params_data(src);
    float *db = invar_params_buffers(dst), *sb = invar_params_buffers(src);
    size_t n = invar_params_numel(dst), nb = invar_params_buffer_numel(dst);

    /* zero_grad clears every gradient and leaves weights and buffers alone. */
    float *g = invar_params_grad(dst);
    for (size_t i = 0; i < n; i++)
        g[i] = (float)i;
    db[3] = 7.0f;
    float w5 = dw[5];
    invar_params_zero_grad(dst);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(g[i], 0.0f);
    cr_assert_eq(db[3], 7.0f);
    cr_assert_eq(dw[5], w5);

    /* copy: weights and buffers. */
    sb[0] = 42.0f;
    invar_params_copy(dst, src);
    cr_assert_eq(memcmp(dw, sw, n * sizeof *dw), 0);
    cr_assert_eq(memcmp(db, sb, nb * sizeof *db), 0);

    /* EMA with m = 0.75 on chosen values:
     *   dst 2, src 6  -> 0.75*2 + 0.25*6  = 3
     *   dst -4, src 4 -> 0.75*-4 + 0.25*4 = -2
     *   dst 1, src 1  -> 1
     * twice on the first: 0.75*3 + 0.25*6 = 3.75. Buffers stay as they were. */
    for (size_t i = 0; i < n; i++)
        dw[i] = 1.0f, sw[i] = 1.0f;
    dw[0] = 2.0f, sw[0] = 6.0f;
    dw[n - 1] = -4.0f, sw[n - 1] = 4.0f;
    for (size_t i = 0; i < nb; i++)
        db[i] = -1.0f, sb[i] = 100.0f;
    invar_params_ema(dst, src, 0.75f);
    cr_assert_float_eq(dw[0], 3.0f, 1e-6);
    cr_assert_float_eq(dw[n - 1], -2.0f, 1e-6);
    for (size_t i = 1; i < n - 1; i++)
        cr_assert_float_eq(dw[i], 1.0f, 1e-6);
    invar_params_ema(dst, src, 0.75f);
    cr_assert_float_eq(dw[0], 3.75f, 1e-6);
    for (size_t i = 0; i < nb; i++)
        cr_assert_eq(db[i], -1.0f, "EMA touched buffer %zu", i);
    /* m = 1 freezes dst; m = 0 copies src. */
    invar_params_ema(dst, src, 1.0f);
    cr_assert_float_eq(dw[0], 3.75f, 1e-6);
    invar_params_ema(dst, src, 0.0f);
    cr_assert_eq(memcmp(dw, sw, n * sizeof *dw), 0);
    invar_params_destroy(dst);
    invar_params_destroy(src);
}
