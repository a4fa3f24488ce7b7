/* The consistency objectives (BYOL, SimSiam) and SimCLR, driven by hand: an objective context
 * around a one-layer `mlp` encoder (depth 0: y = W x + b), weights set to known values after
 * finalize, and every loss recomputed here in double from those weights. Gradients w.r.t. the
 * input views are checked by finite differences: through gradcheck.h where the loss is an
 * ordinary function of the views (SimCLR; BYOL with a target that ignores its input), and
 * against double central differences with the targets held fixed where a stop-gradient makes
 * the framework's gradient differ from the derivative of the loss value (SimSiam, BYOL). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invar/graph.h"
#include "invar/params.h"
#include "invar/plugin.h"
#include "invar/train.h"

#include "gradcheck.h"
#include "plugin_harness.h"

enum { B = 3, IN = 4, D = 3, HID = 4, P = 3 }; /* batch, input, feature, hidden, projection */
#define BN_EPS 1e-5

/* ---- the hand-built objective context --------------------------------------------------- */

struct fixture {
    struct ph_plugin enc, obj;
    struct invar_plugin_use enc_use;
    struct invar_encoder *online;
    struct invar_encoder *clones[4];
    int n_clones;
    struct invar_objective_ctx ctx;
    const struct invar_objective_ops *ops;
    void *self;
};

static struct fixture fx;
static const int64_t in_shape[3] = {1, 1, IN};

static enum invar_status fx_clone(struct invar_objective_ctx *ctx, struct invar_encoder **out,
                                  struct invar_error *err)
{
    struct fixture *f = ctx->framework;
    cr_assert_lt(f->n_clones, 4);
    enum invar_status st = invar_encoder_create(out, &f->enc_use, in_shape, 99, err);
    if (st != INVAR_OK)
        return st;
    invar_params_copy(invar_encoder_params(*out), invar_encoder_params(f->online));
    f->clones[f->n_clones++] = *out;
    return INVAR_OK;
}

/* Known, distinct values: gammas near 1, everything else in [-0.9, 0.9]. Running statistics
 * are left alone (training-mode BN never reads them). */
static void fill_params(struct invar_params *p, double phase, int buffers_too)
{
    for (size_t i = 0; i < invar_params_count(p); i++) {
        const char *name;
        unsigned flags;
        struct invar_tensor *t = invar_params_at(p, i, &name, &flags);
        if (strstr(name, "running_") || ((flags & INVAR_P_BUFFER) && !buffers_too))
            continue;
        int gamma = strstr(name, "gamma") != NULL;
        for (int64_t j = 0; j < t->numel; j++) {
            double v = sin(0.77 * (double)j + 1.3 * (double)i + phase);
            t->data[j] = (float)(gamma ? 1.0 + 0.3 * v : 0.9 * v);
        }
    }
}

/* Opens objective `name` with its parameters (key, value pairs, NULL-terminated), creates it
 * on a fresh context, finalizes and fills its weights, then runs init_state. */
static void fx_setup(const char *name, const char *const *kv)
{
    memset(&fx, 0, sizeof fx);
    ph_open(&fx.enc, "encoders", "mlp");
    ph_set(&fx.enc, "depth", "0");
    ph_set(&fx.enc, "dim", "3");
    fx.enc_use = (struct invar_plugin_use){fx.enc.desc, fx.enc.config, 1};
    struct invar_error err = {0};
    cr_assert_eq(invar_encoder_create(&fx.online, &fx.enc_use, in_shape, 5, &err), INVAR_OK, "%s",
                 err.msg);
    cr_assert_eq(invar_encoder_dim(fx.online), D);
    fill_params(invar_encoder_params(fx.online), 0.1, 0);

    ph_open(&fx.obj, "objectives", name);
    for (; kv && kv[0]; kv += 2)
        ph_set(&fx.obj, kv[0], kv[1]);
    fx.ops = fx.obj.desc->ops.objective;
    fx.ctx = (struct invar_objective_ctx){.dataset_size = 64,
                                          .batch_size = B,
                                          .n_views = 2,
                                          .feature_dim = D,
                                          .steps_per_epoch = 5,
                                          .epochs = 2,
                                          .seed = 3,
                                          .online = fx.online,
                                          .params = invar_params_create(),
                                          .encoder_clone = fx_clone,
                                          .framework = &fx};
    cr_assert_eq(fx.ops->create(fx.obj.config, &fx.ctx, &fx.self, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_params_finalize(fx.ctx.params, 11, &err), INVAR_OK, "%s", err.msg);
    fill_params(fx.ctx.params, 2.0, 0);
    if (fx.ops->init_state)
        cr_assert_eq(fx.ops->init_state(fx.self, &err), INVAR_OK, "%s", err.msg);
}

static void fx_teardown(void)
{
    if (fx.self)
        fx.ops->destroy(fx.self);
    invar_params_destroy(fx.ctx.params);
    for (int i = 0; i < fx.n_clones; i++)
        invar_encoder_destroy(fx.clones[i]);
    invar_encoder_destroy(fx.online);
    ph_close(&fx.obj);
    ph_close(&fx.enc);
    memset(&fx, 0, sizeof fx);
}

static const char *const simclr_kv[] = {"hidden", "4", "dim", "3", NULL};
static const char *const byol_kv[] = {"proj_hidden", "4", "proj_dim", "3",
                                      "pred_hidden", "4", NULL};
static const char *const simsiam_kv[] = {"proj_hidden", "4", "proj_dim", "3",
                                         "pred_hidden", "4", NULL};

/* Two (B, 1, 1, IN) views with values in [-1, 1). */
static void make_views(struct invar_tensor *v[2], int requires_grad)
{
    for (int i = 0; i < 2; i++)
        v[i] = gc_tensor(4, (int64_t[]){B, 1, 1, IN}, requires_grad);
}

static struct invar_step_info step_info(int64_t k, int64_t total)
{
    return (struct invar_step_info){
        .epoch = 0, .step = k, .global_step = k, .total_steps = total, .lr = 0.1};
}

/* The objective's loss as a gradcheck function of the views: two, or *(int *)ctx (multi-crop). */
static struct invar_tensor *loss_fn(struct invar_graph *g, struct invar_tensor **in, void *ctx)
{
    int64_t idx[B] = {0, 1, 2};
    struct invar_step_info info = step_info(0, 10);
    return fx.ops->loss(fx.self, g, in, ctx ? *(const int *)ctx : 2, idx, &info);
}

static double framework_loss_views(struct invar_tensor **v, int n_views)
{
    struct invar_graph *g = invar_graph_create(1 << 20);
    double l = loss_fn(g, v, &n_views)->data[0];
    invar_graph_destroy(g);
    return l;
}

static double framework_loss(struct invar_tensor *v[2])
{
    return framework_loss_views(v, 2);
}

/* d loss / d views from one backward pass, into grad[2][B * IN]. */
static void framework_grad(struct invar_tensor *v[2], double grad[2][B * IN])
{
    struct invar_graph *g = invar_graph_create(1 << 20);
    v[0]->grad = v[1]->grad = NULL;
    struct invar_tensor *loss = loss_fn(g, v, NULL);
    invar_params_zero_grad(invar_encoder_params(fx.online));
    invar_params_zero_grad(fx.ctx.params);
    invar_graph_backward(g, loss);
    for (int k = 0; k < 2; k++) {
        cr_assert_not_null(v[k]->grad, "view %d received no gradient", k);
        for (int i = 0; i < B * IN; i++)
            grad[k][i] = v[k]->grad[i];
        v[k]->grad = NULL;
    }
    invar_graph_destroy(g);
}

struct metric_capture {
    const char *key;
    double value;
    int seen;
};

static void capture_metric(void *user, const char *key, double value)
{
    struct metric_capture *c = user;
    if (strcmp(key, c->key) == 0) {
        c->value = value;
        c->seen = 1;
    }
}

static double metric(const char *key)
{
    struct metric_capture c = {key, 0, 0};
    fx.ops->metrics(fx.self, capture_metric, &c);
    cr_assert(c.seen, "metric %s was not emitted", key);
    return c.value;
}

/* ---- the reference, in double ------------------------------------------------------------ */

static const float *param(struct invar_params *p, const char *prefix, const char *suffix)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    struct invar_tensor *t = invar_params_find(p, name);
    return t ? t->data : NULL;
}

/* y (n, out) = x (n, in) W^T + b */
static void ref_linear(double *y, const double *x, const float *w, const float *b, int n, int in,
                       int out)
{
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int k = 0; k < in; k++)
                s += (double)w[o * in + k] * x[r * in + k];
            y[r * out + o] = s;
        }
}

/* Training-mode batch-norm of x (n, c) in place: batch mean, biased variance. */
static void ref_bn(double *x, int n, int c, const float *gamma, const float *beta)
{
    for (int j = 0; j < c; j++) {
        double m = 0, v = 0;
        for (int r = 0; r < n; r++)
            m += x[r * c + j];
        m /= n;
        for (int r = 0; r < n; r++)
            v += (x[r * c + j] - m) * (x[r * c + j] - m);
        v /= n;
        for (int r = 0; r < n; r++)
            x[r * c + j] = (x[r * c + j] - m) / sqrt(v + BN_EPS) * gamma[j] + beta[j];
    }
}

/* z (B, out) = linear -> BN -> ReLU [-> linear -> BN -> ReLU] -> linear [-> BN] of x (B, in);
 * the head is read from p by its tensor names (a third linear, fc3, makes it three layers). */
static void ref_head(double *z, struct invar_params *p, const char *prefix, const double *x, int in,
                     int out)
{
    double h[B * HID], h2[B * HID];
    ref_linear(h, x, param(p, prefix, "fc1.w"), NULL, B, in, HID);
    ref_bn(h, B, HID, param(p, prefix, "bn1.gamma"), param(p, prefix, "bn1.beta"));
    for (int i = 0; i < B * HID; i++)
        h[i] = h[i] > 0 ? h[i] : 0;
    int last = 2;
    if (param(p, prefix, "fc3.w")) {
        ref_linear(h2, h, param(p, prefix, "fc2.w"), NULL, B, HID, HID);
        ref_bn(h2, B, HID, param(p, prefix, "bn2.gamma"), param(p, prefix, "bn2.beta"));
        for (int i = 0; i < B * HID; i++)
            h[i] = h2[i] > 0 ? h2[i] : 0;
        last = 3;
    }
    char w[16], b[16], g[16], beta[16];
    snprintf(w, sizeof w, "fc%d.w", last);
    snprintf(b, sizeof b, "fc%d.b", last);
    snprintf(g, sizeof g, "bn%d.gamma", last);
    snprintf(beta, sizeof beta, "bn%d.beta", last);
    ref_linear(z, h, param(p, prefix, w), param(p, prefix, b), B, HID, out);
    const float *gamma = param(p, prefix, g);
    if (gamma)
        ref_bn(z, B, out, gamma, param(p, prefix, beta));
}

/* y (B, D) = W x + b for the depth-0 mlp encoder */
static void ref_encoder(double *y, struct invar_encoder *e, const double *x)
{
    struct invar_params *p = invar_encoder_params(e);
    ref_linear(y, x, invar_params_find(p, "out.w")->data, invar_params_find(p, "out.b")->data, B,
               IN, D);
}

static double ref_cos(const double *a, const double *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    return ab / (sqrt(aa) * sqrt(bb));
}

static void to_double(double *out, const struct invar_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++)
        out[i] = t->data[i];
}

/* mean over dims of the sample std across rows of the L2-normalised rows of z (n, d) */
static double ref_collapse_std(const double *z, int n, int d)
{
    double total = 0;
    for (int j = 0; j < d; j++) {
        double v[2 * B], m = 0, s = 0;
        for (int r = 0; r < n; r++) {
            double q = 0;
            for (int k = 0; k < d; k++)
                q += z[r * d + k] * z[r * d + k];
            v[r] = z[r * d + j] / sqrt(q);
            m += v[r];
        }
        m /= n;
        for (int r = 0; r < n; r++)
            s += (v[r] - m) * (v[r] - m);
        total += sqrt(s / (n - 1));
    }
    return total / d;
}

/* Central differences in double of f over every element of both views. */
typedef double (*ref_fn)(double x[2][B * IN], void *ctx);

static void ref_grad(ref_fn f, void *ctx, double x[2][B * IN], double grad[2][B * IN])
{
    const double eps = 1e-6;
    double xp[2][B * IN];
    memcpy(xp, x, sizeof xp);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < B * IN; i++) {
            double saved = xp[k][i];
            xp[k][i] = saved + eps;
            double lp = f(xp, ctx);
            xp[k][i] = saved - eps;
            double lm = f(xp, ctx);
            xp[k][i] = saved;
            grad[k][i] = (lp - lm) / (2 * eps);
        }
}

static double max_scaled_diff(double a[2][B * IN], double b[2][B * IN])
{
    double worst = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < B * IN; i++) {
            double e = fabs(a[k][i] - b[k][i]) / fmax(1.0, fmax(fabs(a[k][i]), fabs(b[k][i])));
            worst = fmax(worst, e);
        }
    return worst;
}

static void views_to_double(double x[2][B * IN], struct invar_tensor *v[2])
{
    to_double(x[0], v[0]);
    to_double(x[1], v[1]);
}

/* Three views that require grad (multi-crop); x gets the first two in double, both rows of x2
 * the third (so that the two-view references compute its branch). */
static void make_three_views(struct invar_tensor *v[3], double x[2][B * IN], double x2[2][B * IN])
{
    make_views(v, 1);
    v[2] = gc_tensor(4, (int64_t[]){B, 1, 1, IN}, 1);
    views_to_double(x, v);
    to_double(x2[0], v[2]);
    to_double(x2[1], v[2]);
}

/* ---- SimCLR ------------------------------------------------------------------------------ */

/* NT-Xent written out: loss_i = -s_i,pos + log sum_{j != i} exp(s_ij), s = cos / t, averaged
 * over the 2B rows. With mask = 0 the j = i term stays in the sum (what the mask removes).
 * z is the projection head's output, or the encoder's (D = P) when the objective has no head
 * (hidden: 0). */
static double ref_simclr_z(double x[2][B * IN], double t, int mask, int head, double *z_out)
{
    double z[2 * B * P];
    for (int v = 0; v < 2; v++) {
        double y[B * D];
        ref_encoder(y, fx.online, x[v]);
        if (head)
            ref_head(z + v * B * P, fx.ctx.params, "simclr.proj", y, D, P);
        else
            memcpy(z + v * B * P, y, sizeof y);
    }
    if (z_out)
        memcpy(z_out, z, sizeof z);
    int n = 2 * B;
    double loss = 0;
    for (int i = 0; i < n; i++) {
        double denom = 0;
        for (int j = 0; j < n; j++)
            if (j != i || !mask)
                denom += exp(ref_cos(z + i * P, z + j * P, P) / t);
        loss += -ref_cos(z + i * P, z + ((i + B) % n) * P, P) / t + log(denom);
    }
    return loss / n;
}

static double ref_simclr(double x[2][B * IN], double t, int mask, double *z_out)
{
    return ref_simclr_z(x, t, mask, 1, z_out);
}

Test(simclr, loss_is_masked_nt_xent_at_default_temperature, .fini = fx_teardown)
{
    fx_setup("simclr", simclr_kv); /* temperature left at its default, 0.5 */
    struct invar_tensor *v[2];
    make_views(v, 0);
    double x[2][B * IN], z[2 * B * P];
    views_to_double(x, v);
    double want = ref_simclr(x, 0.5, 1, z);
    double got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5 * fmax(1, fabs(want)), "loss %.8f, formula %.8f", got, want);
    /* at these values the self-similarity term would change the loss visibly */
    double unmasked = ref_simclr(x, 0.5, 0, NULL);
    cr_assert(fabs(unmasked - want) > 1e-2, "masked %.6f vs unmasked %.6f", want, unmasked);
    double std = metric("simclr/proj_std");
    cr_assert(fabs(std - ref_collapse_std(z, 2 * B, P)) < 1e-5, "proj_std %.6f, want %.6f", std,
              ref_collapse_std(z, 2 * B, P));
    gc_free(v[0]);
    gc_free(v[1]);
}

Test(simclr, loss_follows_the_temperature, .fini = fx_teardown)
{
    const char *const kv[] = {"hidden", "4", "dim", "3", "temperature", "0.2", NULL};
    fx_setup("simclr", kv);
    struct invar_tensor *v[2];
    make_views(v, 0);
    double x[2][B * IN];
    views_to_double(x, v);
    double want = ref_simclr(x, 0.2, 1, NULL), got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5 * fmax(1, fabs(want)), "loss %.8f, formula %.8f", got, want);
    gc_free(v[0]);
    gc_free(v[1]);
}

Test(simclr, gradient_wrt_views, .fini = fx_teardown)
{
    const char *const kv[] = {"hidden", "4", "dim", "3", "temperature", "0.2", NULL};
    fx_setup("simclr", kv);
    struct invar_tensor *v[2];
    make_views(v, 1);
    gc_check(loss_fn, v, 2, NULL, 1e-3, 2e-2);
    /* and against the double formula's central differences, more tightly */
    double x[2][B * IN], fw[2][B * IN], ref[2][B * IN];
    views_to_double(x, v);
    framework_grad(v, fw);
    double xp[2][B * IN];
    memcpy(xp, x, sizeof xp);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < B * IN; i++) {
            double saved = xp[k][i];
            xp[k][i] = saved + 1e-6;
            double lp = ref_simclr(xp, 0.2, 1, NULL);
            xp[k][i] = saved - 1e-6;
            double lm = ref_simclr(xp, 0.2, 1, NULL);
            xp[k][i] = saved;
            ref[k][i] = (lp - lm) / 2e-6;
        }
    double e = max_scaled_diff(fw, ref);
    cr_assert(e < 1e-3, "gradient differs from the formula's by %.3g", e);
    gc_free(v[0]);
    gc_free(v[1]);
}

/* hidden: 0 leaves the projection to the encoder: the objective declares no weights and the
 * loss is NT-Xent on the encoder's outputs themselves. */
Test(simclr, without_a_head_the_loss_is_on_the_encoder_output, .fini = fx_teardown)
{
    const char *const kv[] = {"hidden", "0", "temperature", "0.2", NULL};
    fx_setup("simclr", kv);
    cr_assert_eq(invar_params_count(fx.ctx.params), 0);
    struct invar_tensor *v[2];
    make_views(v, 1);
    double x[2][B * IN];
    views_to_double(x, v);
    double want = ref_simclr_z(x, 0.2, 1, 0, NULL), got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5 * fmax(1, fabs(want)), "loss %.8f, formula %.8f", got, want);
    gc_check(loss_fn, v, 2, NULL, 1e-3, 2e-2);
    gc_free(v[0]);
    gc_free(v[1]);
}

/* Every tensor of the objective's own is its predictor's (no projector with proj_hidden 0). */
static void assert_only_predictor(struct invar_params *p, const char *prefix)
{
    for (size_t i = 0; i < invar_params_count(p); i++) {
        const char *name;
        invar_params_at(p, i, &name, NULL);
        cr_assert(strncmp(name, prefix, strlen(prefix)) == 0, "unexpected tensor %s", name);
    }
}

/* ---- BYOL -------------------------------------------------------------------------------- */

/* 0 when the objective runs with proj_hidden 0: the encoder's outputs (D = P) are projected */
static int byol_proj = 1;

/* p: online predictions, zt: target projections, each (2, B * P) */
static void ref_byol_branches(double x[2][B * IN], double p[2][B * P], double zt[2][B * P])
{
    for (int v = 0; v < 2; v++) {
        double y[B * D], z[B * P], yt[B * D];
        ref_encoder(y, fx.online, x[v]);
        ref_encoder(yt, fx.clones[0], x[v]);
        if (byol_proj) {
            ref_head(z, fx.ctx.params, "byol.proj", y, D, P);
            ref_head(zt[v], fx.ctx.params, "byol.target_proj", yt, D, P);
        } else {
            memcpy(z, y, sizeof z);
            memcpy(zt[v], yt, sizeof yt);
        }
        ref_head(p[v], fx.ctx.params, "byol.pred", z, P, P);
    }
}

/* sum over both directions of mean_i [2 - 2 cos(p_v,i, zt_(1-v),i)] */
static double ref_byol_value(double p[2][B * P], double zt[2][B * P])
{
    double loss = 0;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < B; i++)
            loss += (2 - 2 * ref_cos(p[v] + i * P, zt[1 - v] + i * P, P)) / B;
    return loss;
}

/* the loss with the target projections fixed at ctx (a stop-gradient, written out) */
static double ref_byol_fixed_target(double x[2][B * IN], void *ctx)
{
    double p[2][B * P], zt[2][B * P];
    ref_byol_branches(x, p, zt);
    return ref_byol_value(p, ctx);
}

/* Gives the target network values of its own, so that a loss built on the online network in
 * its place would not match. */
static void byol_detach_target(void)
{
    fill_params(invar_encoder_params(fx.clones[0]), 0.7, 0);
    struct invar_params *p = fx.ctx.params;
    for (size_t i = 0; i < invar_params_count(p); i++) {
        const char *name;
        unsigned flags;
        struct invar_tensor *t = invar_params_at(p, i, &name, &flags);
        if (strncmp(name, "byol.target_proj.", 17) != 0 || strstr(name, "running_"))
            continue;
        for (int64_t j = 0; j < t->numel; j++)
            t->data[j] =
                (float)(strstr(name, "gamma") ? 1.0 - 0.2 * cos(0.5 * (double)j + 0.1 * (double)i)
                                              : 0.8 * cos(0.9 * (double)j + (double)i));
    }
}

Test(byol, loss_is_symmetric_two_minus_two_cos_against_the_target, .fini = fx_teardown)
{
    fx_setup("byol", byol_kv);
    cr_assert_eq(fx.n_clones, 1, "byol clones one target encoder");
    byol_detach_target();
    struct invar_tensor *v[2];
    make_views(v, 0);
    double x[2][B * IN], p[2][B * P], zt[2][B * P];
    views_to_double(x, v);
    ref_byol_branches(x, p, zt);
    double want = ref_byol_value(p, zt);
    double got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5 * fmax(1, fabs(want)), "loss %.8f, want %.8f", got, want);
    gc_free(v[0]);
    gc_free(v[1]);
}

/* The loss against the formula, and the framework's gradient w.r.t. the views against the
 * derivative with the target projections held fixed (the stop-gradient). */
static void byol_check_formula(struct invar_tensor *v[2])
{
    double x[2][B * IN], p[2][B * P], zt[2][B * P], fw[2][B * IN], ref[2][B * IN];
    views_to_double(x, v);
    ref_byol_branches(x, p, zt);
    double want = ref_byol_value(p, zt), got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5 * fmax(1, fabs(want)), "loss %.8f, want %.8f", got, want);
    framework_grad(v, fw);
    ref_grad(ref_byol_fixed_target, zt, x, ref);
    double e = max_scaled_diff(fw, ref);
    cr_assert(e < 1e-3, "gradient differs from the fixed-target derivative by %.3g", e);
}

Test(byol, gradient_flows_through_the_online_branch_only, .fini = fx_teardown)
{
    fx_setup("byol", byol_kv);
    byol_detach_target();
    struct invar_tensor *v[2];
    make_views(v, 1);
    byol_check_formula(v);
    /* A target that ignores its input (zero weights: every row is the bias) leaves the loss an
     * ordinary function of the views, so the generic finite-difference check applies too. */
    struct invar_tensor *wt = invar_params_find(invar_encoder_params(fx.clones[0]), "out.w");
    memset(wt->data, 0, (size_t)wt->numel * sizeof(float));
    gc_check(loss_fn, v, 2, NULL, 1e-3, 2e-2);
    gc_free(v[0]);
    gc_free(v[1]);
}

/* Multi-crop: a third view goes through the online network only and predicts both targets;
 * the loss is the mean of 2 - 2 cos over the four (view, target) pairs, times 2, and byol/cos
 * their mean cosine. With a target that ignores its input the loss is an ordinary function of
 * the three views, so the finite-difference check covers the third view's gradient. */
Test(byol, a_third_view_predicts_both_targets, .fini = fx_teardown)
{
    fx_setup("byol", byol_kv);
    byol_detach_target();
    struct invar_tensor *v[3];
    double x[2][B * IN], x2[2][B * IN], p[2][B * P], zt[2][B * P], p2[2][B * P], zt2[2][B * P];
    make_three_views(v, x, x2);
    ref_byol_branches(x, p, zt);
    ref_byol_branches(x2, p2, zt2); /* p2[0]: the third view's prediction */
    double sum_cos = 0;
    for (int i = 0; i < B; i++)
        sum_cos += ref_cos(p[0] + i * P, zt[1] + i * P, P) +
                   ref_cos(p[1] + i * P, zt[0] + i * P, P) +
                   ref_cos(p2[0] + i * P, zt[0] + i * P, P) +
                   ref_cos(p2[0] + i * P, zt[1] + i * P, P);
    double mean_cos = sum_cos / (4 * B), want = 2 * (2 - 2 * mean_cos);
    double got = framework_loss_views(v, 3);
    cr_assert(fabs(got - want) <= 1e-5 * fmax(1, fabs(want)), "loss %.8f, want %.8f", got, want);
    double cos = metric("byol/cos");
    cr_assert(fabs(cos - mean_cos) < 1e-5, "byol/cos %.8f, want %.8f", cos, mean_cos);
    struct invar_tensor *wt = invar_params_find(invar_encoder_params(fx.clones[0]), "out.w");
    memset(wt->data, 0, (size_t)wt->numel * sizeof(float));
    gc_check(loss_fn, v, 3, &(int){3}, 1e-3, 2e-2);
    for (int k = 0; k < 3; k++)
        gc_free(v[k]);
}

/* Every (target, online) pair of trainable tensors: encoder weights, then the projector's. */
struct ema_pair {
    struct invar_tensor *target, *online;
};

static int byol_pairs(struct ema_pair *out, int max)
{
    int n = 0;
    struct invar_params *te = invar_encoder_params(fx.clones[0]);
    struct invar_params *oe = invar_encoder_params(fx.online);
    for (size_t i = 0; i < invar_params_count(te); i++) {
        const char *name;
        unsigned flags;
        struct invar_tensor *t = invar_params_at(te, i, &name, &flags);
        if (!(flags & INVAR_P_BUFFER) && n < max)
            out[n++] = (struct ema_pair){t, invar_params_find(oe, name)};
    }
    struct invar_params *p = fx.ctx.params;
    for (size_t i = 0; i < invar_params_count(p); i++) {
        const char *name;
        unsigned flags;
        struct invar_tensor *t = invar_params_at(p, i, &name, &flags);
        if (strncmp(name, "byol.target_proj.", 17) != 0 || strstr(name, "running_"))
            continue;
        char online[128];
        snprintf(online, sizeof online, "byol.proj.%s", name + 17);
        cr_assert_not_null(invar_params_find(p, online), "no online tensor for %s", name);
        cr_assert(flags & INVAR_P_BUFFER, "%s is optimized", name);
        if (n < max)
            out[n++] = (struct ema_pair){t, invar_params_find(p, online)};
    }
    return n;
}

static void byol_check_schedule(double tau_base, const double want[3])
{
    const int64_t K = 10, ks[3] = {0, K / 2, K};
    struct ema_pair pairs[16];
    int n = byol_pairs(pairs, 16);
    if (byol_proj)
        cr_assert_eq(n, 2 + 5, "encoder w, b and the projector's fc1.w, gamma, beta, fc2.w, fc2.b");
    else
        cr_assert_eq(n, 2, "encoder w, b only: there is no projector of the objective's own");
    for (int c = 0; c < 3; c++) {
        /* move the online weights so that the average has something to do */
        fill_params(invar_encoder_params(fx.online), 0.3 + c, 0);
        fill_params(fx.ctx.params, 4.0 + c, 0);
        float *before[16];
        for (int i = 0; i < n; i++) {
            before[i] = malloc((size_t)pairs[i].target->numel * sizeof(float));
            memcpy(before[i], pairs[i].target->data,
                   (size_t)pairs[i].target->numel * sizeof(float));
        }
        struct invar_step_info info = step_info(ks[c], K);
        fx.ops->after_step(fx.self, NULL, &info);
        double tau = metric("byol/tau");
        cr_assert(fabs(tau - want[c]) < 1e-12, "tau_base %g, k = %lld: tau %.15f, want %.15f",
                  tau_base, (long long)ks[c], tau, want[c]);
        double moved = 0;
        for (int i = 0; i < n; i++) {
            for (int64_t j = 0; j < pairs[i].target->numel; j++) {
                double e = tau * before[i][j] + (1 - tau) * pairs[i].online->data[j];
                cr_assert(fabs(pairs[i].target->data[j] - e) < 2e-7,
                          "k = %lld, pair %d element %lld: %.9g, EMA %.9g", (long long)ks[c], i,
                          (long long)j, pairs[i].target->data[j], e);
                moved = fmax(moved, fabs(pairs[i].target->data[j] - before[i][j]));
            }
            free(before[i]);
        }
        if (c < 2)
            cr_assert(moved > 1e-4, "the target did not move at k = %lld", (long long)ks[c]);
    }
}

Test(byol, tau_follows_the_cosine_schedule_and_the_target_is_its_ema, .fini = fx_teardown)
{
    fx_setup("byol", byol_kv); /* tau_base left at its default, 0.99 */
    byol_check_schedule(0.99, (const double[3]){0.99, 0.995, 1.0});
}

Test(byol, tau_base_is_configurable, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden", "4",        "proj_dim", "3", "pred_hidden",
                              "4",           "tau_base", "0.9",      NULL};
    fx_setup("byol", kv);
    byol_check_schedule(0.9, (const double[3]){0.9, 0.95, 1.0});
}

Test(byol, init_state_copies_the_projector_into_the_target, .fini = fx_teardown)
{
    fx_setup("byol", byol_kv);
    struct ema_pair pairs[16];
    int n = byol_pairs(pairs, 16);
    for (int i = 0; i < n; i++)
        cr_assert_eq(memcmp(pairs[i].target->data, pairs[i].online->data,
                            (size_t)pairs[i].target->numel * sizeof(float)),
                     0, "pair %d differs after init_state", i);
}

/* ---- SimSiam ----------------------------------------------------------------------------- */

static void ref_simsiam_branches(double x[2][B * IN], double z[2][B * P], double p[2][B * P])
{
    for (int v = 0; v < 2; v++) {
        double y[B * D];
        ref_encoder(y, fx.online, x[v]);
        if (invar_params_find(fx.ctx.params, "simsiam.proj.fc1.w"))
            ref_head(z[v], fx.ctx.params, "simsiam.proj", y, D, P);
        else /* proj_hidden 0: the encoder's output (D = P) is the projection */
            memcpy(z[v], y, sizeof y);
        if (invar_params_find(fx.ctx.params, "simsiam.pred.fc1.w"))
            ref_head(p[v], fx.ctx.params, "simsiam.pred", z[v], P, P);
        else /* no predictor: p = z */
            memcpy(p[v], z[v], sizeof p[v]);
    }
}

/* -1/2 mean cos(p1, z2) - 1/2 mean cos(p2, z1) */
static double ref_simsiam_value(double p[2][B * P], double z[2][B * P])
{
    double loss = 0;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < B; i++)
            loss -= 0.5 * ref_cos(p[v] + i * P, z[1 - v] + i * P, P) / B;
    return loss;
}

/* ctx: the targets z held fixed (a stop-gradient), or NULL for the plain function */
static double ref_simsiam(double x[2][B * IN], void *ctx)
{
    double z[2][B * P], p[2][B * P];
    ref_simsiam_branches(x, z, p);
    return ref_simsiam_value(p, ctx ? ctx : z);
}

/* The framework's loss and input gradient on two random views against the reference forward
 * and its derivative with the targets held fixed (the stop-gradient), for the simsiam set up. */
static void simsiam_check_against_reference(void)
{
    struct invar_tensor *v[2];
    make_views(v, 1);
    double x[2][B * IN], z[2][B * P], p[2][B * P], fw[2][B * IN], fixed[2][B * IN];
    views_to_double(x, v);
    ref_simsiam_branches(x, z, p);
    double want = ref_simsiam(x, NULL), got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5, "loss %.8f, want %.8f", got, want);
    framework_grad(v, fw);
    ref_grad(ref_simsiam, z, x, fixed);
    double e = max_scaled_diff(fw, fixed);
    cr_assert(e < 1e-3, "gradient differs from the fixed-target derivative by %.3g", e);
    gc_free(v[0]);
    gc_free(v[1]);
}

Test(simsiam, loss_is_symmetric_negative_cosine, .fini = fx_teardown)
{
    fx_setup("simsiam", simsiam_kv);
    cr_assert_not_null(invar_params_find(fx.ctx.params, "simsiam.proj.bn2.gamma"),
                       "the projector ends with batch-norm by default");
    struct invar_tensor *v[2];
    make_views(v, 0);
    double x[2][B * IN], z[2][B * P], p[2][B * P];
    views_to_double(x, v);
    ref_simsiam_branches(x, z, p);
    double want = ref_simsiam(x, NULL), got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5, "loss %.8f, want %.8f", got, want);
    double zz[2 * B * P];
    memcpy(zz, z, sizeof zz);
    /* the metric averages the two views' spreads */
    double std = metric("simsiam/proj_std");
    double want_std = 0.5 * (ref_collapse_std(zz, B, P) + ref_collapse_std(zz + B * P, B, P));
    cr_assert(fabs(std - want_std) < 1e-5, "proj_std %.6f, want %.6f", std, want_std);
    gc_free(v[0]);
    gc_free(v[1]);
}

Test(simsiam, stop_gradient_on_the_target_branch, .fini = fx_teardown)
{
    fx_setup("simsiam", simsiam_kv);
    struct invar_tensor *v[2];
    make_views(v, 1);
    double x[2][B * IN], z[2][B * P], p[2][B * P];
    double fw[2][B * IN], fixed[2][B * IN], full[2][B * IN];
    views_to_double(x, v);
    ref_simsiam_branches(x, z, p);
    framework_grad(v, fw);
    ref_grad(ref_simsiam, z, x, fixed);
    ref_grad(ref_simsiam, NULL, x, full);
    double e = max_scaled_diff(fw, fixed);
    cr_assert(e < 1e-3, "gradient differs from the fixed-target derivative by %.3g", e);
    /* the check can tell: letting gradient through the targets changes it clearly */
    double d = max_scaled_diff(full, fixed);
    cr_assert(d > 1e-2, "the stop-gradient makes no difference here (%.3g)", d);
    gc_free(v[0]);
    gc_free(v[1]);
}

Test(simsiam, projector_output_bn_can_be_left_out, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden", "4",           "proj_dim", "3", "pred_hidden",
                              "4",           "proj_out_bn", "false",    NULL};
    fx_setup("simsiam", kv);
    cr_assert_null(invar_params_find(fx.ctx.params, "simsiam.proj.bn2.gamma"));
    cr_assert_not_null(invar_params_find(fx.ctx.params, "simsiam.proj.fc2.b"));
    struct invar_tensor *v[2];
    make_views(v, 0);
    double x[2][B * IN];
    views_to_double(x, v);
    double want = ref_simsiam(x, NULL), got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5, "loss %.8f, want %.8f", got, want);
    gc_free(v[0]);
    gc_free(v[1]);
}

/* proj_out_affine false: the output batch-norm's gamma and beta are held at 1 and 0 (buffers:
 * no gradient, never stepped), so every output dimension keeps unit variance over the batch. */
Test(simsiam, projector_output_bn_without_affine_is_held_fixed, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden",     "4",     "proj_dim", "3", "pred_hidden", "4",
                              "proj_out_affine", "false", NULL};
    fx_setup("simsiam", kv);
    size_t n_fixed = 0;
    for (size_t i = 0; i < invar_params_count(fx.ctx.params); i++) {
        const char *name;
        unsigned flags;
        invar_params_at(fx.ctx.params, i, &name, &flags);
        int out_affine =
            !strcmp(name, "simsiam.proj.bn2.gamma") || !strcmp(name, "simsiam.proj.bn2.beta");
        if (out_affine) {
            cr_assert(flags & INVAR_P_BUFFER, "%s should be held fixed (flags %u)", name, flags);
            n_fixed++;
        } else if (!strstr(name, "running_")) {
            cr_assert(!(flags & INVAR_P_BUFFER), "%s should be trained (flags %u)", name, flags);
        }
    }
    cr_assert_eq(n_fixed, 2);
    simsiam_check_against_reference();
    struct invar_tensor *g = invar_params_find(fx.ctx.params, "simsiam.proj.bn2.gamma");
    cr_assert(!g->requires_grad && (!g->grad || g->grad[0] == 0), "gamma receives a gradient");
}

/* proj_layers 3: linear-BN-ReLU twice, then linear-BN (the reference ImageNet projector). */
Test(simsiam, three_layer_projector, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden", "4",           "proj_dim", "3", "pred_hidden",
                              "4",           "proj_layers", "3",        NULL};
    fx_setup("simsiam", kv);
    struct invar_params *pp = fx.ctx.params;
    cr_assert_eq(invar_params_find(pp, "simsiam.proj.fc2.w")->shape[0], HID);
    cr_assert_eq(invar_params_find(pp, "simsiam.proj.fc2.w")->shape[1], HID);
    cr_assert_null(invar_params_find(pp, "simsiam.proj.fc2.b"), "a hidden layer has no bias");
    cr_assert_eq(invar_params_find(pp, "simsiam.proj.fc3.w")->shape[0], P);
    cr_assert_not_null(invar_params_find(pp, "simsiam.proj.bn3.gamma"));
    cr_assert_null(invar_params_find(pp, "simsiam.pred.fc3.w"), "the predictor keeps two");
    simsiam_check_against_reference();
}

/* fix_pred_lr: every trainable predictor tensor, and nothing else, steps at optim.lr. */
Test(simsiam, fix_pred_lr_flags_exactly_the_predictor, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden", "4",           "proj_dim", "3", "pred_hidden",
                              "4",           "fix_pred_lr", "true",     NULL};
    fx_setup("simsiam", kv);
    size_t fixed = 0, pred = 0;
    for (size_t i = 0; i < invar_params_count(fx.ctx.params); i++) {
        const char *name;
        unsigned flags;
        invar_params_at(fx.ctx.params, i, &name, &flags);
        int in_pred = !strncmp(name, "simsiam.pred.", 13) && !(flags & INVAR_P_BUFFER);
        cr_assert_eq(!!(flags & INVAR_P_FIXED_LR), in_pred, "%s: flags %u", name, flags);
        fixed += !!(flags & INVAR_P_FIXED_LR), pred += in_pred;
    }
    cr_assert_eq(pred, 5, "fc1.w, bn1.gamma, bn1.beta, fc2.w, fc2.b: %zu", pred);
    cr_assert_eq(fixed, pred);
}

Test(simsiam, ablation_without_stop_gradient_is_the_plain_function, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden",   "4",     "proj_dim", "3", "pred_hidden", "4",
                              "stop_gradient", "false", NULL};
    fx_setup("simsiam", kv);
    struct invar_tensor *v[2];
    make_views(v, 1);
    double x[2][B * IN], fw[2][B * IN], full[2][B * IN];
    views_to_double(x, v);
    framework_grad(v, fw);
    ref_grad(ref_simsiam, NULL, x, full);
    double e = max_scaled_diff(fw, full);
    cr_assert(e < 1e-3, "gradient differs from the full derivative by %.3g", e);
    gc_check(loss_fn, v, 2, NULL, 1e-3, 2e-2);
    gc_free(v[0]);
    gc_free(v[1]);
}

Test(simsiam, ablation_without_predictor_compares_the_projections, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden", "4",         "proj_dim", "3", "pred_hidden",
                              "4",           "predictor", "false",    NULL};
    fx_setup("simsiam", kv);
    cr_assert_null(invar_params_find(fx.ctx.params, "simsiam.pred.fc1.w"));
    struct invar_tensor *v[2];
    make_views(v, 0);
    double x[2][B * IN], z[2][B * P], p[2][B * P];
    views_to_double(x, v);
    ref_simsiam_branches(x, z, p);
    double want = 0;
    for (int i = 0; i < B; i++)
        want -= ref_cos(z[0] + i * P, z[1] + i * P, P) / B;
    double got = framework_loss(v);
    cr_assert(fabs(got - want) <= 1e-5, "loss %.8f, -mean cos(z1, z2) %.8f", got, want);
    gc_free(v[0]);
    gc_free(v[1]);
}

/* proj_hidden 0: no projector of the objective's own; the predictor maps the encoder's output
 * (its dim, not proj_dim) to itself, and the stop-gradient still holds the targets. */
Test(simsiam, without_a_projector_the_encoder_output_is_predicted, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden", "0", "proj_dim", "7", "pred_hidden", "4", NULL};
    fx_setup("simsiam", kv);
    struct invar_params *p = fx.ctx.params;
    assert_only_predictor(p, "simsiam.pred.");
    cr_assert_eq(invar_params_find(p, "simsiam.pred.fc1.w")->shape[1], D);
    cr_assert_eq(invar_params_find(p, "simsiam.pred.fc2.w")->shape[0], D);
    simsiam_check_against_reference();
}

/* Multi-crop: a third view only predicts, against both (stopped) targets; the loss is the mean
 * of -cos over the four pairs, halved as the two-view loss is. Without the stop-gradient the
 * loss is an ordinary function of the three views: finite differences check every gradient. */
Test(simsiam, a_third_view_predicts_both_targets, .fini = fx_teardown)
{
    for (int sg = 1; sg >= 0; sg--) {
        const char *const kv[] = {"proj_hidden",   "4",   "proj_dim", "3", "pred_hidden", "4",
                                  "stop_gradient", sg ? "true" : "false", NULL};
        fx_setup("simsiam", kv);
        struct invar_tensor *v[3];
        double x[2][B * IN], x2[2][B * IN], z[2][B * P], p[2][B * P], z2[2][B * P], p2[2][B * P];
        make_three_views(v, x, x2);
        ref_simsiam_branches(x, z, p);
        ref_simsiam_branches(x2, z2, p2);
        double want = 0;
        for (int i = 0; i < B; i++)
            want -= (ref_cos(p[0] + i * P, z[1] + i * P, P) +
                     ref_cos(p[1] + i * P, z[0] + i * P, P) +
                     ref_cos(p2[0] + i * P, z[0] + i * P, P) +
                     ref_cos(p2[0] + i * P, z[1] + i * P, P)) /
                    (2.0 * 2 * B);
        double got = framework_loss_views(v, 3);
        cr_assert(fabs(got - want) <= 1e-5, "stop_gradient %d: loss %.8f, want %.8f", sg, got,
                  want);
        if (!sg)
            gc_check(loss_fn, v, 3, &(int){3}, 1e-3, 2e-2);
        for (int k = 0; k < 3; k++)
            gc_free(v[k]);
        fx_teardown();
    }
}

/* ---- configuration errors ---------------------------------------------------------------- */

Test(objectives_consist, each_refuses_a_single_view)
{
    const char *names[] = {"simclr", "byol", "simsiam"};
    for (int i = 0; i < 3; i++) {
        struct ph_plugin obj;
        ph_open(&obj, "objectives", names[i]);
        struct invar_objective_ctx ctx = {
            .batch_size = 8, .n_views = 1, .feature_dim = D, .params = invar_params_create()};
        void *self = NULL;
        struct invar_error err = {0};
        enum invar_status st = obj.desc->ops.objective->create(obj.config, &ctx, &self, &err);
        cr_assert_eq(st, INVAR_ERR_CONFIG, "%s accepted one view", names[i]);
        cr_assert(strstr(err.msg, "2 views") != NULL, "%s: %s", names[i], err.msg);
        invar_params_destroy(ctx.params);
        ph_close(&obj);
    }
}

/* SimCLR's NT-Xent pairs view 0 with view 1; a third view would be loaded and augmented but
 * never read, so the experiment is refused instead. */
Test(objectives_consist, simclr_refuses_views_it_would_ignore)
{
    struct ph_plugin obj;
    ph_open(&obj, "objectives", "simclr");
    struct invar_objective_ctx ctx = {
        .batch_size = 8, .n_views = 3, .feature_dim = D, .params = invar_params_create()};
    void *self = NULL;
    struct invar_error err = {0};
    cr_assert_eq(obj.desc->ops.objective->create(obj.config, &ctx, &self, &err),
                 INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "reads exactly 2 views, the experiment has 3"), "%s", err.msg);
    invar_params_destroy(ctx.params);
    ph_close(&obj);
}

/* proj_hidden 0: no projector of the objective's own. The online encoder's outputs go to the
 * predictor, the target encoder's are the regression targets, and the EMA averages the encoder
 * alone. */
Test(byol, without_a_projector_the_encoder_output_is_predicted, .fini = fx_teardown)
{
    const char *const kv[] = {"proj_hidden", "0", "pred_hidden", "4", NULL};
    byol_proj = 0;
    fx_setup("byol", kv);
    struct invar_params *p = fx.ctx.params;
    assert_only_predictor(p, "byol.pred.");
    cr_assert_eq(invar_params_find(p, "byol.pred.fc2.w")->shape[0], D);
    byol_detach_target();
    struct invar_tensor *v[2];
    make_views(v, 1);
    byol_check_formula(v);
    gc_free(v[0]);
    gc_free(v[1]);
    byol_check_schedule(0.99, (const double[3]){0.99, 0.995, 1.0});
    byol_proj = 1;
}
