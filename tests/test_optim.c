/* Optimizers against updates worked out by hand, the schedules at chosen steps, and an exact
 * resume from saved state. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/optim.h"

/* w: two decayed weights; b: one NO_DECAY weight (a bias); buf: a buffer that no optimizer
 * may touch. */
struct tiny {
    struct invar_params *p;
    struct invar_tensor *w, *b, *buf;
};

static struct tiny tiny_create(float w0, float w1, float b0)
{
    struct tiny t;
    t.p = invar_params_create();
    t.w = invar_params_add(t.p, "w", 1, (int64_t[]){2}, invar_init_zeros(), 0);
    t.buf = invar_params_add(t.p, "buf", 1, (int64_t[]){1}, invar_init_const(5.0), INVAR_P_BUFFER);
    t.b = invar_params_add(t.p, "b", 1, (int64_t[]){1}, invar_init_zeros(), INVAR_P_NO_DECAY);
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(t.p, 0, &err), INVAR_OK, "%s", err.msg);
    t.w->data[0] = w0, t.w->data[1] = w1, t.b->data[0] = b0;
    return t;
}

static struct invar_optim *optim_new(const struct invar_optim_config *cfg, struct invar_params *p)
{
    struct invar_optim *o = NULL;
    struct invar_error err = {0};
    cr_assert_eq(invar_optim_create(&o, cfg, &p, 1, &err), INVAR_OK, "%s", err.msg);
    return o;
}

#define NEAR(x, want)                                                                              \
    cr_assert_float_eq((x), (want), 1e-6 + 1e-6 * fabs(want), "%s = %.9g, want %.9g", #x,          \
                       (double)(x), (double)(want))

Test(optim, sgd_momentum_by_hand)
{
    struct tiny t = tiny_create(1.0f, -2.0f, 0.5f);
    struct invar_optim_config cfg = {
        .kind = INVAR_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .weight_decay = 0.01};
    struct invar_optim *o = optim_new(&cfg, t.p);
    cr_assert_eq(invar_optim_state_numel(o), 3);
    /* Constant gradients gw = (0.5, 0.25), gb = 1; lr 0.1, mu 0.9, wd 0.01 (not on b).
     * step 1: g' = g + wd w = (0.5 + 0.01, 0.25 - 0.02) = (0.51, 0.23); v = g'
     *         w = (1 - 0.051, -2 - 0.023) = (0.949, -2.023)
     *         b: v = 1, b = 0.5 - 0.1 = 0.4
     * step 2: g' = (0.5 + 0.00949, 0.25 - 0.02023) = (0.50949, 0.22977)
     *         v = (0.459 + 0.50949, 0.207 + 0.22977) = (0.96849, 0.43677)
     *         w = (0.949 - 0.096849, -2.023 - 0.043677) = (0.852151, -2.066677)
     *         b: v = 0.9 + 1 = 1.9, b = 0.4 - 0.19 = 0.21
     * step 3: g' = (0.5 + 0.00852151, 0.25 - 0.02066677) = (0.50852151, 0.22933323)
     *         v = (0.871641 + 0.50852151, 0.393093 + 0.22933323) = (1.38016251, 0.62242623)
     *         w = (0.852151 - 0.138016251, -2.066677 - 0.062242623)
     *           = (0.714134749, -2.128919623)
     *         b: v = 1.71 + 1 = 2.71, b = 0.21 - 0.271 = -0.061 */
    static const float want[3][3] = {{0.949f, -2.023f, 0.4f},
                                     {0.852151f, -2.066677f, 0.21f},
                                     {0.714134749f, -2.128919623f, -0.061f}};
    for (int s = 0; s < 3; s++) {
        t.w->grad[0] = 0.5f, t.w->grad[1] = 0.25f, t.b->grad[0] = 1.0f;
        invar_optim_step(o, cfg.lr);
        NEAR(t.w->data[0], want[s][0]);
        NEAR(t.w->data[1], want[s][1]);
        NEAR(t.b->data[0], want[s][2]);
    }
    NEAR(invar_optim_state(o)[0], 1.38016251f);
    NEAR(invar_optim_state(o)[2], 2.71f);
    cr_assert_eq(t.buf->data[0], 5.0f);
    cr_assert_eq(invar_optim_steps_taken(o), 3);
    invar_optim_destroy(o);
    invar_params_destroy(t.p);
}

Test(optim, sgd_nesterov_by_hand)
{
    struct tiny t = tiny_create(1.0f, -2.0f, 0.5f), u = tiny_create(1.0f, -2.0f, 0.5f);
    struct invar_optim_config cfg = {
        .kind = INVAR_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = 1};
    struct invar_optim *o = optim_new(&cfg, t.p);
    cfg.nesterov = 0;
    struct invar_optim *plain = optim_new(&cfg, u.p);
    /* Same gradients as above; the update is g' + mu v instead of v.
     * step 1: g' = 0.51, v = 0.51, update 0.51 + 0.459 = 0.969, w0 = 1 - 0.0969 = 0.9031
     *         b: v = 1, update 1 + 0.9 = 1.9, b = 0.5 - 0.19 = 0.31
     * step 2: g' = 0.5 + 0.009031 = 0.509031, v = 0.459 + 0.509031 = 0.968031,
     *         update 0.509031 + 0.8712279 = 1.3802589, w0 = 0.9031 - 0.13802589 = 0.76507411
     *         b: v = 1.9, update 1 + 1.71 = 2.71, b = 0.31 - 0.271 = 0.039 */
    static const float want[2][2] = {{0.9031f, 0.31f}, {0.76507411f, 0.039f}};
    for (int s = 0; s < 2; s++) {
        t.w->grad[0] = u.w->grad[0] = 0.5f;
        t.w->grad[1] = u.w->grad[1] = 0.25f;
        t.b->grad[0] = u.b->grad[0] = 1.0f;
        invar_optim_step(o, 0.1);
        invar_optim_step(plain, 0.1);
        NEAR(t.w->data[0], want[s][0]);
        NEAR(t.b->data[0], want[s][1]);
    }
    /* Plain momentum is at 0.852151 (previous test): Nesterov looks ahead and moves further. */
    NEAR(u.w->data[0], 0.852151f);
    cr_assert_lt(t.w->data[0], u.w->data[0] - 0.05f);
    invar_optim_destroy(o);
    invar_optim_destroy(plain);
    invar_params_destroy(t.p);
    invar_params_destroy(u.p);
}

Test(optim, weight_decay_skips_no_decay_tensors)
{
    /* Zero gradients, no momentum, wd 0.5, lr 0.1: decayed weights shrink by lr wd w = 5 %,
     * the NO_DECAY bias does not move: w = 2 - 0.1 * 0.5 * 2 = 1.9; b = 2. Twice: 1.805. */
    struct invar_optim_config cfg = {.kind = INVAR_OPTIM_SGD, .lr = 0.1, .weight_decay = 0.5};
    for (int kind = 0; kind < 2; kind++) {
        struct tiny t = tiny_create(2.0f, -2.0f, 2.0f);
        cfg.kind = kind ? INVAR_OPTIM_ADAMW : INVAR_OPTIM_SGD;
        cfg.beta1 = 0.9, cfg.beta2 = 0.999, cfg.eps = 1e-8;
        struct invar_optim *o = optim_new(&cfg, t.p);
        cr_assert_eq(invar_optim_state_numel(o), kind ? 6 : 0);
        invar_params_zero_grad(t.p);
        invar_optim_step(o, 0.1);
        invar_optim_step(o, 0.1);
        /* AdamW's decoupled decay is the same multiplication, w (1 - lr wd) per step, and a
         * zero gradient leaves its moments at 0 (0 / (0 + eps) = 0). */
        NEAR(t.w->data[0], 1.805f);
        NEAR(t.w->data[1], -1.805f);
        cr_assert_eq(t.b->data[0], 2.0f);
        cr_assert_eq(t.buf->data[0], 5.0f);
        invar_optim_destroy(o);
        invar_params_destroy(t.p);
    }
}

Test(optim, fixed_lr_tensors_ignore_the_schedule)
{
    /* Base lr 0.1, the step given 0.025 (a schedule's value): plain SGD, g = 1 for both.
     * w moves by 0.025 a step, f (FIXED_LR) by 0.1, whatever lr the step is given. */
    struct invar_params *p = invar_params_create();
    struct invar_tensor *w = invar_params_add(p, "w", 1, (int64_t[]){1}, invar_init_zeros(), 0);
    struct invar_tensor *f =
        invar_params_add(p, "f", 1, (int64_t[]){1}, invar_init_zeros(), INVAR_P_FIXED_LR);
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(p, 0, &err), INVAR_OK, "%s", err.msg);
    struct invar_optim_config cfg = {.kind = INVAR_OPTIM_SGD, .lr = 0.1};
    struct invar_optim *o = optim_new(&cfg, p);
    static const double given[2] = {0.025, 0.0};
    static const float want_w[2] = {-0.025f, -0.025f}, want_f[2] = {-0.1f, -0.2f};
    for (int s = 0; s < 2; s++) {
        w->grad[0] = f->grad[0] = 1.0f;
        invar_optim_step(o, given[s]);
        NEAR(w->data[0], want_w[s]);
        NEAR(f->data[0], want_f[s]);
    }
    invar_optim_destroy(o);
    invar_params_destroy(p);
}

Test(optim, lars_trust_ratio_by_hand)
{
    struct tiny t = tiny_create(3.0f, 4.0f, 0.5f);
    struct invar_optim_config cfg = {.kind = INVAR_OPTIM_LARS,
                                     .lr = 0.1,
                                     .momentum = 0.9,
                                     .weight_decay = 0.2,
                                     .lars_eta = 0.02};
    struct invar_optim *o = optim_new(&cfg, t.p);
    /* gw = (0.6, 0.8): ||g|| = 1. gb = 1. lr 0.1, mu 0.9, wd 0.2, eta 0.02.
     * step 1: ||w|| = 5, trust = 0.02 * 5 / (1 + 0.2 * 5) = 0.05
     *         g' = g + wd w = (1.2, 1.6); v = lr trust g' = 0.005 (1.2, 1.6) = (0.006, 0.008)
     *         w = (2.994, 3.992)
     *         b (NO_DECAY: no decay, trust 1): v = 0.1, b = 0.4
     * step 2: w = 0.998 (3, 4), ||w|| = 4.99, trust = 0.02 * 4.99 / (1 + 0.998) = 0.0998 / 1.998
     *         g' = (0.6 + 0.5988, 0.8 + 0.7984) = (1.1988, 1.5984) = 1.998 (0.6, 0.8)
     *         lr trust g' = 0.00998 (0.6, 0.8) = (0.005988, 0.007984)
     *         v = (0.0054 + 0.005988, 0.0072 + 0.007984) = (0.011388, 0.015184)
     *         w = (2.982612, 3.976816)
     *         b: v = 0.09 + 0.1 = 0.19, b = 0.21 */
    static const float want[2][3] = {{2.994f, 3.992f, 0.4f}, {2.982612f, 3.976816f, 0.21f}};
    for (int s = 0; s < 2; s++) {
        t.w->grad[0] = 0.6f, t.w->grad[1] = 0.8f, t.b->grad[0] = 1.0f;
        invar_optim_step(o, 0.1);
        NEAR(t.w->data[0], want[s][0]);
        NEAR(t.w->data[1], want[s][1]);
        NEAR(t.b->data[0], want[s][2]);
    }
    NEAR(invar_optim_state(o)[1], 0.015184f);
    cr_assert_eq(t.buf->data[0], 5.0f);
    invar_optim_destroy(o);
    invar_params_destroy(t.p);
}

Test(optim, adamw_bias_correction_by_hand)
{
    struct tiny t = tiny_create(1.0f, 0.0f, 0.5f);
    struct invar_optim_config cfg = {.kind = INVAR_OPTIM_ADAMW,
                                     .lr = 0.1,
                                     .weight_decay = 0.1,
                                     .beta1 = 0.9,
                                     .beta2 = 0.999,
                                     .eps = 1e-8};
    struct invar_optim *o = optim_new(&cfg, t.p);
    cr_assert_eq(invar_optim_state_numel(o), 6);
    /* w0 gets g = 0.5 then -0.25; w1 stays 0 with g = 0; b gets g = 1 twice (NO_DECAY).
     * step 1 (t = 1): decay w0 = 1 (1 - 0.1 * 0.1) = 0.99
     *         m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025
     *         m^ = 0.05 / 0.1 = 0.5, v^ = 0.00025 / 0.001 = 0.25, sqrt 0.5
     *         w0 = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.890000002
     *         b: m^ = 1, v^ = 1, b = 0.5 - 0.1 / (1 + 1e-8) = 0.4
     * (without bias correction w0 would move by 0.1 * 0.05 / 0.0158 = 0.316)
     * step 2 (t = 2): decay w0 = 0.890000002 * 0.99 = 0.881100002
     *         m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225
     *         m^ = 0.02 / (1 - 0.81) = 0.105263158, v^ = 0.00031225 / 0.001999 = 0.156203102
     *         w0 = 0.881100002 - 0.1 * 0.105263158 / 0.395225381 = 0.881100002 - 0.026633703
     *            = 0.854466299
     *         b: m = 0.19, v = 0.001999, m^ = v^ = 1, b = 0.3 */
    static const float gw[2] = {0.5f, -0.25f};
    static const float want[2][2] = {{0.890000002f, 0.4f}, {0.854466299f, 0.3f}};
    for (int s = 0; s < 2; s++) {
        t.w->grad[0] = gw[s], t.w->grad[1] = 0.0f, t.b->grad[0] = 1.0f;
        invar_optim_step(o, 0.1);
        NEAR(t.w->data[0], want[s][0]);
        cr_assert_eq(t.w->data[1], 0.0f);
        NEAR(t.b->data[0], want[s][1]);
    }
    /* State layout: first moments (w0, w1, b), then second moments. */
    const float *st = invar_optim_state(o);
    NEAR(st[0], 0.02f);
    NEAR(st[2], 0.19f);
    NEAR(st[3], 0.00031225f);
    NEAR(st[5], 0.001999f);
    cr_assert_eq(t.buf->data[0], 5.0f);
    invar_optim_destroy(o);
    invar_params_destroy(t.p);
}

Test(optim, schedules_at_chosen_steps)
{
    /* Warm-up 10 steps to lr 1: lr (step + 1) / 10. Cosine over the remaining 101 steps
     * (10..110) from 1 to 0.1: s = step - 10, lr = 0.1 + 0.9 (1 + cos(pi s / 100)) / 2. */
    struct invar_optim_config c = {
        .lr = 1.0, .schedule = INVAR_SCHED_COSINE, .warmup_steps = 10, .final_lr = 0.1};
    const int64_t total = 111;
    NEAR(invar_optim_lr(&c, 0, total), 0.1);
    NEAR(invar_optim_lr(&c, 4, total), 0.5);
    NEAR(invar_optim_lr(&c, 9, total), 1.0);
    NEAR(invar_optim_lr(&c, 10, total), 1.0);
    /* s = 25: 0.1 + 0.45 (1 + cos(pi / 4)) = 0.1 + 0.45 * 1.707106781 = 0.868198052 */
    NEAR(invar_optim_lr(&c, 35, total), 0.868198052);
    /* midpoint s = 50: (lr + final) / 2 */
    NEAR(invar_optim_lr(&c, 60, total), 0.55);
    NEAR(invar_optim_lr(&c, 110, total), 0.1);
    NEAR(invar_optim_lr(&c, 500, total), 0.1);
    /* Monotone decreasing after warm-up. */
    for (int64_t s = 11; s < total; s++)
        cr_assert_leq(invar_optim_lr(&c, s, total), invar_optim_lr(&c, s - 1, total));

    /* Step decay: x0.1 every 30 steps, counted from the end of warm-up (none here). */
    struct invar_optim_config st = {
        .lr = 0.5, .schedule = INVAR_SCHED_STEP, .step_every = 30, .step_gamma = 0.1};
    NEAR(invar_optim_lr(&st, 0, 100), 0.5);
    NEAR(invar_optim_lr(&st, 29, 100), 0.5);
    NEAR(invar_optim_lr(&st, 30, 100), 0.05);
    NEAR(invar_optim_lr(&st, 59, 100), 0.05);
    NEAR(invar_optim_lr(&st, 60, 100), 0.005);
    st.warmup_steps = 5;
    NEAR(invar_optim_lr(&st, 2, 100), 0.3);   /* 0.5 * 3 / 5 */
    NEAR(invar_optim_lr(&st, 34, 100), 0.5);  /* s = 29 */
    NEAR(invar_optim_lr(&st, 35, 100), 0.05); /* s = 30 */

    struct invar_optim_config k = {.lr = 0.2, .schedule = INVAR_SCHED_CONSTANT, .warmup_steps = 4};
    NEAR(invar_optim_lr(&k, 0, 10), 0.05);
    NEAR(invar_optim_lr(&k, 3, 10), 0.2);
    NEAR(invar_optim_lr(&k, 9, 10), 0.2);
}

/* A gradient that depends on the weights and the step, like a real loss. */
static void fake_backward(struct invar_params *p, int step)
{
    float *w = invar_params_data(p), *g = invar_params_grad(p);
    for (size_t i = 0; i < invar_params_numel(p); i++)
        g[i] = 0.3f * w[i] + 0.01f * (float)((int)i - step) + 0.05f * sinf((float)(i * 7 + step));
}

static struct invar_params *rt_model(void)
{
    struct invar_params *p = invar_params_create();
    invar_params_add(p, "enc.w", 2, (int64_t[]){6, 5}, invar_init_kaiming_uniform(5), 0);
    invar_params_add(p, "bn.mean", 1, (int64_t[]){6}, invar_init_zeros(), INVAR_P_BUFFER);
    invar_params_add(p, "enc.b", 1, (int64_t[]){6}, invar_init_uniform(-1, 1), INVAR_P_NO_DECAY);
    invar_params_add(p, "head.w", 2, (int64_t[]){3, 6}, invar_init_normal(0, 0.5), 0);
    struct invar_error err = {0};
    cr_assert_eq(invar_params_finalize(p, 99, &err), INVAR_OK, "%s", err.msg);
    return p;
}

Test(optim, state_round_trip_is_bit_exact)
{
    static const struct invar_optim_config cfgs[] = {
        {.kind = INVAR_OPTIM_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = 1},
        {.kind = INVAR_OPTIM_LARS,
         .lr = 0.3,
         .momentum = 0.9,
         .weight_decay = 1e-2,
         .lars_eta = 0.01},
        {.kind = INVAR_OPTIM_ADAMW,
         .lr = 0.01,
         .weight_decay = 0.05,
         .beta1 = 0.9,
         .beta2 = 0.99,
         .eps = 1e-6},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        const struct invar_optim_config *cfg = &cfgs[c];
        struct invar_params *p = rt_model(), *saved_w = rt_model();
        struct invar_optim *o = optim_new(cfg, p);
        size_t n = invar_params_numel(p), ns = invar_optim_state_numel(o);
        for (int s = 0; s < 2; s++) {
            fake_backward(p, s);
            invar_optim_step(o, cfg->lr);
        }
        /* Checkpoint: weights, optimizer state, step count. */
        invar_params_copy(saved_w, p);
        float *saved_state = malloc(ns * sizeof(float));
        memcpy(saved_state, invar_optim_state(o), ns * sizeof(float));
        int64_t saved_steps = invar_optim_steps_taken(o);
        cr_assert_eq(saved_steps, 2);

        for (int s = 2; s < 5; s++) {
            fake_backward(p, s);
            invar_optim_step(o, cfg->lr);
        }
        float *straight = malloc(n * sizeof(float));
        memcpy(straight, invar_params_data(p), n * sizeof(float));

        /* Resume into a fresh optimizer, as a restarted process would. */
        invar_params_copy(p, saved_w);
        struct invar_optim *r = optim_new(cfg, p);
        cr_assert_eq(invar_optim_state_numel(r), ns);
        memcpy(invar_optim_state(r), saved_state, ns * sizeof(float));
        invar_optim_set_steps_taken(r, saved_steps);
        for (int s = 2; s < 5; s++) {
            fake_backward(p, s);
            invar_optim_step(r, cfg->lr);
        }
        cr_assert_eq(memcmp(straight, invar_params_data(p), n * sizeof(float)), 0,
                     "config %zu: resumed weights differ", c);
        cr_assert_eq(memcmp(invar_optim_state(o), invar_optim_state(r), ns * sizeof(float)), 0);
        cr_assert_eq(invar_optim_steps_taken(r), 5);

        /* The state matters: resuming without it does not reproduce the run. */
        invar_params_copy(p, saved_w);
        struct invar_optim *cold = optim_new(cfg, p);
        for (int s = 2; s < 5; s++) {
            fake_backward(p, s);
            invar_optim_step(cold, cfg->lr);
        }
        cr_assert_neq(memcmp(straight, invar_params_data(p), n * sizeof(float)), 0);

        invar_optim_destroy(o);
        invar_optim_destroy(r);
        invar_optim_destroy(cold);
        free(saved_state);
        free(straight);
        invar_params_destroy(p);
        invar_params_destroy(saved_w);
    }
}

Test(optim, several_groups_share_one_state_block)
{
    struct tiny a = tiny_create(1.0f, -2.0f, 0.5f), b = tiny_create(1.0f, -2.0f, 0.5f);
    struct invar_optim_config cfg = {
        .kind = INVAR_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .weight_decay = 0.01};
    struct invar_params *groups[] = {a.p, b.p};
    struct invar_optim *o = NULL;
    struct invar_error err = {0};
    cr_assert_eq(invar_optim_create(&o, &cfg, groups, 2, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_optim_state_numel(o), 6);
    a.w->grad[0] = b.w->grad[0] = 0.5f;
    a.w->grad[1] = b.w->grad[1] = 0.25f;
    a.b->grad[0] = b.b->grad[0] = 1.0f;
    invar_optim_step(o, 0.1);
    /* Both groups took the first step of sgd_momentum_by_hand; their momenta sit side by side. */
    NEAR(a.w->data[0], 0.949f);
    NEAR(b.w->data[0], 0.949f);
    NEAR(b.b->data[0], 0.4f);
    NEAR(invar_optim_state(o)[0], 0.51f);
    NEAR(invar_optim_state(o)[3], 0.51f);
    invar_optim_destroy(o);
    invar_params_destroy(a.p);
    invar_params_destroy(b.p);
}

/* clip_norm scales every group's gradients by one factor when their global norm exceeds it:
 * gradients (2, 0 | 0) and (0, 2 | 1) have norm 3; clipped to 1.5 they halve (less the 1e-6
 * that keeps the division finite), under 4 they stay. Plain SGD at lr 1 shows what was used. */
Test(optim, clip_norm_scales_all_groups_by_the_global_norm)
{
    for (int clip = 0; clip < 2; clip++) {
        struct tiny a = tiny_create(1.0f, -2.0f, 0.5f), b = tiny_create(1.0f, -2.0f, 0.5f);
        struct invar_optim_config cfg = {.kind = INVAR_OPTIM_SGD, .lr = 1,
                                         .clip_norm = clip ? 1.5 : 4};
        struct invar_params *groups[] = {a.p, b.p};
        struct invar_optim *o = NULL;
        struct invar_error err = {0};
        cr_assert_eq(invar_optim_create(&o, &cfg, groups, 2, &err), INVAR_OK, "%s", err.msg);
        a.w->grad[0] = 2, a.w->grad[1] = 0, a.b->grad[0] = 0;
        b.w->grad[0] = 0, b.w->grad[1] = 2, b.b->grad[0] = 1;
        NEAR(invar_optim_grad_norm(o), 3.0);
        invar_optim_step(o, cfg.lr);
        const double k = clip ? 1.5 / (3 + 1e-6) : 1;
        NEAR(a.w->data[0], 1 - 2 * k);
        NEAR(a.w->data[1], -2.0f);
        NEAR(b.w->data[1], -2 - 2 * k);
        NEAR(b.b->data[0], 0.5 - k);
        NEAR(invar_optim_grad_norm(o), 3 * k);
        cr_assert_eq(a.buf->data[0], 5.0f);
        invar_optim_destroy(o);
        invar_params_destroy(a.p);
        invar_params_destroy(b.p);
    }
}

Test(optim, invalid_configs_are_refused)
{
    struct tiny t = tiny_create(1, 1, 1);
    static const struct {
        struct invar_optim_config cfg;
        const char *needle;
    } bad[] = {
        {{.kind = INVAR_OPTIM_SGD, .lr = -1}, "lr"},
        {{.kind = INVAR_OPTIM_SGD, .lr = 0.1, .momentum = 1.0}, "momentum"},
        {{.kind = INVAR_OPTIM_SGD, .lr = 0.1, .nesterov = 1}, "nesterov"},
        {{.kind = INVAR_OPTIM_LARS, .lr = 0.1, .lars_eta = 1e-3, .nesterov = 1}, "sgd only"},
        {{.kind = INVAR_OPTIM_SGD, .lr = 0.1, .weight_decay = -0.1}, "weight_decay"},
        {{.kind = INVAR_OPTIM_LARS, .lr = 0.1}, "lars_eta"},
        {{.kind = INVAR_OPTIM_ADAMW, .lr = 0.1, .beta1 = 0.9, .beta2 = 1.0}, "beta"},
        {{.kind = INVAR_OPTIM_SGD, .lr = 0.1, .schedule = INVAR_SCHED_STEP}, "step_every"},
        {{.kind = INVAR_OPTIM_SGD, .lr = 0.1, .warmup_steps = -3}, "warmup_steps"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct invar_optim *o = (struct invar_optim *)&t; /* must be reset to NULL */
        struct invar_error err = {0};
        cr_assert_eq(invar_optim_create(&o, &bad[i].cfg, &t.p, 1, &err), INVAR_ERR_INVALID,
                     "config %zu accepted", i);
        cr_assert_null(o);
        cr_assert(strstr(err.msg, bad[i].needle) != NULL, "config %zu: %s", i, err.msg);
    }
    /* A group that was never finalized. */
    struct invar_params *raw = invar_params_create();
    invar_params_add(raw, "w", 1, (int64_t[]){2}, invar_init_zeros(), 0);
    struct invar_optim_config ok = {.kind = INVAR_OPTIM_SGD, .lr = 0.1};
    struct invar_optim *o = NULL;
    struct invar_error err = {0};
    cr_assert_eq(invar_optim_create(&o, &ok, &raw, 1, &err), INVAR_ERR_INVALID);
    cr_assert(strstr(err.msg, "finalized") != NULL, "%s", err.msg);
    invar_params_destroy(raw);
    invar_params_destroy(t.p);
}
