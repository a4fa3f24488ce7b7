/* color_jitter — colour invariance, as torchvision's ColorJitter plus gamma.
 *
 * Each op with a nonzero strength runs once: brightness x f; contrast f x + (1 - f) mean
 * (mean of the luma over the image); saturation f x + (1 - f) luma per pixel (RGB only); hue
 * rotation by a fraction drawn from [-hue, hue] of a turn through HSV (RGB only); gamma x^f.
 * Factors f are drawn uniformly from [max(0, 1 - s), 1 + s] (gamma: [max(0.05, 1 - s), 1 + s])
 * as each op runs; results are clamped to [0, 1] after every op. Grayscale (C = 1) images get
 * brightness, contrast and gamma; saturation and hue need C = 3 and are skipped otherwise.
 * order = random shuffles the active ops first (Fisher–Yates with invar_rng_below), as
 * torchvision does; fixed runs them in the order listed above. Luma: 0.299 R + 0.587 G +
 * 0.114 B (ITU-R 601, as torchvision). */
#include <invar/plugin.h>

#include "warp.h"

struct color_jitter_config {
    double brightness, contrast, saturation, hue, gamma;
    int order; /* 0 random, 1 fixed */
};

static const struct invar_param_spec color_jitter_params[] = {
    INVAR_PARAM_FLOAT(struct color_jitter_config, brightness, "0.4", 0, 10,
                      "brightness factor spread: f in [1-s, 1+s]"),
    INVAR_PARAM_FLOAT(struct color_jitter_config, contrast, "0.4", 0, 10,
                      "contrast factor spread: f in [1-s, 1+s]"),
    INVAR_PARAM_FLOAT(struct color_jitter_config, saturation, "0.4", 0, 10,
                      "saturation factor spread (RGB only)"),
    INVAR_PARAM_FLOAT(struct color_jitter_config, hue, "0.1", 0, 0.5,
                      "hue shift in [-s, s] of a full turn (RGB only)"),
    INVAR_PARAM_FLOAT(struct color_jitter_config, gamma, "0", 0, 0.95,
                      "gamma exponent spread: x^f, f in [1-s, 1+s]"),
    INVAR_PARAM_ENUM(struct color_jitter_config, order, "random", "random|fixed",
                     "shuffle the ops per sample (as torchvision) or keep the listed order"),
    INVAR_PARAM_END
};

enum cj_op { CJ_BRIGHTNESS, CJ_CONTRAST, CJ_SATURATION, CJ_HUE, CJ_GAMMA, CJ_COUNT };

static float cj_factor(struct invar_rng *rng, double s, double floor_)
{
    double lo = 1.0 - s < floor_ ? floor_ : 1.0 - s;
    return invar_rng_range(rng, (float)lo, (float)(1.0 + s));
}

static float cj_luma(float r, float g, float b)
{
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

/* Rotates the hue of one pixel by `shift` turns through HSV. */
static void cj_hue_pixel(float *r, float *g, float *b, float shift)
{
    float mx = fmaxf(*r, fmaxf(*g, *b)), mn = fminf(*r, fminf(*g, *b));
    float d = mx - mn;
    if (d <= 0.0f)
        return; /* gray: hue undefined and irrelevant */
    float h;
    if (mx == *r)
        h = (*g - *b) / d;
    else if (mx == *g)
        h = 2.0f + (*b - *r) / d;
    else
        h = 4.0f + (*r - *g) / d;
    h = h / 6.0f + shift;
    h -= floorf(h);
    float s = d / mx, v = mx;
    float hh = h * 6.0f;
    int sector = (int)hh;
    sector = sector > 5 ? 5 : sector;
    float f = hh - (float)sector;
    float p = v * (1.0f - s), q = v * (1.0f - s * f), t = v * (1.0f - s * (1.0f - f));
    /* (r, g, b) of each sixth of the hue circle, indexing {v, q, p, t}. */
    static const int pick[6][3] = {{0, 3, 2}, {1, 0, 2}, {2, 0, 3}, {2, 1, 0}, {3, 2, 0},
                                   {0, 2, 1}};
    float vals[4] = {v, q, p, t};
    *r = vals[pick[sector][0]], *g = vals[pick[sector][1]], *b = vals[pick[sector][2]];
}

static void color_jitter_apply(const void *config, struct invar_rng *rng,
                               const struct invar_image *in, struct invar_image *out)
{
    const struct color_jitter_config *cf = config;
    const int64_t c = in->c, hw = in->h * in->w, n = invar_image_numel(in);
    const int rgb = c == 3;
    const double strength[CJ_COUNT] = {cf->brightness, cf->contrast, rgb ? cf->saturation : 0,
                                       rgb ? cf->hue : 0, cf->gamma};
    int ops[CJ_COUNT], nops = 0;
    for (int i = 0; i < CJ_COUNT; i++)
        if (strength[i] > 0.0)
            ops[nops++] = i;
    if (cf->order == 0)
        for (int i = nops - 1; i > 0; i--) {
            int j = (int)invar_rng_below(rng, (uint32_t)(i + 1));
            int tmp = ops[i];
            ops[i] = ops[j], ops[j] = tmp;
        }
    out->c = c, out->h = in->h, out->w = in->w;
    float *x = out->data;  // (C, H, W), transformed in place after the copy
    memcpy(x, in->data, (size_t)n * sizeof(float));
    for (int o = 0; o < nops; o++) {
        switch ((enum cj_op)ops[o]) {
        case CJ_BRIGHTNESS: {
            float f = cj_factor(rng, cf->brightness, 0.0);
            for (int64_t i = 0; i < n; i++)
                x[i] = warp_clamp01(x[i] * f);
            break;
        }
        case CJ_CONTRAST: {
            float f = cj_factor(rng, cf->contrast, 0.0);
            double sum = 0.0;
            if (rgb)
                for (int64_t i = 0; i < hw; i++)
                    sum += cj_luma(x[i], x[hw + i], x[2 * hw + i]);
            else
                for (int64_t i = 0; i < n; i++)
                    sum += x[i];
            float mean = (float)(sum / (double)(rgb ? hw : n));
            float base = (1.0f - f) * mean;
            for (int64_t i = 0; i < n; i++)
                x[i] = warp_clamp01(f * x[i] + base);
            break;
        }
        case CJ_SATURATION: {
            float f = cj_factor(rng, cf->saturation, 0.0);
            for (int64_t i = 0; i < hw; i++) {
                float gray = (1.0f - f) * cj_luma(x[i], x[hw + i], x[2 * hw + i]);
                for (int64_t k = 0; k < 3; k++)
                    x[k * hw + i] = warp_clamp01(f * x[k * hw + i] + gray);
            }
            break;
        }
        case CJ_HUE: {
            float shift = invar_rng_range(rng, (float)-cf->hue, (float)cf->hue);
            for (int64_t i = 0; i < hw; i++)
                cj_hue_pixel(&x[i], &x[hw + i], &x[2 * hw + i], shift);
            break;
        }
        case CJ_GAMMA: {
            float f = cj_factor(rng, cf->gamma, 0.05);
            for (int64_t i = 0; i < n; i++)
                x[i] = warp_clamp01(powf(x[i] < 0.0f ? 0.0f : x[i], f));
            break;
        }
        case CJ_COUNT:
            break;
        }
    }
}

static const struct invar_augment_ops color_jitter_ops = {
    .flags = INVAR_AUG_IMAGES,
    .apply = color_jitter_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "color_jitter", "1.0.0",
                    "colour: random brightness, contrast, saturation, hue and gamma",
                    struct color_jitter_config, color_jitter_params, color_jitter_ops)
