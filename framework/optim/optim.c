/* SGD, LARS and AdamW over flat parameter blocks, and the learning-rate schedules.
 *
 * State is one float block: for each group in order, SGD/LARS keep a momentum buffer (numel)
 * when momentum > 0, AdamW keeps the first moments (numel) then the second (numel). A step
 * walks each group tensor by tensor (LARS and weight decay are per tensor) and allocates
 * nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/optim.h"

struct optim_group {
    struct invar_params *p;
    size_t state_offset; /* into o->state, in floats */
};

struct invar_optim {
    struct invar_optim_config cfg;
    struct optim_group *groups; /* (n_groups) */
    int n_groups;
    float *state; // (state_numel)
    size_t state_numel;
    int64_t steps; /* updates done: AdamW's bias correction uses steps + 1 */
};

/* Floats of state per trainable float. */
static size_t optim_state_per_weight(const struct invar_optim_config *c)
{
    switch (c->kind) {
    case INVAR_OPTIM_SGD:
    case INVAR_OPTIM_LARS:
        return c->momentum > 0 ? 1 : 0;
    case INVAR_OPTIM_ADAMW:
        return 2;
    }
    return 0;
}

static int in_unit(double x)
{
    return x >= 0 && x < 1;
}

static enum invar_status optim_check_config(const struct invar_optim_config *c,
                                            struct invar_error *err)
{
    if ((unsigned)c->kind > INVAR_OPTIM_ADAMW)
        return invar_error_set(err, INVAR_ERR_INVALID, "optimizer: unknown kind %d", (int)c->kind);
    if (!(isfinite(c->lr) && c->lr >= 0))
        return invar_error_set(err, INVAR_ERR_INVALID, "optimizer: lr must be >= 0 (got %g)",
                               c->lr);
    if (!(isfinite(c->weight_decay) && c->weight_decay >= 0))
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "optimizer: weight_decay must be >= 0 (got %g)", c->weight_decay);
    if (c->kind != INVAR_OPTIM_ADAMW && !in_unit(c->momentum))
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "optimizer: momentum must be in [0, 1) (got %g)", c->momentum);
    if (c->kind != INVAR_OPTIM_SGD && c->nesterov)
        return invar_error_set(err, INVAR_ERR_INVALID, "optimizer: nesterov is for sgd only");
    if (c->kind == INVAR_OPTIM_SGD && c->nesterov && !(c->momentum > 0))
        return invar_error_set(err, INVAR_ERR_INVALID, "optimizer: nesterov needs momentum > 0");
    if (c->kind == INVAR_OPTIM_LARS && !(isfinite(c->lars_eta) && c->lars_eta > 0))
        return invar_error_set(err, INVAR_ERR_INVALID, "optimizer: lars_eta must be > 0 (got %g)",
                               c->lars_eta);
    if (c->kind == INVAR_OPTIM_ADAMW &&
        !(in_unit(c->beta1) && in_unit(c->beta2) && isfinite(c->eps) && c->eps >= 0))
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "optimizer: adamw needs beta1, beta2 in [0, 1) and eps >= 0 "
                               "(got %g, %g, %g)",
                               c->beta1, c->beta2, c->eps);
    if (c->warmup_steps < 0)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "optimizer: warmup_steps must be >= 0 (got %lld)",
                               (long long)c->warmup_steps);
    switch (c->schedule) {
    case INVAR_SCHED_CONSTANT:
        break;
    case INVAR_SCHED_STEP:
        if (c->step_every <= 0 || !(isfinite(c->step_gamma) && c->step_gamma >= 0))
            return invar_error_set(err, INVAR_ERR_INVALID,
                                   "schedule step: step_every must be > 0 and step_gamma >= 0 "
                                   "(got %lld, %g)",
                                   (long long)c->step_every, c->step_gamma);
        break;
    case INVAR_SCHED_COSINE:
        if (!(isfinite(c->final_lr) && c->final_lr >= 0))
            return invar_error_set(err, INVAR_ERR_INVALID,
                                   "schedule cosine: final_lr must be >= 0 (got %g)", c->final_lr);
        break;
    default:
        return invar_error_set(err, INVAR_ERR_INVALID, "optimizer: unknown schedule %d",
                               (int)c->schedule);
    }
    return INVAR_OK;
}

enum invar_status invar_optim_create(struct invar_optim **out, const struct invar_optim_config *cfg,
                                     struct invar_params *const *groups, int n_groups,
                                     struct invar_error *err)
{
    *out = NULL;
    enum invar_status st = optim_check_config(cfg, err);
    if (st != INVAR_OK)
        return st;
    if (n_groups < 0 || (n_groups > 0 && !groups))
        return invar_error_set(err, INVAR_ERR_INVALID, "optimizer: bad group list");
    for (int g = 0; g < n_groups; g++)
        /* Every declared tensor has at least one float, so a finalized non-empty group owns a
         * weights or a buffers block. */
        if (!groups[g] || (invar_params_count(groups[g]) > 0 && !invar_params_data(groups[g]) &&
                           !invar_params_buffers(groups[g])))
            return invar_error_set(err, INVAR_ERR_INVALID,
                                   "optimizer: parameter group %d is missing or not finalized", g);

    struct invar_optim *o = calloc(1, sizeof *o);
    if (!o)
        return invar_error_set(err, INVAR_ERR_NOMEM, "optimizer: out of memory");
    o->cfg = *cfg;
    o->n_groups = n_groups;
    o->groups = calloc((size_t)(n_groups > 0 ? n_groups : 1), sizeof *o->groups);
    if (!o->groups) {
        free(o);
        return invar_error_set(err, INVAR_ERR_NOMEM, "optimizer: out of memory");
    }
    size_t per = optim_state_per_weight(cfg), total = 0;
    for (int g = 0; g < n_groups; g++) {
        o->groups[g].p = groups[g];
        o->groups[g].state_offset = total;
        total += per * invar_params_numel(groups[g]);
    }
    o->state_numel = total;
    if (total) {
        o->state = calloc(total, sizeof *o->state);
        if (!o->state) {
            free(o->groups);
            free(o);
            return invar_error_set(err, INVAR_ERR_NOMEM,
                                   "optimizer: cannot allocate %zu floats of state", total);
        }
    }
    *out = o;
    return INVAR_OK;
}

void invar_optim_destroy(struct invar_optim *o)
{
    if (!o)
        return;
    free(o->state);
    free(o->groups);
    free(o);
}

/* PyTorch's SGD on one tensor: g += wd w; v = mu v + g; w -= lr (nesterov ? g + mu v : v).
 * v is NULL when momentum is 0. */
static void sgd_update(float *w, const float *grad, float *v, size_t n, float lr, float wd,
                       float mu, int nesterov)
{
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] + wd * w[i];
        if (v) {
            v[i] = mu * v[i] + g;
            g = nesterov ? g + mu * v[i] : v[i];
        }
        w[i] -= lr * g;
    }
}

/* LARS (You et al. 2017) on one tensor, with the learning rate inside the momentum as in the
 * SimCLR and BYOL implementations:
 *     trust = eta ||w|| / (||g|| + wd ||w||)    (1 when either norm is 0, or NO_DECAY)
 *     v = mu v + lr trust (g + wd w);  w -= v */
static void lars_update(float *w, const float *grad, float *v, size_t n, float lr, float wd,
                        float mu, double eta, int adapt)
{
    double trust = 1.0;
    if (adapt) {
        double ww = 0, gg = 0;
        for (size_t i = 0; i < n; i++) {
            ww += (double)w[i] * w[i];
            gg += (double)grad[i] * grad[i];
        }
        double wn = sqrt(ww), gn = sqrt(gg), denom = gn + wd * wn;
        if (wn > 0 && denom > 0)
            trust = eta * wn / denom;
    }
    float scale = (float)(lr * trust);
    for (size_t i = 0; i < n; i++) {
        float u = scale * (grad[i] + wd * w[i]);
        if (v) {
            v[i] = mu * v[i] + u;
            u = v[i];
        }
        w[i] -= u;
    }
}

/* AdamW (Loshchilov & Hutter) as PyTorch: w *= 1 - lr wd; m, v moments;
 * w -= lr m_hat / (sqrt(v_hat) + eps), hats divided by 1 - beta^t. */
struct adamw_coef {
    float b1, one_minus_b1, b2, one_minus_b2, eps, bc1, bc2;
};

static void adamw_update(float *w, const float *grad, float *m, float *v, size_t n, float lr,
                         float wd, const struct adamw_coef *k)
{
    const float decay = 1.0f - lr * wd;
    const float b1 = k->b1, b2 = k->b2, c1 = k->one_minus_b1, c2 = k->one_minus_b2;
    const float bc1 = k->bc1, bc2 = k->bc2, eps = k->eps;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        m[i] = b1 * m[i] + c1 * g;
        v[i] = b2 * v[i] + c2 * g * g;
        float mh = m[i] / bc1, vh = v[i] / bc2;
        w[i] = w[i] * decay - lr * mh / (sqrtf(vh) + eps);
    }
}

/* Eight running sums side by side, so the compiler can keep them in vector lanes (one sum
 * would be a chain of dependent adds); fixed order, so the same gradients give the same bits. */
double invar_optim_grad_norm(const struct invar_optim *o)
{
    double acc[8] = {0};
    for (int g = 0; g < o->n_groups; g++) {
        const float *grad = invar_params_grad(o->groups[g].p);
        const size_t n = invar_params_numel(o->groups[g].p), n8 = n / 8 * 8;
        for (size_t i = 0; i < n8; i += 8)
            for (int j = 0; j < 8; j++)
                acc[j] += (double)grad[i + j] * grad[i + j];
        for (size_t i = n8; i < n; i++)
            acc[i - n8] += (double)grad[i] * grad[i];
    }
    double ss = 0;
    for (int j = 0; j < 8; j++)
        ss += acc[j];
    return sqrt(ss);
}

static void clip_grads(struct invar_optim *o, double max_norm)
{
    const double n = invar_optim_grad_norm(o);
    if (!(n > max_norm))
        return;
    const float k = (float)(max_norm / (n + 1e-6));
    for (int g = 0; g < o->n_groups; g++) {
        float *grad = invar_params_grad(o->groups[g].p);
        const size_t count = invar_params_numel(o->groups[g].p);
        for (size_t i = 0; i < count; i++)
            grad[i] *= k;
    }
}

void invar_optim_step(struct invar_optim *o, double lr_d)
{
    const struct invar_optim_config *c = &o->cfg;
    if (c->clip_norm > 0)
        clip_grads(o, c->clip_norm);
    const float step_lr = (float)lr_d, mu = (float)c->momentum;
    const int64_t t = o->steps + 1;
    /* 1 - beta in double: 1 - 0.999f in float keeps only four good digits. */
    const struct adamw_coef ak = {
        .b1 = (float)c->beta1,
        .one_minus_b1 = (float)(1.0 - c->beta1),
        .b2 = (float)c->beta2,
        .one_minus_b2 = (float)(1.0 - c->beta2),
        .eps = (float)c->eps,
        .bc1 = (float)(1.0 - pow(c->beta1, (double)t)),
        .bc2 = (float)(1.0 - pow(c->beta2, (double)t)),
    };
    for (int g = 0; g < o->n_groups; g++) {
        struct invar_params *p = o->groups[g].p;
        const size_t numel = invar_params_numel(p);
        float *state = o->state ? o->state + o->groups[g].state_offset : NULL;
        const size_t count = invar_params_count(p);
        for (size_t i = 0; i < count; i++) {
            unsigned flags;
            struct invar_tensor *tsr = invar_params_at(p, i, NULL, &flags);
            if (flags & INVAR_P_BUFFER)
                continue;
            const size_t n = (size_t)tsr->numel;
            const size_t off = (size_t)(tsr->data - invar_params_data(p));
            const int decay = !(flags & INVAR_P_NO_DECAY);
            const float wd = decay ? (float)c->weight_decay : 0.0f;
            const float lr = flags & INVAR_P_FIXED_LR ? (float)c->lr : step_lr;
            float *s = state ? state + off : NULL;
            switch (c->kind) {
            case INVAR_OPTIM_SGD:
                sgd_update(tsr->data, tsr->grad, s, n, lr, wd, mu, c->nesterov);
                break;
            case INVAR_OPTIM_LARS:
                lars_update(tsr->data, tsr->grad, s, n, lr, wd, mu, c->lars_eta, decay);
                break;
            case INVAR_OPTIM_ADAMW:
                adamw_update(tsr->data, tsr->grad, s, s + numel, n, lr, wd, &ak);
                break;
            }
        }
    }
    o->steps++;
}

/* Warm-up: lr (step + 1) / warmup_steps for step < warmup_steps, as PyTorch's LinearLR-style
 * ramps do: the first step already moves, the last warm-up step reaches lr. After it, with
 * s = step - warmup_steps and n = total_steps - warmup_steps:
 *   CONSTANT  lr
 *   STEP      lr gamma^floor(s / step_every)
 *   COSINE    final + (lr - final) (1 + cos(pi s / (n - 1))) / 2, so s = 0 gives lr and the
 *             last step (s = n - 1) gives final; steps past the end stay at final. */
double invar_optim_lr(const struct invar_optim_config *cfg, int64_t step, int64_t total_steps)
{
    const double lr = cfg->lr;
    const int64_t warm = cfg->warmup_steps > 0 ? cfg->warmup_steps : 0;
    if (step < 0)
        step = 0;
    if (step < warm)
        return lr * (double)(step + 1) / (double)warm;
    const int64_t s = step - warm, n = total_steps - warm;
    switch (cfg->schedule) {
    case INVAR_SCHED_CONSTANT:
        return lr;
    case INVAR_SCHED_STEP:
        if (cfg->step_every <= 0)
            return lr;
        return lr * pow(cfg->step_gamma, (double)(s / cfg->step_every));
    case INVAR_SCHED_COSINE: {
        if (s >= n - 1)
            return cfg->final_lr;
        const double pi = 3.14159265358979323846;
        double progress = (double)s / (double)(n - 1);
        return cfg->final_lr + (lr - cfg->final_lr) * 0.5 * (1.0 + cos(pi * progress));
    }
    }
    return lr;
}

size_t invar_optim_state_numel(const struct invar_optim *o)
{
    return o->state_numel;
}
float *invar_optim_state(struct invar_optim *o)
{
    return o->state;
}
int64_t invar_optim_steps_taken(const struct invar_optim *o)
{
    return o->steps;
}

void invar_optim_set_steps_taken(struct invar_optim *o, int64_t steps)
{
    INVAR_ASSERT(steps >= 0);
    o->steps = steps;
}
