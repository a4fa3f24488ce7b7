/* The augmentation plugins, loaded from the build tree one shared object at a time.
 *
 * A table drives the checks every plugin must pass (identity parameters give the input back
 * bit for bit, output shape and range on awkward sizes, determinism per RNG key and variety
 * across keys); one test per plugin then checks a property of its family that a wrong
 * implementation would break. Draw orders documented in the plugins' headers are replayed
 * here where a test needs the exact random offset. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/data.h"
#include "invar/plugin.h"
#include "invar/rng.h"
#include "plugin_harness.h"

#define SEED 20240611u

struct kv {
    const char *key, *value;
};

struct aug_case {
    const char *name;
    int seq;             /* takes (C, 1, T) sequences rather than images */
    int random;          /* output depends on the draws */
    int in_range;        /* images in [0, 1] stay in [0, 1] */
    int twice;           /* no identity parameters: applying twice is the identity */
    int square;          /* the identity needs a square input */
    int gray_identity;   /* the identity is a one-channel input */
    struct kv identity[6];
    struct kv active[6]; /* overrides for the shape, range and key tests */
};

static const struct aug_case cases[] = {
    {"translate", 0, 1, 1, 0, 0, 0, {{"max_shift", "0"}}, {{"max_shift", "0.25"}}},
    {"crop", 0, 1, 1, 0, 0, 0, {{"padding", "0"}}, {{"padding", "3"}, {"fill", "reflect"}}},
    {"rotate", 0, 1, 1, 0, 0, 0, {{"degrees", "[0, 0]"}}, {{"degrees", "[-40, 40]"}}},
    {"rot90", 0, 1, 1, 0, 0, 0, {{"k", "0"}}, {{"k", "-1"}}},
    {"resized_crop", 0, 1, 1, 0, 1, 0, {{"scale", "[1, 1]"}, {"ratio", "[1, 1]"}}, {{"size", "0"}}},
    {"zoom", 0, 1, 1, 0, 0, 0, {{"factor", "[1, 1]"}}, {{"factor", "[0.5, 2]"}, {"fill", "wrap"}}},
    {"time_shift", 1, 1, 1, 0, 0, 0, {{"max_shift", "0"}}, {{"max_shift", "50"}}},
    {"time_crop", 1, 1, 1, 0, 0, 0, {{"scale", "[1, 1]"}}, {{"scale", "[0.1, 1]"}}},
    {"time_warp", 1, 1, 1, 0, 0, 0, {{"sigma", "0"}}, {{"sigma", "1.0"}, {"knots", "7"}}},
    {"time_mask", 1, 1, 1, 0, 0, 0, {{"width", "[0, 0]"}}, {{"width", "[0.1, 0.9]"}}},
    {"color_jitter", 0, 1, 1, 0, 0, 0,
     {{"brightness", "0"}, {"contrast", "0"}, {"saturation", "0"}, {"hue", "0"}, {"gamma", "0"}},
     {{"brightness", "0.8"}, {"contrast", "0.8"}, {"saturation", "0.8"}, {"hue", "0.5"},
      {"gamma", "0.5"}}},
    {"grayscale", 0, 0, 1, 0, 0, 1, {{0}}, {{0}}},
    {"solarize", 0, 0, 1, 0, 0, 0, {{"threshold", "2"}}, {{"threshold", "0.3"}}},
    {"invert", 0, 0, 1, 1, 0, 0, {{0}}, {{0}}},
    {"elastic", 0, 1, 1, 0, 0, 0, {{"alpha", "0"}}, {{"alpha", "200"}, {"sigma", "2"}}},
    {"affine", 0, 1, 1, 0, 0, 0, {{"shear_x", "[0, 0]"}, {"shear_y", "[0, 0]"}},
     {{"shear_x", "[-30, 30]"}, {"shear_y", "[-20, 20]"}, {"scale", "[0.7, 1.3]"},
      {"translate", "0.2"}, {"fill", "edge"}}},
    {"perspective", 0, 1, 1, 0, 0, 0, {{"distortion", "0"}}, {{"distortion", "1"}}},
    {"hflip", 0, 0, 1, 1, 0, 0, {{0}}, {{0}}},
    {"vflip", 0, 0, 1, 1, 0, 0, {{0}}, {{0}}},
    {"gaussian_blur", 0, 1, 1, 0, 0, 0, {{"sigma", "[0, 0]"}}, {{"sigma", "[0.1, 5]"}}},
    {"gaussian_noise", 0, 1, 1, 0, 0, 0, {{"std", "0"}}, {{"std", "0.5"}}},
    {"erase", 0, 1, 1, 0, 0, 0, {{"scale", "[0, 0]"}}, {{"scale", "[0.02, 0.5]"}, {"random", "true"}}},
};
#define NCASES (sizeof cases / sizeof cases[0])

/* ---- helpers -------------------------------------------------------------------------- */

static struct invar_image img_new(int64_t c, int64_t h, int64_t w)
{
    struct invar_image im = {calloc((size_t)(c * h * w), sizeof(float)), c, h, w};
    cr_assert_not_null(im.data);
    return im;
}

/* Room for any output of an input of numel n (resized_crop with size, rot90 swaps). */
static struct invar_image img_out(int64_t n)
{
    struct invar_image im = {calloc((size_t)n, sizeof(float)), 0, 0, 0};
    cr_assert_not_null(im.data);
    return im;
}

/* Values k/256 in [0, 1): exact in float, so 1 - (1 - x) == x. */
static void img_fill_random(struct invar_image *im, uint64_t key)
{
    struct invar_rng r;
    invar_rng_init(&r, 99, key);
    for (int64_t i = 0; i < invar_image_numel(im); i++)
        im->data[i] = (float)invar_rng_below(&r, 256) / 256.0f;
}

static float *px(struct invar_image *im, int64_t c, int64_t y, int64_t x)
{
    return &im->data[(c * im->h + y) * im->w + x];
}

static void run(struct ph_plugin *p, uint64_t key, const struct invar_image *in,
                struct invar_image *out)
{
    struct invar_rng r;
    invar_rng_init(&r, SEED, key);
    p->desc->ops.augment->apply(p->config, &r, in, out);
}

static void open_case(struct ph_plugin *p, const struct aug_case *cs, const struct kv *kvs)
{
    ph_open(p, "augment", cs->name);
    cr_assert_eq(p->desc->kind, INVAR_KIND_AUGMENT, "%s", cs->name);
    for (int i = 0; i < 6 && kvs[i].key; i++)
        ph_set(p, kvs[i].key, kvs[i].value);
}

static int img_equal(const struct invar_image *a, const struct invar_image *b)
{
    return a->c == b->c && a->h == b->h && a->w == b->w &&
           memcmp(a->data, b->data, (size_t)invar_image_numel(a) * sizeof(float)) == 0;
}

static double img_mean(const struct invar_image *im)
{
    double s = 0;
    for (int64_t i = 0; i < invar_image_numel(im); i++)
        s += im->data[i];
    return s / (double)invar_image_numel(im);
}

static double img_var(const struct invar_image *im)
{
    double m = img_mean(im), s = 0;
    for (int64_t i = 0; i < invar_image_numel(im); i++)
        s += (im->data[i] - m) * (im->data[i] - m);
    return s / (double)invar_image_numel(im);
}

/* ---- every plugin --------------------------------------------------------------------- */

Test(augment, every_plugin_has_documented_defaults)
{
    for (size_t i = 0; i < NCASES; i++) {
        struct ph_plugin p;
        ph_open(&p, "augment", cases[i].name);
        cr_assert_not_null(p.desc->summary);
        cr_assert_not_null(p.desc->ops.augment->apply, "%s", cases[i].name);
        unsigned want = cases[i].seq ? INVAR_AUG_SEQUENCES : INVAR_AUG_IMAGES;
        cr_assert(p.desc->ops.augment->flags & want, "%s: flags", cases[i].name);
        for (const struct invar_param_spec *s = p.desc->params; s && s->key; s++) {
            cr_assert_not_null(s->def, "%s.%s has no default", cases[i].name, s->key);
            cr_assert(s->doc && strlen(s->doc) > 5, "%s.%s has no doc", cases[i].name, s->key);
        }
        ph_close(&p);
    }
}

Test(augment, identity_parameters_give_the_input_back_exactly)
{
    for (size_t i = 0; i < NCASES; i++) {
        const struct aug_case *cs = &cases[i];
        struct ph_plugin p;
        open_case(&p, cs, cs->identity);
        int64_t c = cs->gray_identity ? 1 : 3;
        struct invar_image in = cs->seq ? img_new(3, 1, 57)
                                        : (cs->square ? img_new(c, 16, 16) : img_new(c, 13, 18));
        img_fill_random(&in, i);
        struct invar_image out = img_out(invar_image_numel(&in));
        struct invar_image back = img_out(invar_image_numel(&in));
        for (uint64_t key = 0; key < 5; key++) {
            run(&p, key, &in, &out);
            if (cs->twice) {
                cr_assert(!img_equal(&in, &out), "%s changes nothing", cs->name);
                run(&p, key + 100, &out, &back);
                cr_assert(img_equal(&in, &back), "%s twice is not the identity", cs->name);
            } else {
                cr_assert(img_equal(&in, &out), "%s: identity parameters change the input",
                          cs->name);
            }
        }
        free(in.data), free(out.data), free(back.data);
        ph_close(&p);
    }
}

Test(augment, shapes_range_and_bounds_on_awkward_sizes)
{
    static const int64_t image_shapes[][3] = {{1, 1, 1}, {1, 2, 3}, {3, 5, 7}, {1, 28, 28},
                                              {3, 70, 65}, {2, 9, 130}};
    static const int64_t seq_shapes[][3] = {{1, 1, 1}, {1, 1, 2}, {2, 1, 9}, {3, 1, 100}};
    for (size_t i = 0; i < NCASES; i++) {
        const struct aug_case *cs = &cases[i];
        struct ph_plugin p;
        open_case(&p, cs, cs->active);
        size_t nshapes = cs->seq ? 4 : 6;
        for (size_t s = 0; s < nshapes; s++) {
            const int64_t *sh = cs->seq ? seq_shapes[s] : image_shapes[s];
            struct invar_image in = img_new(sh[0], sh[1], sh[2]);
            img_fill_random(&in, s);
            int64_t want[3] = {sh[0], sh[1], sh[2]};
            if (p.desc->ops.augment->out_shape)
                p.desc->ops.augment->out_shape(p.config, sh, want);
            /* Exactly the promised room: ASan catches a write past it. */
            struct invar_image out = img_out(want[0] * want[1] * want[2]);
            for (uint64_t key = 0; key < 20; key++) {
                run(&p, key, &in, &out);
                cr_assert(out.c == want[0] && out.h == want[1] && out.w == want[2],
                          "%s: shape (%lld, %lld, %lld)", cs->name, (long long)out.c,
                          (long long)out.h, (long long)out.w);
                for (int64_t j = 0; j < invar_image_numel(&out); j++) {
                    float v = out.data[j];
                    cr_assert(isfinite(v), "%s: non-finite output", cs->name);
                    if (cs->in_range)
                        cr_assert(v >= 0.0f && v <= 1.0f, "%s: %g out of [0, 1]", cs->name,
                                  (double)v);
                }
            }
            free(in.data), free(out.data);
        }
        ph_close(&p);
    }
}

Test(augment, same_key_same_output_other_keys_differ)
{
    for (size_t i = 0; i < NCASES; i++) {
        const struct aug_case *cs = &cases[i];
        struct ph_plugin p;
        open_case(&p, cs, cs->active);
        struct invar_image in = cs->seq ? img_new(2, 1, 64) : img_new(3, 24, 24);
        img_fill_random(&in, 7);
        int64_t n = invar_image_numel(&in);
        struct invar_image a = img_out(n), b = img_out(n);
        run(&p, 1, &in, &a);
        run(&p, 1, &in, &b);
        cr_assert(img_equal(&a, &b), "%s is not deterministic for one key", cs->name);
        if (cs->random) {
            int differs = 0;
            for (uint64_t key = 2; key < 10 && !differs; key++) {
                run(&p, key, &in, &b);
                differs = !img_equal(&a, &b);
            }
            cr_assert(differs, "%s gives the same output for every key", cs->name);
        }
        free(in.data), free(a.data), free(b.data);
        ph_close(&p);
    }
}

/* ---- translation ---------------------------------------------------------------------- */

Test(augment, translate_moves_a_pixel_by_the_drawn_offset)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "translate");
    ph_set(&p, "max_shift", "3");
    ph_set(&p, "unit", "pixels");
    struct invar_image in = img_new(1, 15, 12), out = img_out(15 * 12);
    *px(&in, 0, 7, 5) = 1.0f;
    double sum_dx = 0, sum_dy = 0;
    int seen[7] = {0};
    const int draws = 2000;
    for (int k = 0; k < draws; k++) {
        run(&p, (uint64_t)k, &in, &out);
        struct invar_rng r; /* the plugin's draws: dx then dy, below(2m + 1) - m */
        invar_rng_init(&r, SEED, (uint64_t)k);
        int dx = (int)invar_rng_below(&r, 7) - 3, dy = (int)invar_rng_below(&r, 7) - 3;
        for (int64_t y = 0; y < 15; y++)
            for (int64_t x = 0; x < 12; x++)
                cr_assert_eq(*px(&out, 0, y, x), (y == 7 + dy && x == 5 + dx) ? 1.0f : 0.0f,
                             "draw %d: shift (%d, %d)", k, dx, dy);
        sum_dx += dx, sum_dy += dy;
        seen[dx + 3]++;
    }
    for (int i = 0; i < 7; i++)
        cr_assert_gt(seen[i], draws / 14, "shift %d is rare", i - 3);
    /* Uniform on -3..3: std 2, so the mean of 2000 draws has std 0.045. */
    cr_assert_lt(fabs(sum_dx / draws), 0.2);
    cr_assert_lt(fabs(sum_dy / draws), 0.2);
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, translate_fill_modes)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "translate");
    ph_set(&p, "max_shift", "0.5");
    struct invar_image in = img_new(1, 1, 8), out = img_out(8);
    for (int i = 0; i < 8; i++)
        in.data[i] = (float)i / 8.0f;
    static const char *modes[] = {"edge", "reflect", "wrap"};
    for (int m = 0; m < 3; m++) {
        ph_set(&p, "fill", modes[m]);
        for (uint64_t key = 0; key < 50; key++) {
            run(&p, key, &in, &out);
            struct invar_rng r;
            invar_rng_init(&r, SEED, key);
            int dx = (int)invar_rng_below(&r, 9) - 4; /* m = 0.5 * 8 = 4; H = 1 gives m = 0 */
            for (int x = 0; x < 8; x++) {
                int s = x - dx, want;
                if (m == 0)
                    want = s < 0 ? 0 : (s > 7 ? 7 : s);
                else if (m == 1)
                    want = s < 0 ? -s : (s > 7 ? 14 - s : s);
                else
                    want = (s + 8) % 8;
                cr_assert_eq(out.data[x], (float)want / 8.0f, "%s x=%d dx=%d", modes[m], x, dx);
            }
        }
    }
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, crop_is_a_shift_within_the_padding)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "crop");
    ph_set(&p, "padding", "4");
    struct invar_image in = img_new(2, 16, 16), out = img_out(2 * 16 * 16);
    *px(&in, 1, 8, 8) = 1.0f;
    int seen_far = 0;
    for (uint64_t key = 0; key < 500; key++) {
        run(&p, key, &in, &out);
        struct invar_rng r; /* top then left in 0..2p: content moves by p - offset */
        invar_rng_init(&r, SEED, key);
        int top = (int)invar_rng_below(&r, 9), left = (int)invar_rng_below(&r, 9);
        int y = 8 + 4 - top, x = 8 + 4 - left;
        cr_assert_eq(*px(&out, 1, y, x), 1.0f);
        cr_assert_eq(img_mean(&out), img_mean(&in), "the pixel is the only content");
        seen_far += (abs(y - 8) == 4 && abs(x - 8) == 4);
    }
    cr_assert_gt(seen_far, 0, "the full padding is never used");
    free(in.data), free(out.data);
    ph_close(&p);
}

/* ---- rotation ------------------------------------------------------------------------- */

static void fill_smooth(struct invar_image *im)
{
    for (int64_t y = 0; y < im->h; y++)
        for (int64_t x = 0; x < im->w; x++)
            *px(im, 0, y, x) = (float)(0.5 + 0.25 * sin(0.35 * (double)x + 0.2) *
                                                  cos(0.3 * (double)y - 0.4));
}

Test(augment, rotate_then_back_restores_the_centre)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "rotate");
    struct invar_image in = img_new(1, 33, 33), mid = img_out(33 * 33), back = img_out(33 * 33);
    fill_smooth(&in);
    static const char *fwd[] = {"[25, 25]", "[-70, -70]", "[133, 133]"};
    static const char *rev[] = {"[-25, -25]", "[70, 70]", "[-133, -133]"};
    for (int t = 0; t < 3; t++) {
        ph_set(&p, "degrees", fwd[t]);
        run(&p, 1, &in, &mid);
        cr_assert(!img_equal(&in, &mid));
        ph_set(&p, "degrees", rev[t]);
        run(&p, 2, &mid, &back);
        double worst = 0;
        for (int64_t y = 0; y < 33; y++)
            for (int64_t x = 0; x < 33; x++)
                if ((x - 16) * (x - 16) + (y - 16) * (y - 16) <= 11 * 11)
                    worst = fmax(worst, fabs(*px(&back, 0, y, x) - *px(&in, 0, y, x)));
        /* Two bilinear resamplings of a smooth image blur it by a few thousandths. */
        cr_assert_lt(worst, 0.02, "%s then %s: centre off by %g", fwd[t], rev[t], worst);
    }
    free(in.data), free(mid.data), free(back.data);
    ph_close(&p);
}

Test(augment, rotate_by_90_degrees_is_rot90_counter_clockwise)
{
    struct ph_plugin rot, r90;
    ph_open(&rot, "augment", "rotate");
    ph_set(&rot, "degrees", "[90, 90]");
    ph_open(&r90, "augment", "rot90");
    ph_set(&r90, "k", "1");
    struct invar_image in = img_new(2, 10, 10), a = img_out(200), b = img_out(200);
    img_fill_random(&in, 3);
    run(&rot, 0, &in, &a);
    run(&r90, 0, &in, &b);
    for (int64_t i = 0; i < 200; i++)
        cr_assert_float_eq(a.data[i], b.data[i], 1e-5);
    /* Counter-clockwise on screen: the top-right corner becomes the top-left. */
    cr_assert_eq(*px(&b, 1, 0, 0), *px(&in, 1, 0, 9));
    free(in.data), free(a.data), free(b.data);
    ph_close(&rot), ph_close(&r90);
}

Test(augment, rot90_four_times_is_the_identity)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "rot90");
    ph_set(&p, "k", "1");
    struct invar_image a = img_new(3, 6, 11), b = img_out(3 * 66), orig = img_new(3, 6, 11);
    img_fill_random(&a, 5);
    memcpy(orig.data, a.data, sizeof(float) * 3 * 66);
    int64_t shape[3];
    p.desc->ops.augment->out_shape(p.config, (int64_t[]){3, 6, 11}, shape);
    cr_assert(shape[1] == 11 && shape[2] == 6);
    for (int t = 0; t < 4; t++) {
        run(&p, 0, &a, &b);
        struct invar_image tmp = a;
        a = b, b = tmp;
    }
    cr_assert(img_equal(&a, &orig));
    /* Drawn turns keep a non-square shape: only 0 and 180 degrees. */
    ph_set(&p, "k", "-1");
    for (uint64_t key = 0; key < 30; key++) {
        run(&p, key, &orig, &b);
        cr_assert(b.h == 6 && b.w == 11);
    }
    free(a.data), free(b.data), free(orig.data);
    ph_close(&p);
}

/* ---- scale ---------------------------------------------------------------------------- */

Test(augment, resized_crop_area_stays_in_the_scale_range)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "resized_crop");
    ph_set(&p, "scale", "[0.2, 0.6]");
    const int64_t n = 64;
    /* Channel 0 is x, channel 1 is y: bilinear resampling of a ramp is exact, so the slope in
     * the middle of the output is the crop's side over the output's. */
    struct invar_image in = img_new(2, n, n), out = img_out(2 * n * n);
    for (int64_t y = 0; y < n; y++)
        for (int64_t x = 0; x < n; x++)
            *px(&in, 0, y, x) = (float)x / 64.0f, *px(&in, 1, y, x) = (float)y / 64.0f;
    double sum = 0, lo = 1, hi = 0;
    const int draws = 300;
    for (int k = 0; k < draws; k++) {
        run(&p, (uint64_t)k, &in, &out);
        double bw = (*px(&out, 0, 32, 40) - *px(&out, 0, 32, 24)) * 64.0 * (double)n / 16.0;
        double bh = (*px(&out, 1, 40, 32) - *px(&out, 1, 24, 32)) * 64.0 * (double)n / 16.0;
        double frac = bw * bh / (double)(n * n);
        double aspect = bw / bh;
        /* Whole-pixel rounding of the sides moves the area by at most ~1%. */
        cr_assert(frac > 0.2 - 0.015 && frac < 0.6 + 0.015, "area fraction %g", frac);
        cr_assert(aspect > 0.75 - 0.03 && aspect < 4.0 / 3.0 + 0.03, "aspect %g", aspect);
        sum += frac, lo = fmin(lo, frac), hi = fmax(hi, frac);
    }
    cr_assert_float_eq(sum / draws, 0.4, 0.03);
    cr_assert(lo < 0.25 && hi > 0.55, "the draws do not span the range: %g..%g", lo, hi);
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, resized_crop_size_and_fallback)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "resized_crop");
    ph_set(&p, "size", "10");
    struct invar_image in = img_new(3, 20, 30), out = img_out(3 * 10 * 10);
    img_fill_random(&in, 1);
    int64_t shape[3];
    p.desc->ops.augment->out_shape(p.config, (int64_t[]){3, 20, 30}, shape);
    cr_assert(shape[0] == 3 && shape[1] == 10 && shape[2] == 10);
    run(&p, 3, &in, &out);
    cr_assert(out.c == 3 && out.h == 10 && out.w == 10);
    /* No box of area 100% and aspect 1 fits a 20 x 30 image: the fallback is the centred
     * 20 x 20 square (ratio clamped to 1), resized to 10 x 10 - each output pixel is the mean
     * of a 2 x 2 block, exactly what half-pixel bilinear sampling reads. */
    ph_set(&p, "scale", "[1, 1]");
    ph_set(&p, "ratio", "[1, 1]");
    run(&p, 4, &in, &out);
    for (int64_t c = 0; c < 3; c++)
        for (int64_t y = 0; y < 10; y++)
            for (int64_t x = 0; x < 10; x++) {
                float want = 0.25f * (*px(&in, c, 2 * y, 5 + 2 * x) +
                                      *px(&in, c, 2 * y, 6 + 2 * x) +
                                      *px(&in, c, 2 * y + 1, 5 + 2 * x) +
                                      *px(&in, c, 2 * y + 1, 6 + 2 * x));
                cr_assert_float_eq(*px(&out, c, y, x), want, 1e-6);
            }
    free(in.data), free(out.data);
    ph_close(&p);
}

/* The evaluations' resize (eval.knn.size): hand-computed values, and the bits resized_crop
 * gives for a box of the whole image, so the images kNN sees at the views' scale are the views'
 * own interpolation. */
Test(augment, image_resize_is_resized_crop_of_the_whole_image)
{
    /* Up 2 x 2 -> 4 x 4: sample positions -0.25, 0.25, 0.75, 1.25 clamped to [0, 1]. */
    const float up_in[4] = {0, 1, 2, 3};
    const float up_want[16] = {0,   0.25f, 0.75f, 1,    0.5f, 0.75f, 1.25f, 1.5f,
                               1.5f, 1.75f, 2.25f, 2.5f, 2,    2.25f, 2.75f, 3};
    float up[16];
    invar_image_resize(up_in, (int64_t[]){1, 2, 2}, up, 4, 4);
    for (int i = 0; i < 16; i++)
        cr_assert_float_eq(up[i], up_want[i], 1e-7, "up %d: %g, want %g", i, up[i], up_want[i]);
    /* Down 4 x 4 -> 2 x 2 (positions 0.5, 2.5): the mean of each 2 x 2 block; and a
     * non-square 4 x 4 -> 1 x 2 (rows at 1.5). */
    float down_in[16], down[4], wide[2];
    for (int i = 0; i < 16; i++)
        down_in[i] = (float)i;
    invar_image_resize(down_in, (int64_t[]){1, 4, 4}, down, 2, 2);
    cr_assert(down[0] == 2.5f && down[1] == 4.5f && down[2] == 10.5f && down[3] == 12.5f,
              "%g %g %g %g", down[0], down[1], down[2], down[3]);
    invar_image_resize(down_in, (int64_t[]){1, 4, 4}, wide, 1, 2);
    cr_assert(wide[0] == 6.5f && wide[1] == 8.5f, "%g %g", wide[0], wide[1]);
    /* Any size of a two-channel 28 x 28 image, against resized_crop's box of the whole image;
     * the image's own size copies it. */
    struct ph_plugin p;
    ph_open(&p, "augment", "resized_crop");
    ph_set(&p, "scale", "[1, 1]");
    ph_set(&p, "ratio", "[1, 1]");
    struct invar_image in = img_new(2, 28, 28), out = img_out(2 * 40 * 40);
    img_fill_random(&in, 7);
    float *mine = calloc(2 * 40 * 40, sizeof *mine);
    cr_assert_not_null(mine);
    const int64_t sizes[] = {7, 14, 18, 22, 27, 28, 35, 40};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char v[16];
        snprintf(v, sizeof v, "%lld", (long long)sizes[i]);
        ph_set(&p, "size", v);
        run(&p, i, &in, &out);
        cr_assert(out.h == sizes[i] && out.w == sizes[i]);
        invar_image_resize(in.data, (int64_t[]){2, 28, 28}, mine, sizes[i], sizes[i]);
        cr_assert(memcmp(mine, out.data, (size_t)(2 * sizes[i] * sizes[i]) * sizeof *mine) == 0,
                  "size %lld differs from resized_crop's", (long long)sizes[i]);
        if (sizes[i] == 28)
            cr_assert(memcmp(mine, in.data, (size_t)(2 * 28 * 28) * sizeof *mine) == 0);
    }
    free(mine), free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, zoom_magnifies_about_the_centre)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "zoom");
    ph_set(&p, "factor", "[2, 2]");
    struct invar_image in = img_new(1, 21, 21), out = img_out(21 * 21);
    for (int64_t y = 0; y < 21; y++)
        for (int64_t x = 0; x < 21; x++)
            *px(&in, 0, y, x) = (float)x / 20.0f;
    run(&p, 0, &in, &out);
    for (int64_t y = 0; y < 21; y++)
        for (int64_t x = 0; x < 21; x++)
            cr_assert_float_eq(*px(&out, 0, y, x), (10.0 + 0.5 * (double)(x - 10)) / 20.0, 1e-6);
    free(in.data), free(out.data);
    ph_close(&p);
}

/* ---- temporal ------------------------------------------------------------------------- */

Test(augment, time_shift_is_a_pure_shift)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "time_shift");
    ph_set(&p, "max_shift", "5");
    const int64_t t = 40;
    struct invar_image in = img_new(2, 1, t), out = img_out(2 * t);
    img_fill_random(&in, 11);
    int seen[11] = {0};
    for (int mode = 0; mode < 2; mode++) {
        ph_set(&p, "mode", mode == 0 ? "circular" : "zero");
        for (uint64_t key = 0; key < 300; key++) {
            run(&p, key, &in, &out);
            int found = 0;
            for (int k = -5; k <= 5 && !found; k++) {
                int ok = 1;
                for (int64_t c = 0; c < 2 && ok; c++)
                    for (int64_t i = 0; i < t && ok; i++) {
                        int64_t s = i - k;
                        float want = mode == 0 ? in.data[c * t + (s + t) % t]
                                               : (s >= 0 && s < t ? in.data[c * t + s] : 0.0f);
                        ok = out.data[c * t + i] == want;
                    }
                if (ok) {
                    found = 1;
                    seen[k + 5] += mode == 0;
                }
            }
            cr_assert(found, "mode %d key %llu: not a shift by at most 5", mode,
                      (unsigned long long)key);
        }
    }
    for (int k = 0; k < 11; k++)
        cr_assert_gt(seen[k], 5, "shift %d never drawn", k - 5);
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, time_crop_resamples_a_window)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "time_crop");
    ph_set(&p, "scale", "[0.5, 0.5]");
    const int64_t t = 40;
    struct invar_image in = img_new(1, 1, t), out = img_out(t);
    for (int64_t i = 0; i < t; i++)
        in.data[i] = (float)i;
    for (uint64_t key = 0; key < 20; key++) {
        run(&p, key, &in, &out);
        struct invar_rng r; /* range, then below(T - L + 1) */
        invar_rng_init(&r, SEED, key);
        (void)invar_rng_range(&r, 0.5f, 0.5f);
        float start = (float)invar_rng_below(&r, 21);
        /* A 20-step window stretched to 40: half a step per output step, clamped at the ends. */
        for (int64_t i = 0; i < t; i++) {
            double want = fmin(fmax(start + 0.5 * ((double)i + 0.5) - 0.5, start), start + 19);
            cr_assert_float_eq(out.data[i], want, 1e-5);
        }
    }
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, time_warp_is_monotone_and_keeps_the_ends)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "time_warp");
    ph_set(&p, "sigma", "0.8");
    const int64_t t = 60;
    struct invar_image in = img_new(1, 1, t), out = img_out(t);
    for (int64_t i = 0; i < t; i++)
        in.data[i] = (float)i;
    for (uint64_t key = 0; key < 50; key++) {
        run(&p, key, &in, &out);
        cr_assert_float_eq(out.data[0], 0.0f, 1e-4);
        cr_assert_float_eq(out.data[t - 1], (float)(t - 1), 1e-3);
        double maxdev = 0, maxjump = 0;
        for (int64_t i = 1; i < t; i++) {
            cr_assert_gt(out.data[i], out.data[i - 1], "not increasing at %lld", (long long)i);
            maxjump = fmax(maxjump, out.data[i] - out.data[i - 1]);
            maxdev = fmax(maxdev, fabs(out.data[i] - (float)i));
        }
        cr_assert_gt(maxdev, 0.1, "no warp at all");
        cr_assert_lt(maxjump, 12.0, "the warp tears the sequence");
    }
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, time_mask_zeroes_one_contiguous_span)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "time_mask");
    ph_set(&p, "width", "[0.1, 0.3]");
    const int64_t t = 50;
    struct invar_image in = img_new(3, 1, t), out = img_out(3 * t);
    for (int64_t i = 0; i < 3 * t; i++)
        in.data[i] = 0.5f + 0.001f * (float)i;
    for (uint64_t key = 0; key < 200; key++) {
        run(&p, key, &in, &out);
        int64_t first = -1, last = -1;
        for (int64_t i = 0; i < t; i++)
            if (out.data[i] == 0.0f) {
                first = first < 0 ? i : first;
                last = i;
            }
        cr_assert_geq(first, 0, "nothing masked");
        int64_t len = last - first + 1;
        cr_assert(len >= 5 && len <= 15, "span of %lld steps", (long long)len);
        for (int64_t c = 0; c < 3; c++)
            for (int64_t i = 0; i < t; i++) {
                float want = (i >= first && i <= last) ? 0.0f : in.data[c * t + i];
                cr_assert_eq(out.data[c * t + i], want);
            }
    }
    free(in.data), free(out.data);
    ph_close(&p);
}

/* ---- colour --------------------------------------------------------------------------- */

Test(augment, color_jitter_brightness_scales_and_contrast_keeps_the_mean)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "color_jitter");
    ph_set(&p, "contrast", "0");
    ph_set(&p, "brightness", "0.5");
    struct invar_image in = img_new(1, 12, 12), out = img_out(144);
    for (int64_t i = 0; i < 144; i++)
        in.data[i] = 0.2f + 0.4f * (float)i / 144.0f; /* x 1.5 stays below 1 */
    double fmin_ = 2, fmax_ = 0;
    for (uint64_t key = 0; key < 100; key++) {
        run(&p, key, &in, &out);
        double f = out.data[0] / in.data[0];
        for (int64_t i = 0; i < 144; i++)
            cr_assert_float_eq(out.data[i], f * in.data[i], 1e-5);
        fmin_ = fmin(fmin_, f), fmax_ = fmax(fmax_, f);
    }
    cr_assert(fmin_ >= 0.5 - 1e-6 && fmax_ <= 1.5 && fmin_ < 0.6 && fmax_ > 1.4);
    ph_set(&p, "brightness", "0");
    ph_set(&p, "contrast", "0.4");
    for (uint64_t key = 0; key < 100; key++) {
        run(&p, key, &in, &out);
        cr_assert_float_eq(img_mean(&out), img_mean(&in), 1e-5);
        double f = sqrt(img_var(&out) / img_var(&in));
        cr_assert(f >= 0.6 - 1e-4 && f <= 1.4 + 1e-4, "contrast factor %g", f);
    }
    free(in.data), free(out.data);
    ph_close(&p);
}

/* HSV hue in turns, written here independently of the plugin. */
static double hue_of(double r, double g, double b)
{
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn, h;
    if (d <= 0)
        return 0;
    if (mx == r)
        h = fmod((g - b) / d + 6.0, 6.0);
    else if (mx == g)
        h = (b - r) / d + 2.0;
    else
        h = (r - g) / d + 4.0;
    return h / 6.0;
}

Test(augment, color_jitter_hue_rotates_every_pixel_alike)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "color_jitter");
    ph_set(&p, "brightness", "0");
    ph_set(&p, "contrast", "0");
    ph_set(&p, "saturation", "0");
    ph_set(&p, "hue", "0.5");
    /* Colours all around the wheel with value 0.8 and saturation 0.75. */
    const int n = 12;
    struct invar_image in = img_new(3, 1, n), out = img_out(3 * n);
    double hue_in[12];
    for (int i = 0; i < n; i++) {
        double h = (i + 0.3) / n * 6.0, f = h - floor(h), v = 0.8, lo = 0.2;
        double q = v - (v - lo) * f, t = lo + (v - lo) * f, rgb[3];
        switch ((int)h) {
        case 0: rgb[0] = v, rgb[1] = t, rgb[2] = lo; break;
        case 1: rgb[0] = q, rgb[1] = v, rgb[2] = lo; break;
        case 2: rgb[0] = lo, rgb[1] = v, rgb[2] = t; break;
        case 3: rgb[0] = lo, rgb[1] = q, rgb[2] = v; break;
        case 4: rgb[0] = t, rgb[1] = lo, rgb[2] = v; break;
        default: rgb[0] = v, rgb[1] = lo, rgb[2] = q; break;
        }
        for (int c = 0; c < 3; c++)
            *px(&in, c, 0, i) = (float)rgb[c];
        hue_in[i] = hue_of(rgb[0], rgb[1], rgb[2]);
        cr_assert_float_eq(hue_in[i], (i + 0.3) / n, 1e-9);
    }
    int moved = 0;
    for (uint64_t key = 0; key < 40; key++) {
        run(&p, key, &in, &out);
        double shift0 = 0;
        for (int i = 0; i < n; i++) {
            double r = *px(&out, 0, 0, i), g = *px(&out, 1, 0, i), b = *px(&out, 2, 0, i);
            cr_assert_float_eq(fmax(r, fmax(g, b)), 0.8, 1e-5, "value changed");
            cr_assert_float_eq(fmin(r, fmin(g, b)), 0.2, 1e-5, "saturation changed");
            double s = hue_of(r, g, b) - hue_in[i];
            s -= floor(s);
            if (i == 0)
                shift0 = s;
            double d = fabs(s - shift0);
            cr_assert(fmin(d, 1.0 - d) < 1e-4, "pixel %d turned by %g, pixel 0 by %g", i, s,
                      shift0);
        }
        moved += shift0 > 0.01 && shift0 < 0.99;
    }
    cr_assert_gt(moved, 30);
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, grayscale_channels_equal_the_luma)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "grayscale");
    struct invar_image in = img_new(3, 7, 9), out = img_out(3 * 63);
    img_fill_random(&in, 4);
    run(&p, 0, &in, &out);
    cr_assert(out.c == 3);
    for (int64_t y = 0; y < 7; y++)
        for (int64_t x = 0; x < 9; x++) {
            float l = 0.299f * *px(&in, 0, y, x) + 0.587f * *px(&in, 1, y, x) +
                      0.114f * *px(&in, 2, y, x);
            for (int64_t c = 0; c < 3; c++)
                cr_assert_float_eq(*px(&out, c, y, x), l, 1e-6);
        }
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, solarize_inverts_above_the_threshold)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "solarize");
    ph_set(&p, "threshold", "0.5");
    struct invar_image in = img_new(1, 1, 256), out = img_out(256);
    for (int i = 0; i < 256; i++)
        in.data[i] = (float)i / 255.0f;
    run(&p, 0, &in, &out);
    for (int i = 0; i < 256; i++)
        cr_assert_eq(out.data[i], i >= 128 ? 1.0f - in.data[i] : in.data[i]);
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, invert_maps_x_to_one_minus_x)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "invert");
    struct invar_image in = img_new(2, 3, 4), out = img_out(24);
    img_fill_random(&in, 8);
    run(&p, 0, &in, &out);
    for (int i = 0; i < 24; i++)
        cr_assert_eq(out.data[i], 1.0f - in.data[i]);
    free(in.data), free(out.data);
    ph_close(&p);
}

/* ---- deformation ---------------------------------------------------------------------- */

Test(augment, elastic_keeps_a_constant_image_constant)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "elastic");
    ph_set(&p, "alpha", "60");
    static const int64_t sides[] = {28, 100}; /* per-pixel field, and the coarse-grid path */
    for (int s = 0; s < 2; s++) {
        int64_t n = sides[s];
        struct invar_image in = img_new(2, n, n), out = img_out(2 * n * n);
        for (int64_t i = 0; i < 2 * n * n; i++)
            in.data[i] = 0.625f;
        run(&p, 1, &in, &out);
        for (int64_t i = 0; i < 2 * n * n; i++)
            cr_assert_float_eq(out.data[i], 0.625f, 1e-6);
        /* The same field on a textured image does move pixels, by a few on average. */
        fill_smooth(&in);
        for (int64_t i = 0; i < n * n; i++)
            in.data[n * n + i] = in.data[i];
        run(&p, 1, &in, &out);
        double diff = 0;
        for (int64_t i = 0; i < n * n; i++) {
            diff += fabs(out.data[i] - in.data[i]);
            cr_assert_eq(out.data[i], out.data[n * n + i], "channels moved differently");
        }
        cr_assert_gt(diff / (double)(n * n), 0.01, "side %lld: nothing moved", (long long)n);
        free(in.data), free(out.data);
    }
    ph_close(&p);
}

Test(augment, affine_shear_keeps_the_centre_row)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "affine");
    ph_set(&p, "shear_x", "[20, 20]");
    struct invar_image in = img_new(1, 15, 15), out = img_out(225);
    img_fill_random(&in, 9);
    run(&p, 0, &in, &out);
    /* x' = x + tan(20 deg) y about the centre: row 7 (y = 0) is fixed, row 7 + d moves by
     * tan(20 deg) d pixels: a ramp in x shows the displacement directly. */
    for (int64_t x = 0; x < 15; x++)
        cr_assert_eq(*px(&out, 0, 7, x), *px(&in, 0, 7, x));
    for (int64_t y = 0; y < 15; y++)
        for (int64_t x = 0; x < 15; x++)
            *px(&in, 0, y, x) = (float)x / 64.0f;
    run(&p, 0, &in, &out);
    double t = tan(20.0 * 3.14159265358979323846 / 180.0);
    for (int64_t y = 0; y < 15; y++) {
        double shift = t * (double)(y - 7);
        double want = (7.0 - shift) / 64.0; /* output centre column samples x = 7 - shift */
        cr_assert_float_eq(*px(&out, 0, y, 7), want, 1e-5, "row %lld", (long long)y);
    }
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, perspective_takes_each_corner_to_its_drawn_place)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "perspective");
    ph_set(&p, "distortion", "0.8");
    const int64_t h = 20, w = 24;
    struct invar_image in = img_new(1, h, w), out = img_out(h * w);
    *px(&in, 0, 0, 0) = 0.25f, *px(&in, 0, 0, w - 1) = 0.5f;
    *px(&in, 0, h - 1, w - 1) = 0.75f, *px(&in, 0, h - 1, 0) = 1.0f;
    static const int dir[4][2] = {{1, 1}, {-1, 1}, {-1, -1}, {1, -1}};
    const int64_t corner[4][2] = {{0, 0}, {w - 1, 0}, {w - 1, h - 1}, {0, h - 1}};
    const float mark[4] = {0.25f, 0.5f, 0.75f, 1.0f};
    int64_t dw = (int64_t)(0.8 * (double)(w / 2)), dh = (int64_t)(0.8 * (double)(h / 2));
    for (uint64_t key = 0; key < 30; key++) {
        run(&p, key, &in, &out);
        struct invar_rng r; /* per corner: x then y, below(d + 1) inward */
        invar_rng_init(&r, SEED, key);
        for (int i = 0; i < 4; i++) {
            int64_t x = corner[i][0] + dir[i][0] * (int64_t)invar_rng_below(&r, (uint32_t)dw + 1);
            int64_t y = corner[i][1] + dir[i][1] * (int64_t)invar_rng_below(&r, (uint32_t)dh + 1);
            cr_assert_float_eq(*px(&out, 0, y, x), mark[i], 1e-5, "key %d corner %d at (%lld, %lld): %g", (int)key,
                               i, (long long)x, (long long)y, (double)*px(&out, 0, y, x));
        }
    }
    free(in.data), free(out.data);
    ph_close(&p);
}

/* ---- common --------------------------------------------------------------------------- */

Test(augment, flips_move_a_marked_pixel_to_its_mirror)
{
    struct ph_plugin hf, vf;
    ph_open(&hf, "augment", "hflip");
    ph_open(&vf, "augment", "vflip");
    struct invar_image in = img_new(2, 5, 8), out = img_out(80);
    *px(&in, 1, 1, 2) = 1.0f;
    run(&hf, 0, &in, &out);
    cr_assert_eq(*px(&out, 1, 1, 5), 1.0f);
    cr_assert_eq(img_mean(&out), img_mean(&in));
    run(&vf, 0, &in, &out);
    cr_assert_eq(*px(&out, 1, 3, 2), 1.0f);
    cr_assert_eq(img_mean(&out), img_mean(&in));
    free(in.data), free(out.data);
    ph_close(&hf), ph_close(&vf);
}

Test(augment, gaussian_blur_keeps_the_mean_and_lowers_the_variance)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "gaussian_blur");
    ph_set(&p, "sigma", "[0.5, 3]");
    struct invar_image in = img_new(3, 17, 23), out = img_out(3 * 17 * 23);
    for (int64_t i = 0; i < 3 * 17 * 23; i++)
        in.data[i] = 0.375f;
    run(&p, 0, &in, &out);
    for (int64_t i = 0; i < 3 * 17 * 23; i++)
        cr_assert_float_eq(out.data[i], 0.375f, 1e-6);
    img_fill_random(&in, 2);
    for (uint64_t key = 0; key < 10; key++) {
        run(&p, key, &in, &out);
        cr_assert_lt(img_var(&out), 0.5 * img_var(&in));
        cr_assert_float_eq(img_mean(&out), img_mean(&in), 0.02);
    }
    /* An impulse spreads into a symmetric, normalised bump. */
    ph_set(&p, "sigma", "[1, 1]");
    memset(in.data, 0, sizeof(float) * 3 * 17 * 23);
    *px(&in, 0, 8, 11) = 1.0f;
    run(&p, 0, &in, &out);
    cr_assert_float_eq(img_mean(&out) * 3 * 17 * 23, 1.0, 1e-5);
    cr_assert_float_eq(*px(&out, 0, 8, 10), *px(&out, 0, 8, 12), 1e-7);
    cr_assert_float_eq(*px(&out, 0, 7, 11), *px(&out, 0, 9, 11), 1e-7);
    /* Ratio of neighbours is exp(-1/2) for sigma 1. */
    cr_assert_float_eq(*px(&out, 0, 8, 12) / *px(&out, 0, 8, 11), exp(-0.5), 1e-5);
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, gaussian_noise_has_the_requested_std)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "gaussian_noise");
    ph_set(&p, "std", "0.1");
    ph_set(&p, "clamp", "false");
    struct invar_image in = img_new(1, 64, 64), out = img_out(4096);
    for (int64_t i = 0; i < 4096; i++)
        in.data[i] = 0.5f;
    run(&p, 0, &in, &out);
    /* 4096 samples: the std estimate is within 3% at 3 sigma (sd of sd = std / sqrt(2n)). */
    cr_assert_float_eq(sqrt(img_var(&out)), 0.1, 0.005);
    cr_assert_float_eq(img_mean(&out), 0.5, 0.006);
    free(in.data), free(out.data);
    ph_close(&p);
}

Test(augment, erase_changes_one_rectangle_within_the_scale_range)
{
    struct ph_plugin p;
    ph_open(&p, "augment", "erase");
    ph_set(&p, "scale", "[0.05, 0.3]");
    const int64_t h = 48, w = 64;
    struct invar_image in = img_new(3, h, w), out = img_out(3 * h * w);
    for (int64_t i = 0; i < 3 * h * w; i++)
        in.data[i] = 0.1f + 0.8f * (float)(i % 97) / 97.0f;
    double sum = 0;
    for (uint64_t key = 0; key < 200; key++) {
        run(&p, key, &in, &out);
        int64_t y0 = h, y1 = -1, x0 = w, x1 = -1, changed = 0;
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                if (*px(&out, 0, y, x) != *px(&in, 0, y, x)) {
                    changed++;
                    y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                    x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                }
        cr_assert_gt(changed, 0);
        cr_assert_eq(changed, (y1 - y0 + 1) * (x1 - x0 + 1), "not one rectangle");
        for (int64_t c = 0; c < 3; c++)
            for (int64_t y = 0; y < h; y++)
                for (int64_t x = 0; x < w; x++) {
                    int inside = y >= y0 && y <= y1 && x >= x0 && x <= x1;
                    cr_assert_eq(*px(&out, c, y, x), inside ? 0.0f : *px(&in, c, y, x));
                }
        double frac = (double)changed / (double)(h * w);
        cr_assert(frac > 0.05 - 0.01 && frac < 0.3 + 0.01, "area fraction %g", frac);
        sum += frac;
    }
    cr_assert_float_eq(sum / 200, 0.175, 0.03);
    free(in.data), free(out.data);
    ph_close(&p);
}
