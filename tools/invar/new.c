/* invar new KIND NAME [--dir D]: scaffold an out-of-tree plugin that builds against invar.pc.
 *
 * Writes D/NAME.c (descriptor, parameter table and a small working body for the kind),
 * D/meson.build (finds the SDK with dependency('invar'), installs into its pluginsdir) and
 * D/test_NAME.c (a Criterion test of the body). "@NAME@" in the templates becomes NAME. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* ---- NAME.c per kind --------------------------------------------------------------------- */

static const char augment_src[] =
    "/* @NAME@ - an invar augmentation: adds one random offset in [-amount, amount] to every\n"
    " * value of the image and clamps the result to [0, 1] (a brightness shift). */\n"
    "#include <invar/plugin.h>\n"
    "\n"
    "struct @NAME@_config {\n"
    "    double amount;\n"
    "};\n"
    "\n"
    "static const struct invar_param_spec @NAME@_params[] = {\n"
    "    INVAR_PARAM_FLOAT(struct @NAME@_config, amount, \"0.2\", 0, 1, \"largest offset\"),\n"
    "    INVAR_PARAM_END,\n"
    "};\n"
    "\n"
    "/* Pure and thread-safe: every random draw comes from rng, keyed by the framework. */\n"
    "static void @NAME@_apply(const void *config, struct invar_rng *rng,\n"
    "                         const struct invar_image *in, struct invar_image *out)\n"
    "{\n"
    "    const struct @NAME@_config *c = config;\n"
    "    float delta = invar_rng_range(rng, (float)-c->amount, (float)c->amount);\n"
    "    out->c = in->c, out->h = in->h, out->w = in->w;\n"
    "    for (int64_t i = 0; i < invar_image_numel(in); i++) {\n"
    "        float v = in->data[i] + delta;\n"
    "        out->data[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;\n"
    "    }\n"
    "}\n"
    "\n"
    "static const struct invar_augment_ops @NAME@_ops = {\n"
    "    .flags = INVAR_AUG_IMAGES | INVAR_AUG_SEQUENCES,\n"
    "    .apply = @NAME@_apply,\n"
    "};\n"
    "\n"
    "INVAR_PLUGIN_DEFINE(invar_augment, \"@NAME@\", \"0.1.0\", \"colour: random brightness "
    "shift\",\n"
    "                    struct @NAME@_config, @NAME@_params, @NAME@_ops)\n";

static const char dataset_src[] =
    "/* @NAME@ - an invar dataset: procedural 16x16 images of one bright horizontal bar whose\n"
    " * row is the class, with a little deterministic noise. Nothing to download. */\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "\n"
    "#include <invar/plugin.h>\n"
    "\n"
    "#define SIDE 16\n"
    "\n"
    "struct @NAME@_config {\n"
    "    int64_t count;   /* training samples; the test split has a fifth as many */\n"
    "    int64_t classes;\n"
    "};\n"
    "\n"
    "static const struct invar_param_spec @NAME@_params[] = {\n"
    "    INVAR_PARAM_INT(struct @NAME@_config, count, \"2000\", 1, 1e7, \"training samples\"),\n"
    "    INVAR_PARAM_INT(struct @NAME@_config, classes, \"8\", 1, SIDE, \"classes (bar rows)\"),\n"
    "    INVAR_PARAM_END,\n"
    "};\n"
    "\n"
    "struct @NAME@_split {\n"
    "    int64_t classes;\n"
    "    uint64_t key; /* differs between splits */\n"
    "};\n"
    "\n"
    "static enum invar_status @NAME@_open(const void *config, const char *split, void **handle,\n"
    "                                     struct invar_dataset_info *info,\n"
    "                                     struct invar_error *err)\n"
    "{\n"
    "    const struct @NAME@_config *c = config;\n"
    "    int test = !strcmp(split, \"test\");\n"
    "    if (!test && strcmp(split, \"train\") != 0)\n"
    "        return invar_error_set(err, INVAR_ERR_INVALID, \"@NAME@: no split `%s`\", split);\n"
    "    struct @NAME@_split *s = malloc(sizeof *s);\n"
    "    if (!s)\n"
    "        return invar_error_set(err, INVAR_ERR_NOMEM, \"@NAME@: out of memory\");\n"
    "    s->classes = c->classes;\n"
    "    s->key = test ? 2 : 1;\n"
    "    *info = (struct invar_dataset_info){\n"
    "        .count = test ? (c->count + 4) / 5 : c->count,\n"
    "        .shape = {1, SIDE, SIDE},\n"
    "        .num_classes = (int32_t)c->classes,\n"
    "    };\n"
    "    *handle = s;\n"
    "    return INVAR_OK;\n"
    "}\n"
    "\n"
    "/* Safe from several threads: reads only the handle and the RNG keyed by the index. */\n"
    "static enum invar_status @NAME@_read(void *handle, int64_t index, float *out, int32_t "
    "*label,\n"
    "                                     struct invar_error *err)\n"
    "{\n"
    "    (void)err;\n"
    "    const struct @NAME@_split *s = handle;\n"
    "    int32_t y = (int32_t)(index % s->classes);\n"
    "    int64_t row = y * SIDE / s->classes;\n"
    "    struct invar_rng rng;\n"
    "    invar_rng_init(&rng, s->key, (uint64_t)index);\n"
    "    for (int64_t i = 0; i < SIDE * SIDE; i++)\n"
    "        out[i] = (i / SIDE == row ? 0.8f : 0.0f) + 0.2f * invar_rng_uniform(&rng);\n"
    "    *label = y;\n"
    "    return INVAR_OK;\n"
    "}\n"
    "\n"
    "static void @NAME@_close(void *handle) { free(handle); }\n"
    "\n"
    "static const struct invar_dataset_ops @NAME@_ops = {\n"
    "    .open = @NAME@_open,\n"
    "    .read = @NAME@_read,\n"
    "    .close = @NAME@_close,\n"
    "};\n"
    "\n"
    "INVAR_PLUGIN_DEFINE(invar_dataset, \"@NAME@\", \"0.1.0\", \"procedural bars, class = row\",\n"
    "                    struct @NAME@_config, @NAME@_params, @NAME@_ops)\n";

static const char encoder_src[] =
    "/* @NAME@ - an invar encoder: flattens the input and applies one linear layer to `dim`. */\n"
    "#include <stdlib.h>\n"
    "\n"
    "#include <invar/plugin.h>\n"
    "\n"
    "struct @NAME@_config {\n"
    "    int64_t dim;\n"
    "};\n"
    "\n"
    "static const struct invar_param_spec @NAME@_params[] = {\n"
    "    INVAR_PARAM_INT(struct @NAME@_config, dim, \"64\", 1, 65536, \"output feature size\"),\n"
    "    INVAR_PARAM_END,\n"
    "};\n"
    "\n"
    "struct @NAME@ {\n"
    "    int64_t in_features;\n"
    "    struct invar_tensor *w; /* (dim, in_features) */\n"
    "    struct invar_tensor *b; /* (dim) */\n"
    "};\n"
    "\n"
    "static enum invar_status @NAME@_create(const void *config, const int64_t in_shape[3],\n"
    "                                       struct invar_params *params, void **self,\n"
    "                                       int64_t *out_dim, struct invar_error *err)\n"
    "{\n"
    "    const struct @NAME@_config *c = config;\n"
    "    struct @NAME@ *m = malloc(sizeof *m);\n"
    "    if (!m)\n"
    "        return invar_error_set(err, INVAR_ERR_NOMEM, \"@NAME@: out of memory\");\n"
    "    m->in_features = in_shape[0] * in_shape[1] * in_shape[2];\n"
    "    /* Declared here, allocated and initialised by the framework after create returns. */\n"
    "    m->w = invar_params_add(params, \"w\", 2, (int64_t[]){c->dim, m->in_features},\n"
    "                            invar_init_kaiming_uniform((double)m->in_features), 0);\n"
    "    m->b = invar_params_add(params, \"b\", 1, (int64_t[]){c->dim}, invar_init_zeros(),\n"
    "                            INVAR_P_NO_DECAY);\n"
    "    *out_dim = c->dim;\n"
    "    *self = m;\n"
    "    return INVAR_OK;\n"
    "}\n"
    "\n"
    "static struct invar_tensor *@NAME@_forward(void *self, struct invar_graph *g,\n"
    "                                           struct invar_tensor *x)\n"
    "{\n"
    "    struct @NAME@ *m = self;\n"
    "    x = invar_reshape(g, x, 2, (int64_t[]){x->shape[0], m->in_features}); /* (N, C*H*W) */\n"
    "    return invar_linear(g, x, m->w, m->b);                                 /* (N, dim) */\n"
    "}\n"
    "\n"
    "static void @NAME@_destroy(void *self) { free(self); }\n"
    "\n"
    "static const struct invar_encoder_ops @NAME@_ops = {\n"
    "    .create = @NAME@_create,\n"
    "    .forward = @NAME@_forward,\n"
    "    .destroy = @NAME@_destroy,\n"
    "};\n"
    "\n"
    "INVAR_PLUGIN_DEFINE(invar_encoder, \"@NAME@\", \"0.1.0\", \"one linear layer on flat "
    "inputs\",\n"
    "                    struct @NAME@_config, @NAME@_params, @NAME@_ops)\n";

static const char objective_src[] =
    "/* @NAME@ - an invar objective: pulls the two views of each sample together,\n"
    " * loss = weight * (1 - mean_i cos(f(view0_i), f(view1_i))). Alone it can collapse (nothing\n"
    " * pushes samples apart); it shows the shape of an objective, add negatives to taste. */\n"
    "#include <stdlib.h>\n"
    "\n"
    "#include <invar/plugin.h>\n"
    "\n"
    "struct @NAME@_config {\n"
    "    double weight;\n"
    "};\n"
    "\n"
    "static const struct invar_param_spec @NAME@_params[] = {\n"
    "    INVAR_PARAM_FLOAT(struct @NAME@_config, weight, \"1.0\", 0, 1e6, \"loss scale\"),\n"
    "    INVAR_PARAM_END,\n"
    "};\n"
    "\n"
    "struct @NAME@ {\n"
    "    struct invar_encoder *online;\n"
    "    double weight;\n"
    "};\n"
    "\n"
    "/* The loss on features za, zb (B, D): a scalar. Separate from the encoder so a test can\n"
    " * feed it hand-made features. */\n"
    "static struct invar_tensor *@NAME@_loss_of(struct invar_graph *g, struct invar_tensor *za,\n"
    "                                           struct invar_tensor *zb, double weight)\n"
    "{\n"
    "    struct invar_tensor *cos = invar_cosine_similarity(g, za, zb, 1e-8f); /* (B) */\n"
    "    return invar_scale(g, invar_mean(g, cos), (float)-weight, (float)weight);\n"
    "}\n"
    "\n"
    "static enum invar_status @NAME@_create(const void *config, struct invar_objective_ctx *ctx,\n"
    "                                       void **self, struct invar_error *err)\n"
    "{\n"
    "    const struct @NAME@_config *c = config;\n"
    "    if (ctx->n_views < 2)\n"
    "        return invar_error_set(err, INVAR_ERR_CONFIG, \"@NAME@: needs two views, got %lld\",\n"
    "                               (long long)ctx->n_views);\n"
    "    struct @NAME@ *o = malloc(sizeof *o);\n"
    "    if (!o)\n"
    "        return invar_error_set(err, INVAR_ERR_NOMEM, \"@NAME@: out of memory\");\n"
    "    o->online = ctx->online;\n"
    "    o->weight = c->weight;\n"
    "    *self = o;\n"
    "    return INVAR_OK;\n"
    "}\n"
    "\n"
    "static struct invar_tensor *@NAME@_loss(void *self, struct invar_graph *g,\n"
    "                                        struct invar_tensor **views, int64_t n_views,\n"
    "                                        const int64_t *indices,\n"
    "                                        const struct invar_step_info *info)\n"
    "{\n"
    "    (void)n_views, (void)indices, (void)info;\n"
    "    struct @NAME@ *o = self;\n"
    "    struct invar_tensor *za = invar_encoder_forward(o->online, g, views[0]); /* (B, D) */\n"
    "    struct invar_tensor *zb = invar_encoder_forward(o->online, g, views[1]); /* (B, D) */\n"
    "    return @NAME@_loss_of(g, za, zb, o->weight);\n"
    "}\n"
    "\n"
    "static void @NAME@_destroy(void *self) { free(self); }\n"
    "\n"
    "static const struct invar_objective_ops @NAME@_ops = {\n"
    "    .create = @NAME@_create,\n"
    "    .loss = @NAME@_loss,\n"
    "    .destroy = @NAME@_destroy,\n"
    "};\n"
    "\n"
    "INVAR_PLUGIN_DEFINE(invar_objective, \"@NAME@\", \"0.1.0\", \"cosine alignment of two "
    "views\",\n"
    "                    struct @NAME@_config, @NAME@_params, @NAME@_ops)\n";

/* ---- test_NAME.c per kind: each checks its body on numbers worked out by hand -------------- */

static const char test_head[] =
    "/* Tests of the @NAME@ plugin: its source is compiled in, the SDK does the rest. */\n"
    "#include <criterion/criterion.h>\n"
    "#include <math.h>\n"
    "#include <stdlib.h>\n"
    "\n"
    "#include <invar/invar.h>\n"
    "\n"
    "#include \"@NAME@.c\"\n"
    "\n"
    "static const struct invar_plugin *desc(void) { return invar_plugin_entry()[0]; }\n"
    "\n"
    "Test(@NAME@, descriptor_and_defaults)\n"
    "{\n"
    "    struct invar_error err = {{0}};\n"
    "    cr_assert_eq(desc()->abi_version, INVAR_ABI_VERSION);\n"
    "    cr_assert_str_eq(desc()->name, \"@NAME@\");\n"
    "    cr_assert_eq(invar_param_check_table(desc()->params, desc()->config_size, &err), "
    "INVAR_OK,\n"
    "                 \"%s\", err.msg);\n"
    "}\n"
    "\n";

static const char augment_test[] =
    "Test(@NAME@, zero_amount_is_identity_and_range_holds)\n"
    "{\n"
    "    float in[12], out[12];\n"
    "    for (int i = 0; i < 12; i++)\n"
    "        in[i] = (float)i / 11.0f;\n"
    "    struct invar_image a = {in, 1, 3, 4}, b = {out, 0, 0, 0};\n"
    "    struct invar_rng rng;\n"
    "    invar_rng_init(&rng, 1, 2);\n"
    "    struct @NAME@_config c = {0.0};\n"
    "    @NAME@_apply(&c, &rng, &a, &b);\n"
    "    cr_assert(b.c == 1 && b.h == 3 && b.w == 4);\n"
    "    for (int i = 0; i < 12; i++)\n"
    "        cr_assert_eq(out[i], in[i]);\n"
    "    c.amount = 0.5;\n"
    "    for (int draw = 0; draw < 50; draw++) {\n"
    "        @NAME@_apply(&c, &rng, &a, &b);\n"
    "        /* One offset for the whole image: every unclamped value moved by the same d,\n"
    "         * and a clamped one would have left [0, 1] by that d. */\n"
    "        float d = NAN;\n"
    "        for (int i = 0; i < 12; i++)\n"
    "            if (out[i] > 0.0f && out[i] < 1.0f && isnan(d))\n"
    "                d = out[i] - in[i];\n"
    "        cr_assert(fabsf(d) <= 0.5f + 1e-6f); /* 0 < in[i] + d < 1 for some i */\n"
    "        for (int i = 0; i < 12; i++) {\n"
    "            if (out[i] > 0.0f && out[i] < 1.0f)\n"
    "                cr_assert_float_eq(out[i] - in[i], d, 1e-6);\n"
    "            else\n"
    "                cr_assert(out[i] == 0.0f ? in[i] + d <= 1e-6f : in[i] + d >= 1.0f - 1e-6f);\n"
    "        }\n"
    "    }\n"
    "}\n";

static const char dataset_test[] =
    "Test(@NAME@, splits_labels_and_images)\n"
    "{\n"
    "    struct invar_error err = {{0}};\n"
    "    struct @NAME@_config c = {10, 4};\n"
    "    struct invar_dataset_info info;\n"
    "    void *h;\n"
    "    cr_assert_eq(@NAME@_open(&c, \"test\", &h, &info, &err), INVAR_OK, \"%s\", err.msg);\n"
    "    cr_assert_eq(info.count, 2);\n"
    "    @NAME@_close(h);\n"
    "    cr_assert_eq(@NAME@_open(&c, \"train\", &h, &info, &err), INVAR_OK, \"%s\", err.msg);\n"
    "    cr_assert(info.count == 10 && info.num_classes == 4 && info.shape[1] == 16);\n"
    "    float img[256];\n"
    "    int32_t y;\n"
    "    cr_assert_eq(@NAME@_read(h, 6, img, &y, &err), INVAR_OK);\n"
    "    cr_assert_eq(y, 2); /* 6 mod 4 */\n"
    "    for (int i = 0; i < 256; i++) /* the bar is row 2 * 16 / 4 = 8 */\n"
    "        cr_assert(i / 16 == 8 ? img[i] >= 0.8f : img[i] < 0.2f + 1e-6f);\n"
    "    @NAME@_close(h);\n"
    "    cr_assert_eq(@NAME@_open(&c, \"valid\", &h, &info, &err), INVAR_ERR_INVALID);\n"
    "}\n";

static const char encoder_test[] =
    "Test(@NAME@, forward_is_w_x_plus_b)\n"
    "{\n"
    "    struct invar_error err = {{0}};\n"
    "    struct @NAME@_config c = {3};\n"
    "    struct invar_params *p = invar_params_create();\n"
    "    void *self;\n"
    "    int64_t dim;\n"
    "    cr_assert_eq(@NAME@_create(&c, (int64_t[]){1, 2, 2}, p, &self, &dim, &err), INVAR_OK);\n"
    "    cr_assert_eq(dim, 3);\n"
    "    cr_assert_eq(invar_params_finalize(p, 7, &err), INVAR_OK, \"%s\", err.msg);\n"
    "    struct @NAME@ *m = self;\n"
    "    for (int i = 0; i < 12; i++)\n"
    "        m->w->data[i] = (float)(i % 5) - 2.0f;\n"
    "    for (int i = 0; i < 3; i++)\n"
    "        m->b->data[i] = (float)i;\n"
    "    struct invar_graph *g = invar_graph_create(1 << 20);\n"
    "    struct invar_tensor *x = invar_graph_tensor(g, 4, (int64_t[]){1, 1, 2, 2});\n"
    "    for (int i = 0; i < 4; i++)\n"
    "        x->data[i] = (float)(i + 1);\n"
    "    struct invar_tensor *y = @NAME@_forward(self, g, x);\n"
    "    cr_assert(y->shape[0] == 1 && y->shape[1] == 3);\n"
    "    /* w rows: (-2,-1,0,1), (2,-2,-1,0), (1,2,-2,-1); x = (1,2,3,4); b = (0,1,2) */\n"
    "    cr_assert_float_eq(y->data[0], 0.0f, 1e-5);\n"
    "    cr_assert_float_eq(y->data[1], -4.0f, 1e-5);\n"
    "    cr_assert_float_eq(y->data[2], -3.0f, 1e-5);\n"
    "    invar_graph_destroy(g);\n"
    "    @NAME@_destroy(self);\n"
    "    invar_params_destroy(p);\n"
    "}\n";

static const char objective_test[] =
    "Test(@NAME@, loss_of_aligned_and_orthogonal_features)\n"
    "{\n"
    "    struct invar_graph *g = invar_graph_create(1 << 20);\n"
    "    struct invar_tensor *a = invar_graph_tensor(g, 2, (int64_t[]){2, 2});\n"
    "    struct invar_tensor *b = invar_graph_tensor(g, 2, (int64_t[]){2, 2});\n"
    "    /* row 0: same direction (cos 1); row 1: orthogonal (cos 0) */\n"
    "    float av[4] = {1, 0, 0, 3}, bv[4] = {2, 0, 5, 0};\n"
    "    for (int i = 0; i < 4; i++)\n"
    "        a->data[i] = av[i], b->data[i] = bv[i];\n"
    "    struct invar_tensor *l = @NAME@_loss_of(g, a, b, 2.0);\n"
    "    cr_assert_float_eq(l->data[0], 1.0f, 1e-5); /* 2 * (1 - (1 + 0) / 2) */\n"
    "    invar_graph_destroy(g);\n"
    "}\n";

static const char meson_src[] =
    "# The @NAME@ invar plugin, built against an installed invar (pkg-config: invar).\n"
    "project('@NAME@', 'c', version : '0.1.0',\n"
    "  default_options : ['c_std=c11', 'warning_level=3'])\n"
    "\n"
    "invar = dependency('invar')\n"
    "pluginsdir = invar.get_variable(pkgconfig : 'pluginsdir')\n"
    "\n"
    "# NAME.so, no lib prefix: the loader registers every *.so it finds.\n"
    "shared_module('@NAME@', '@NAME@.c',\n"
    "  name_prefix : '',\n"
    "  name_suffix : 'so',\n"
    "  dependencies : invar,\n"
    "  gnu_symbol_visibility : 'hidden',\n"
    "  install : true,\n"
    "  install_dir : pluginsdir)\n"
    "\n"
    "criterion = dependency('criterion', required : false)\n"
    "if criterion.found()\n"
    "  m = meson.get_compiler('c').find_library('m')\n"
    "  test('@NAME@', executable('test_@NAME@', 'test_@NAME@.c',\n"
    "    dependencies : [invar, criterion, m]))\n"
    "endif\n";

struct kind_templates {
    const char *kind;
    const char *src, *test;
};

static const struct kind_templates templates[] = {
    {"dataset", dataset_src, dataset_test},
    {"augment", augment_src, augment_test},
    {"encoder", encoder_src, encoder_test},
    {"objective", objective_src, objective_test},
    {NULL, NULL, NULL},
};

/* Writes the templates to path with every "@NAME@" replaced by name. */
static int write_template(const char *path, const char *const *parts, const char *name)
{
    FILE *f = fopen(path, "wx"); /* never overwrite someone's work */
    if (!f) {
        cli_error("new: %s: %s", path, strerror(errno));
        return 1;
    }
    for (; *parts; parts++)
        for (const char *p = *parts; *p;) {
            const char *at = strstr(p, "@NAME@");
            size_t n = at ? (size_t)(at - p) : strlen(p);
            fwrite(p, 1, n, f);
            if (!at)
                break;
            fputs(name, f);
            p = at + 6;
        }
    if (ferror(f) | (fclose(f) != 0)) {
        cli_error("new: %s: write failed", path);
        return 1;
    }
    return 0;
}

int cmd_new(const struct cli_globals *g, int argc, char **argv)
{
    (void)g;
    const char *kind = NULL, *name = NULL, *dir = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (argv[i][0] != '-' && !kind)
            kind = argv[i];
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else {
            cli_error("new: unexpected argument `%s` (see `invar new --help`)", argv[i]);
            return 2;
        }
    }
    if (!kind || !name) {
        cli_error("new: usage: invar new KIND NAME [--dir D]");
        return 2;
    }
    uint32_t k = invar_plugin_kind_parse(kind);
    const struct kind_templates *t = NULL;
    for (const struct kind_templates *e = templates; e->kind; e++)
        if (k && k == invar_plugin_kind_parse(e->kind))
            t = e;
    if (!t) {
        cli_error("new: unknown kind `%s` (dataset, augment, encoder or objective)", kind);
        return 2;
    }
    size_t len = strlen(name);
    int ok = len > 0 && len < 64 && name[0] >= 'a' && name[0] <= 'z';
    for (size_t i = 0; ok && i < len; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
             name[i] == '_';
    if (!ok) {
        cli_error("new: `%s`: a plugin name is [a-z][a-z0-9_]*, under 64 characters", name);
        return 2;
    }
    char dbuf[4096], path[4200];
    if (!dir) {
        snprintf(dbuf, sizeof dbuf, "%s", name);
        dir = dbuf;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        cli_error("new: %s: %s", dir, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s.c", dir, name);
    if (write_template(path, (const char *[]){t->src, NULL}, name))
        return 1;
    snprintf(path, sizeof path, "%s/test_%s.c", dir, name);
    if (write_template(path, (const char *[]){test_head, t->test, NULL}, name))
        return 1;
    snprintf(path, sizeof path, "%s/meson.build", dir);
    if (write_template(path, (const char *[]){meson_src, NULL}, name))
        return 1;
    printf("%s/%s.c\n%s/test_%s.c\n%s/meson.build\n", dir, name, dir, name, dir);
    fprintf(stderr,
            "build: PKG_CONFIG_PATH=<prefix>/lib/<arch>/pkgconfig meson setup %s/build %s && "
            "meson compile -C %s/build && meson test -C %s/build\n",
            dir, dir, dir, dir);
    return 0;
}
