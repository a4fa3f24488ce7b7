/* Benchmark: conv2d forward+backward on the reference encoder's layers against cblas_sgemm on
 * a 2048^2 matrix, in the same run, with 2 BLAS threads.
 *
 *     meson test -C build --benchmark ops -v
 *
 * Each figure is the median of REPEATS timed runs after one warm-up; the backward column is
 * the median step minus the median forward. A conv layer's flops are
 * 2*M*N*K for forward (M = C_out, N = batch*OH*OW, K = C_in*KH*KW) plus the same for each
 * backward GEMM it runs: dw always, dx except for the first layer (its input needs no gradient,
 * as in training). Two sets of layers: the encoder on 28x28 images (evaluation, and views of
 * full size) and on the 18x18 views the experiments train on, whose 9x9 and 4x4 planes are
 * where the direct path's dropped columns and partial tiles cost most. The last line is
 * `RESULT conv_gflops=... conv18_gflops=... sgemm_gflops=... ratio=... ratio18=...`.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <invar/graph.h>

#include "../blas_env.h"

#define REPEATS 7
#define BATCH 256

struct layer {
    int64_t c, o, hw; /* C_in -> C_out at hw x hw, 3x3, stride 1, pad 1 */
    int input_grad;   /* 0 for the first layer */
};

static const struct layer layers[] = {
    {1, 32, 28, 0}, {32, 32, 28, 1}, {32, 64, 14, 1}, {64, 64, 14, 1}, {64, 128, 7, 1},
    {1, 32, 18, 0}, {32, 32, 18, 1}, {32, 64, 9, 1},  {64, 64, 9, 1},  {64, 128, 4, 1},
};
#define SET_LAYERS 5 /* layers per set: 28x28, then 18x18 */
#define N_LAYERS (sizeof layers / sizeof layers[0])

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

static void fill(float *p, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

/* The loss's backward hands conv a ones gradient, as any loss would hand it something. */
static void ones_backward(struct invar_tensor *out, struct invar_tensor **in, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    for (int64_t i = 0; i < in[0]->numel; i++)
        in[0]->grad[i] += 1.0f;
}

/* One forward+backward step of a layer: seconds of forward into *fwd, of both returned. */
static double conv_step(struct invar_graph *g, const struct layer *l, const float *xdata,
                        struct invar_tensor *w, struct invar_tensor *b, double *fwd)
{
    invar_graph_reset(g);
    struct invar_tensor *x = invar_graph_tensor(g, 4, (int64_t[]){BATCH, l->c, l->hw, l->hw});
    memcpy(x->data, xdata, (size_t)x->numel * sizeof(float));
    x->requires_grad = l->input_grad;
    memset(w->grad, 0, (size_t)w->numel * sizeof(float));
    memset(b->grad, 0, (size_t)b->numel * sizeof(float));
    double t0 = now();
    struct invar_tensor *y = invar_conv2d(g, x, w, b, 1, 1);
    *fwd = now() - t0;
    struct invar_tensor *loss = invar_graph_tensor(g, 1, (int64_t[]){1});
    loss->data[0] = 0;
    invar_custom_op(g, "ones", loss, &y, 1, ones_backward, NULL);
    invar_graph_backward(g, loss);
    return now() - t0;
}

struct layer_state {
    float *x;                 /* (BATCH, C, HW, HW) input values */
    float *buf;               /* w, b, w->grad, b->grad */
    struct invar_tensor w, b; /* (O, C, 3, 3), (O) */
    double t[REPEATS], f[REPEATS];
};

static void layer_state_init(struct layer_state *st, const struct layer *l, unsigned seed)
{
    const int64_t xn = BATCH * l->c * l->hw * l->hw, wn = l->o * l->c * 9;
    st->x = malloc((size_t)xn * sizeof(float));
    st->buf = malloc((size_t)(2 * wn + 2 * l->o) * sizeof(float));
    fill(st->x, xn, seed);
    fill(st->buf, wn + l->o, seed + 99u);
    invar_tensor_wrap(&st->w, st->buf, 4, (int64_t[]){l->o, l->c, 3, 3});
    invar_tensor_wrap(&st->b, st->buf + wn, 1, (int64_t[]){l->o});
    st->w.grad = st->buf + wn + l->o, st->b.grad = st->buf + 2 * wn + l->o;
    st->w.requires_grad = st->b.requires_grad = 1;
}

int main(int argc, char **argv)
{
    (void)argc;
    blas_env_apply(argv); /* the OpenBLAS settings invar runs with, as `invar run` has them */
    openblas_set_num_threads(2);
    struct layer_state st[N_LAYERS];
    for (size_t i = 0; i < N_LAYERS; i++)
        layer_state_init(&st[i], &layers[i], 1u + (unsigned)i);
    const int n = 2048;
    float *a = malloc((size_t)n * n * sizeof(float)), *bm = malloc((size_t)n * n * sizeof(float));
    float *c = malloc((size_t)n * n * sizeof(float));
    fill(a, (int64_t)n * n, 7), fill(bm, (int64_t)n * n, 8);

    /* Repeats run every layer and then the sgemm, so that load from elsewhere on the machine
     * hits both sides of the ratio alike. Repeat -1 is the warm-up (it also settles the arena). */
    struct invar_graph *g = invar_graph_create(64 << 20);
    double ts[REPEATS];
    for (int r = -1; r < REPEATS; r++) {
        for (size_t i = 0; i < N_LAYERS; i++) {
            double f, t = conv_step(g, &layers[i], st[i].x, &st[i].w, &st[i].b, &f);
            if (r >= 0)
                st[i].t[r] = t, st[i].f[r] = f;
        }
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, bm, n, 0.0f, c,
                    n);
        if (r >= 0)
            ts[r] = now() - t0;
    }
    invar_graph_destroy(g);

    printf("conv2d 3x3 pad 1, batch %d, forward+backward, 2 threads, median of %d\n", BATCH,
           REPEATS);
    printf("%-16s %8s %9s %9s %9s %9s\n", "layer", "GFLOP", "fwd ms", "bwd ms", "ms", "GFLOP/s");
    double conv_flops[2] = {0, 0}, conv_time[2] = {0, 0};
    for (size_t i = 0; i < N_LAYERS; i++) {
        const struct layer *l = &layers[i];
        const double gemm =
            2.0 * (double)l->o * (double)(BATCH * l->hw * l->hw) * (double)(l->c * 9);
        const double flops = gemm * (l->input_grad ? 3 : 2);
        const double sec = median(st[i].t, REPEATS), fwd = median(st[i].f, REPEATS);
        char name[32];
        snprintf(name, sizeof name, "%lld->%lld @%lld", (long long)l->c, (long long)l->o,
                 (long long)l->hw);
        printf("%-16s %8.3f %9.2f %9.2f %9.2f %9.1f\n", name, flops * 1e-9, fwd * 1e3,
               (sec - fwd) * 1e3, sec * 1e3, flops / sec * 1e-9);
        conv_flops[i / SET_LAYERS] += flops, conv_time[i / SET_LAYERS] += sec;
        free(st[i].x), free(st[i].buf);
        if ((i + 1) % SET_LAYERS == 0) {
            const size_t k = i / SET_LAYERS;
            printf("%-16s %8.3f %9s %9s %9.2f %9.1f\n", k ? "conv total @18" : "conv total @28",
                   conv_flops[k] * 1e-9, "", "", conv_time[k] * 1e3,
                   conv_flops[k] / conv_time[k] * 1e-9);
        }
    }
    const double conv_gflops = conv_flops[0] / conv_time[0] * 1e-9;
    const double conv18_gflops = conv_flops[1] / conv_time[1] * 1e-9;
    const double sgemm_sec = median(ts, REPEATS);
    const double sgemm_gflops = 2.0 * n * n * (double)n / sgemm_sec * 1e-9;
    printf("%-16s %8.3f %9s %9s %9.2f %9.1f\n", "sgemm 2048^2", 2.0 * n * n * (double)n * 1e-9, "",
           "", sgemm_sec * 1e3, sgemm_gflops);
    free(a), free(bm), free(c);
    printf("RESULT conv_gflops=%.1f conv18_gflops=%.1f sgemm_gflops=%.1f ratio=%.3f ratio18=%.3f\n",
           conv_gflops, conv18_gflops, sgemm_gflops, conv_gflops / sgemm_gflops,
           conv18_gflops / sgemm_gflops);
    return 0;
}
