/* time_shift — temporal invariance: shift a (C, 1, T) sequence by k steps, k drawn uniformly
 * from the integers in [-max_shift, max_shift] (one invar_rng_below draw; max_shift is
 * capped at T - 1). circular rotates (out[t] = in[(t - k) mod T]); zero fills the steps
 * shifted in with zeros. Images (C, H, W) are shifted along W row by row alike. */
#include <invar/plugin.h>

#include "warp.h"

struct time_shift_config {
    int64_t max_shift;
    int mode;  /* 0 circular, 1 zero */
};

static const struct invar_param_spec time_shift_params[] = {
    INVAR_PARAM_INT(struct time_shift_config, max_shift, "8", 0, 1 << 24,
                    "largest shift in steps either way"),
    INVAR_PARAM_ENUM(struct time_shift_config, mode, "circular", "circular|zero",
                     "wrap the sequence around or shift zeros in"),
    INVAR_PARAM_END
};

static void time_shift_apply(const void *config, struct invar_rng *rng,
                             const struct invar_image *in, struct invar_image *out)
{
    const struct time_shift_config *cf = config;
    int64_t t = in->w, rows = in->c * in->h;
    int64_t m = cf->max_shift < t - 1 ? cf->max_shift : t - 1;
    int64_t k = m > 0 ? (int64_t)invar_rng_below(rng, (uint32_t)(2 * m + 1)) - m : 0;
    enum warp_fill mode = cf->mode == 0 ? WARP_FILL_WRAP : WARP_FILL_CONSTANT;
    out->c = in->c, out->h = in->h, out->w = t;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < t; i++)
            out->data[r * t + i] = warp_pixel(in->data + r * t, 1, t, 0, i - k, mode, 0.0f);
}

static const struct invar_augment_ops time_shift_ops = {
    .flags = INVAR_AUG_SEQUENCES,
    .apply = time_shift_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "time_shift", "1.0.0",
                    "temporal: random circular or zero-filled shift of a sequence",
                    struct time_shift_config, time_shift_params, time_shift_ops)
