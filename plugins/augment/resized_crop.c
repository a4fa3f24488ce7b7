/* resized_crop — scale invariance as torchvision's RandomResizedCrop.
 *
 * Up to 10 attempts: area fraction s ~ U(scale), log aspect ~ U(log ratio), box
 * w = round(sqrt(s A r)), h = round(sqrt(s A / r)); the first box that fits is placed
 * uniformly (top, then left). When none fits, the fallback is the largest centred box whose
 * aspect is clamped into `ratio` (the whole image when its aspect is inside). The box is
 * resized bilinearly (half-pixel centres, no antialiasing) to size x size, or to the input's
 * H x W when size is 0. Draws per attempt: range, range, and below twice on success. */
#include <invar/plugin.h>

#include "warp.h"

struct resized_crop_config {
    double scale[2];
    double ratio[2];
    int64_t size;
};

static const struct invar_param_spec resized_crop_params[] = {
    INVAR_PARAM_RANGE(struct resized_crop_config, scale, "[0.08, 1.0]", 0, 1,
                      "range of the crop's area as a fraction of the image"),
    INVAR_PARAM_RANGE(struct resized_crop_config, ratio, "[0.75, 1.3333333]", 0.01, 100,
                      "range of the crop's aspect ratio w/h, drawn log-uniformly"),
    INVAR_PARAM_INT(struct resized_crop_config, size, "0", 0, 4096,
                    "output side (square); 0 keeps the input's H x W"),
    INVAR_PARAM_END
};

static void resized_crop_out_shape(const void *config, const int64_t in[3], int64_t out[3])
{
    const struct resized_crop_config *cf = config;
    out[0] = in[0];
    out[1] = cf->size > 0 ? cf->size : in[1];
    out[2] = cf->size > 0 ? cf->size : in[2];
}

/* The crop box (top, left, bh, bw) in whole pixels. */
static void resized_crop_box(const struct resized_crop_config *cf, struct invar_rng *rng,
                             int64_t h, int64_t w, int64_t box[4])
{
    double area = (double)h * (double)w;
    double lr0 = log(cf->ratio[0]), lr1 = log(cf->ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * invar_rng_range(rng, (float)cf->scale[0], (float)cf->scale[1]);
        double aspect = exp(invar_rng_range(rng, (float)lr0, (float)lr1));
        int64_t bw = (int64_t)nearbyint(sqrt(target * aspect));
        int64_t bh = (int64_t)nearbyint(sqrt(target / aspect));
        if (bw > 0 && bw <= w && bh > 0 && bh <= h) {
            box[0] = (int64_t)invar_rng_below(rng, (uint32_t)(h - bh + 1));
            box[1] = (int64_t)invar_rng_below(rng, (uint32_t)(w - bw + 1));
            box[2] = bh, box[3] = bw;
            return;
        }
    }
    double in_ratio = (double)w / (double)h;
    int64_t bw = w, bh = h;
    if (in_ratio < cf->ratio[0])
        bh = (int64_t)nearbyint((double)w / cf->ratio[0]);
    else if (in_ratio > cf->ratio[1])
        bw = (int64_t)nearbyint((double)h * cf->ratio[1]);
    bh = bh < 1 ? 1 : (bh > h ? h : bh);
    bw = bw < 1 ? 1 : (bw > w ? w : bw);
    box[0] = (h - bh) / 2, box[1] = (w - bw) / 2, box[2] = bh, box[3] = bw;
}

static void resized_crop_apply(const void *config, struct invar_rng *rng,
                               const struct invar_image *in, struct invar_image *out)
{
    const struct resized_crop_config *cf = config;
    int64_t box[4];
    resized_crop_box(cf, rng, in->h, in->w, box);
    int64_t oh = cf->size > 0 ? cf->size : in->h, ow = cf->size > 0 ? cf->size : in->w;
    warp_resize_box(out, oh, ow, in, (double)box[0], (double)box[1], (double)box[2],
                    (double)box[3]);
}

static const struct invar_augment_ops resized_crop_ops = {
    .flags = INVAR_AUG_IMAGES,
    .out_shape = resized_crop_out_shape,
    .apply = resized_crop_apply,
};

INVAR_PLUGIN_DEFINE(invar_augment, "resized_crop", "1.0.0",
                    "scale: random area and aspect crop resized back (RandomResizedCrop)",
                    struct resized_crop_config, resized_crop_params, resized_crop_ops)
