/* The plugin loader and registry (with the broken plugins of tests/fixtures/), the search
 * path and shadowing, and the parameter-table machinery: defaults, typing, ranges, format. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "invar/registry.h"
#include "invar_build_config.h"

/* Mirrors struct fixture_config of tests/fixtures/fixture.c. */
struct fixture_config {
    int flip;
    int64_t epochs;
    double lr;
    char path[INVAR_STR_MAX];
    int loss;
    double scale[2];
};

static const struct invar_param_spec table[] = {
    INVAR_PARAM_BOOL(struct fixture_config, flip, "false", "mirror"),
    INVAR_PARAM_INT(struct fixture_config, epochs, "10", 1, 1000, "passes"),
    INVAR_PARAM_FLOAT(struct fixture_config, lr, "1e-3", 0, 10, "learning rate"),
    INVAR_PARAM_STRING(struct fixture_config, path, "", "data"),
    INVAR_PARAM_ENUM(struct fixture_config, loss, "nce", "nonparametric|nce|parametric", "nce"),
    INVAR_PARAM_RANGE(struct fixture_config, scale, "[0.2, 1.0]", 0, 1, "crop area"),
    INVAR_PARAM_END,
};

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *fixture(const char *name)
{
    static char bufs[8][PATH_MAX];
    static int next;
    const char *root = getenv("INVAR_BUILD_ROOT");
    cr_assert(root && root[0], "INVAR_BUILD_ROOT must point at the build tree");
    char *b = bufs[next++ % 8];
    snprintf(b, PATH_MAX, "%s/tests/fixtures/fixture_%s.so", root, name);
    return b;
}

static int is_loaded(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h)
        dlclose(h);
    return h != NULL;
}

static char tmp_root[256];

/* A fresh directory under /tmp with symlinks "link" -> fixture "name", pairs ending in NULL. */
static const char *make_dir(const char *sub, ...)
{
    static char bufs[8][PATH_MAX];
    static int next;
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/invar_test_plugin_XXXXXX");
        cr_assert_not_null(mkdtemp(tmp_root));
    }
    char *dir = bufs[next++ % 8];
    snprintf(dir, PATH_MAX, "%s/%s", tmp_root, sub);
    /* mkdir -p */
    for (char *p = dir + strlen(tmp_root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    mkdir(dir, 0700);
    va_list ap;
    va_start(ap, sub);
    const char *link;
    while ((link = va_arg(ap, const char *)) != NULL) {
        const char *name = va_arg(ap, const char *);
        char lp[PATH_MAX];
        snprintf(lp, sizeof lp, "%.2048s/%.1024s", dir, link);
        cr_assert_eq(symlink(fixture(name), lp), 0, "symlink %s", lp);
    }
    va_end(ap);
    return dir;
}

static void rm_tree(void)
{
    if (tmp_root[0]) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        cr_assert_eq(system(cmd), 0);
        tmp_root[0] = '\0';
    }
}

static struct invar_registry *new_registry(void)
{
    struct invar_registry *reg = NULL;
    cr_assert_eq(invar_registry_create(&reg), INVAR_OK);
    return reg;
}

/* Loading fixture fx is refused with a message naming the file and every needle; the file
 * is unloaded and the registry goes on working. */
static void expect_refusal(const char *fx, const char *const *needles)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    const char *path = fixture(fx);
    cr_assert_eq(invar_registry_load_file(reg, path, &err), INVAR_ERR_PLUGIN, "%s was not refused",
                 fx);
    cr_assert_not_null(strstr(err.msg, path), "message does not name the file: %s", err.msg);
    for (; *needles; needles++)
        cr_assert_not_null(strstr(err.msg, *needles), "message lacks '%s': %s", *needles, err.msg);
    cr_assert_eq(invar_registry_count(reg), 0);
    cr_assert(!is_loaded(path), "a refused plugin stays loaded: %s", path);
    cr_assert_eq(invar_registry_load_file(reg, fixture("good"), &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_registry_count(reg), 1);
    invar_registry_destroy(reg);
}

#define REFUSES(fx, ...) expect_refusal(fx, (const char *const[]){__VA_ARGS__, NULL})

/* ---- loading ------------------------------------------------------------------------------ */

Test(plugin, loads_a_good_plugin_and_unloads_it)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    const char *path = fixture("good");
    cr_assert_eq(invar_registry_load_file(reg, path, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_registry_count(reg), 1);
    const struct invar_registry_entry *e =
        invar_registry_find(reg, INVAR_KIND_AUGMENT, "fixture_good");
    cr_assert_not_null(e);
    cr_assert_eq(e, invar_registry_at(reg, 0));
    cr_assert_eq(invar_registry_find(reg, 0, "fixture_good"), e);
    cr_assert_null(invar_registry_find(reg, INVAR_KIND_DATASET, "fixture_good"));
    cr_assert_null(invar_registry_find(reg, 0, "fixture_gone"));
    cr_assert_null(invar_registry_at(reg, 1));
    cr_assert_str_eq(e->path, path);
    cr_assert_str_eq(e->desc->version, "1.0.0");
    cr_assert_str_eq(e->desc->summary, "test plugin: scales pixels by lr");
    cr_assert_eq(invar_param_count(e->desc->params), 6);
    /* The same file again (same real path) is a no-op, not a duplicate. */
    cr_assert_eq(invar_registry_load_file(reg, path, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_registry_count(reg), 1);
    cr_assert(is_loaded(path));
    invar_registry_destroy(reg);
    cr_assert(!is_loaded(path), "destroy must dlclose");
    invar_registry_destroy(NULL);
}

Test(plugin, loads_a_plugin_written_with_the_define_macro)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_load_file(reg, fixture("macro"), &err), INVAR_OK, "%s", err.msg);
    const struct invar_registry_entry *e =
        invar_registry_find(reg, INVAR_KIND_AUGMENT, "fixture_invert");
    cr_assert_not_null(e);
    const struct invar_plugin *d = e->desc;
    cr_assert_eq(d->abi_version, INVAR_ABI_VERSION);
    cr_assert_eq(d->struct_size, sizeof(struct invar_plugin));
    cr_assert_eq(d->config_size, sizeof(double));
    cr_assert_null(d->init);
    void *cfg = NULL;
    cr_assert_eq(invar_plugin_config_create(d, &cfg, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_param_set(invar_param_find(d->params, "max"), cfg, "2", 0, &err), INVAR_OK);
    /* run it: 2 - x on a (1, 1, 3) image */
    float in_data[3] = {0.0f, 0.5f, 2.0f}, out_data[3] = {0};
    struct invar_image in = {in_data, 1, 1, 3}, out = {out_data, 0, 0, 0};
    d->ops.augment->apply(cfg, NULL, &in, &out);
    cr_assert_eq(out.w, 3);
    cr_assert_eq(out_data[0], 2.0f);
    cr_assert_eq(out_data[1], 1.5f);
    cr_assert_eq(out_data[2], 0.0f);
    invar_plugin_config_destroy(cfg);
    invar_registry_destroy(reg);
}

Test(plugin, loads_every_descriptor_of_a_file)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_load_file(reg, fixture("multi"), &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_registry_count(reg), 2);
    const struct invar_registry_entry *a = invar_registry_find(reg, 0, "fixture_other");
    const struct invar_registry_entry *b = invar_registry_find(reg, 0, "fixture_second");
    cr_assert(a && b);
    cr_assert_str_eq(a->path, b->path);
    cr_assert_str_eq(b->desc->version, "0.4.0");
    invar_registry_destroy(reg);
}

Test(plugin, refuses_wrong_abi_naming_both_versions)
{
    REFUSES("wrong_abi", "ABI version 7, this invar expects 1");
}

Test(plugin, refuses_short_descriptor)
{
    char need[64];
    snprintf(need, sizeof need, "at least %zu", sizeof(struct invar_plugin));
    REFUSES("short_struct", "descriptor is 24 bytes", need);
}

Test(plugin, refuses_missing_entry_symbol)
{
    REFUSES("no_entry", "no entry symbol invar_plugin_entry");
}

Test(plugin, refuses_empty_descriptor_table)
{
    REFUSES("no_descriptors", "no plugin descriptor");
}

Test(plugin, refuses_failing_init_with_its_reason)
{
    REFUSES("init_fail", "(fixture_other 0.3.0): init failed: cannot open /nonexistent/license");
}

Test(plugin, refuses_unknown_kind)
{
    REFUSES("bad_kind", "unknown kind 9");
}

Test(plugin, refuses_bad_name)
{
    REFUSES("bad_name", "bad name 'Fixture-Bad'");
}

Test(plugin, refuses_null_vtable_function)
{
    REFUSES("null_vtable", "augment vtable has no apply()");
}

Test(plugin, refuses_missing_vtable)
{
    REFUSES("null_ops", "no augment vtable");
}

Test(plugin, refuses_name_twice_in_one_file)
{
    REFUSES("twice", "'fixture_other' is defined twice");
}

Test(plugin, refuses_malformed_parameter_tables)
{
    REFUSES("bad_default", "bad default: epochs: expected an integer, got 'ten'");
    REFUSES("bad_minmax", "'lr' has min 10 > max 0");
    REFUSES("bad_enum", "'loss' is an ENUM without allowed values");
    REFUSES("bad_offset", "'ghost'", "beyond the");
    REFUSES("dup_key", "key 'lr' appears twice");
}

Test(plugin, refuses_duplicate_name_naming_both_files)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    const char *a = fixture("good"), *b = fixture("good_v2");
    cr_assert_eq(invar_registry_load_file(reg, a, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_registry_load_file(reg, b, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, a), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, b), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "(fixture_good 2.0.0): name 'fixture_good' is already "
                                       "taken by"),
                       "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "(fixture_good 1.0.0)"), "%s", err.msg);
    cr_assert_str_eq(invar_registry_find(reg, 0, "fixture_good")->desc->version, "1.0.0");
    cr_assert(!is_loaded(b));
    invar_registry_destroy(reg);
}

Test(plugin, refuses_files_that_are_not_plugins, .fini = rm_tree)
{
    const char *dir = make_dir("junk", NULL);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/junk.so", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_load_file(reg, path, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "cannot load"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/missing.so", dir);
    cr_assert_eq(invar_registry_load_file(reg, path, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "No such file"), "%s", err.msg);
    cr_assert_eq(invar_registry_count(reg), 0);
    invar_registry_destroy(reg);
}

/* ---- the search path ---------------------------------------------------------------------- */

struct dirs {
    char v[16][PATH_MAX];
    int rec[16];
    int n;
};

static void collect(void *user, const char *dir, int recursive)
{
    struct dirs *d = user;
    cr_assert_lt(d->n, 16);
    snprintf(d->v[d->n], PATH_MAX, "%s", dir);
    d->rec[d->n++] = recursive;
}

Test(plugin, search_order)
{
    setenv("INVAR_PLUGIN_PATH", "/e1::/e2", 1);
    setenv("INVAR_BUILD_ROOT", "/b", 1);
    setenv("INVAR_NO_INSTALLED_PLUGINS", "1", 1);
    struct dirs d = {.n = 0};
    invar_registry_search_dirs("/p1:/p2", collect, &d);
    const char *want[] = {"/p1", "/p2", "/e1", "/e2", "/b/plugins"};
    cr_assert_eq(d.n, 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(d.v[i], want[i]);
        cr_assert_eq(d.rec[i], i == 4, "only the build tree is searched one level down");
    }
    setenv("INVAR_NO_INSTALLED_PLUGINS", "0", 1);
    d.n = 0;
    invar_registry_search_dirs(NULL, collect, &d);
    cr_assert_eq(d.n, 4);
    cr_assert_str_eq(d.v[0], "/e1");
    cr_assert_str_eq(d.v[3], INVAR_PLUGINSDIR);
    cr_assert_eq(d.rec[3], 0);
}

static const struct invar_registry_shadowed *find_shadow(const struct invar_registry *reg,
                                                         const char *version)
{
    for (size_t i = 0; i < invar_registry_shadowed_count(reg); i++)
        if (strcmp(invar_registry_shadowed_at(reg, i)->version, version) == 0)
            return invar_registry_shadowed_at(reg, i);
    return NULL;
}

/* Refusals recorded for files under dir. */
static size_t refusals_under(const struct invar_registry *reg, const char *dir)
{
    size_t n = 0;
    for (size_t i = 0; i < invar_registry_refusal_count(reg); i++)
        n += strncmp(invar_registry_refusal_at(reg, i)->path, dir, strlen(dir)) == 0;
    return n;
}

Test(plugin, earlier_directory_shadows_later, .fini = rm_tree)
{
    setenv("INVAR_NO_INSTALLED_PLUGINS", "1", 1);
    const char *a = make_dir("a", "good.so", "good", NULL);
    const char *b = make_dir("b", "good.so", "good_v2", NULL);
    char pa[PATH_MAX], pb[PATH_MAX];
    snprintf(pa, sizeof pa, "%s/good.so", a);
    snprintf(pb, sizeof pb, "%s/good.so", b);
    struct invar_error err = {{0}};

    /* --plugin-path comes before $INVAR_PLUGIN_PATH */
    setenv("INVAR_PLUGIN_PATH", b, 1);
    struct invar_registry *reg = new_registry();
    cr_assert_eq(invar_registry_scan(reg, a, &err), INVAR_OK, "%s", err.msg);
    const struct invar_registry_entry *e = invar_registry_find(reg, 0, "fixture_good");
    cr_assert_not_null(e);
    cr_assert_str_eq(e->desc->version, "1.0.0");
    cr_assert_str_eq(e->path, pa);
    const struct invar_registry_shadowed *s = find_shadow(reg, "2.0.0");
    cr_assert_not_null(s, "the later file must be recorded as shadowed");
    cr_assert_str_eq(s->name, "fixture_good");
    cr_assert_eq(s->kind, INVAR_KIND_AUGMENT);
    cr_assert_str_eq(s->path, pb);
    cr_assert_str_eq(s->by_path, pa);
    cr_assert_eq(refusals_under(reg, tmp_root), 0, "shadowing is not a refusal");
    cr_assert(!is_loaded(fixture("good_v2")), "a fully shadowed file is unloaded");
    invar_registry_destroy(reg);

    /* and swapping them swaps the winner */
    setenv("INVAR_PLUGIN_PATH", a, 1);
    reg = new_registry();
    cr_assert_eq(invar_registry_scan(reg, b, &err), INVAR_OK, "%s", err.msg);
    cr_assert_str_eq(invar_registry_find(reg, 0, "fixture_good")->desc->version, "2.0.0");
    cr_assert_not_null(find_shadow(reg, "1.0.0"));
    invar_registry_destroy(reg);
}

Test(plugin, same_name_twice_in_one_directory_is_refused, .fini = rm_tree)
{
    setenv("INVAR_NO_INSTALLED_PLUGINS", "1", 1);
    setenv("INVAR_PLUGIN_PATH", "", 1);
    const char *c = make_dir("c", "one.so", "good", "two.so", "good_v2", NULL);
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_scan(reg, c, &err), INVAR_OK, "%s", err.msg);
    /* files are taken in name order: one.so wins, two.so is refused */
    cr_assert_str_eq(invar_registry_find(reg, 0, "fixture_good")->desc->version, "1.0.0");
    cr_assert_eq(refusals_under(reg, tmp_root), 1);
    const struct invar_registry_refusal *r = NULL;
    for (size_t i = 0; i < invar_registry_refusal_count(reg); i++)
        if (strstr(invar_registry_refusal_at(reg, i)->path, tmp_root))
            r = invar_registry_refusal_at(reg, i);
    cr_assert_eq(r->status, INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(r->path, "/c/two.so"));
    cr_assert_not_null(strstr(r->msg, "/c/two.so"), "%s", r->msg);
    cr_assert_not_null(strstr(r->msg, "/c/one.so"), "%s", r->msg);
    cr_assert_eq(invar_registry_shadowed_count(reg), 0);
    invar_registry_destroy(reg);
}

Test(plugin, scan_records_refusals_and_goes_on, .fini = rm_tree)
{
    setenv("INVAR_NO_INSTALLED_PLUGINS", "1", 1);
    setenv("INVAR_PLUGIN_PATH", "", 1);
    const char *d = make_dir("d", "a_abi.so", "wrong_abi", "b_init.so", "init_fail", "c_noentry.so",
                             "no_entry", "d_good.so", "good", "e_vtable.so", "null_vtable",
                             "not_a_plugin.txt", "good_v2", NULL);
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_scan(reg, d, &err), INVAR_OK, "%s", err.msg);
    const struct invar_registry_entry *e = invar_registry_find(reg, 0, "fixture_good");
    cr_assert_not_null(e);
    cr_assert_str_eq(e->desc->version, "1.0.0", "only *.so files are considered");
    cr_assert_null(invar_registry_find(reg, 0, "fixture_other"));
    cr_assert_eq(refusals_under(reg, tmp_root), 4);
    static const char *const why[] = {"ABI version 7", "init failed", "no entry symbol",
                                      "has no apply()"};
    size_t k = 0;
    for (size_t i = 0; i < invar_registry_refusal_count(reg); i++) {
        const struct invar_registry_refusal *r = invar_registry_refusal_at(reg, i);
        if (!strstr(r->path, tmp_root))
            continue;
        cr_assert_not_null(strstr(r->msg, r->path), "%s", r->msg);
        cr_assert_not_null(strstr(r->msg, why[k]), "refusal %zu: %s", k, r->msg);
        k++;
    }
    invar_registry_destroy(reg);
}

Test(plugin, build_tree_is_searched_one_level_down, .fini = rm_tree)
{
    setenv("INVAR_NO_INSTALLED_PLUGINS", "1", 1);
    setenv("INVAR_PLUGIN_PATH", "", 1);
    const char *kind = make_dir("build/plugins/augment", "good.so", "good", NULL);
    make_dir("build/plugins/augment/deeper", "multi.so", "multi", NULL);
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/build", tmp_root);
    setenv("INVAR_BUILD_ROOT", root, 1);
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_scan(reg, NULL, &err), INVAR_OK, "%s", err.msg);
    const struct invar_registry_entry *e = invar_registry_find(reg, 0, "fixture_good");
    cr_assert_not_null(e);
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/good.so", kind);
    cr_assert_str_eq(e->path, want);
    cr_assert_null(invar_registry_find(reg, 0, "fixture_second"), "two levels down is too deep");
    cr_assert_eq(invar_registry_count(reg), 1);
    invar_registry_destroy(reg);
}

Test(plugin, suggests_plugin_names)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_load_file(reg, fixture("good"), &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_registry_load_file(reg, fixture("multi"), &err), INVAR_OK, "%s", err.msg);
    cr_assert_str_eq(invar_registry_suggest(reg, 0, "fixture_godo"), "fixture_good");
    cr_assert_str_eq(invar_registry_suggest(reg, INVAR_KIND_AUGMENT, "fixture_secnd"),
                     "fixture_second");
    cr_assert_null(invar_registry_suggest(reg, INVAR_KIND_DATASET, "fixture_good"));
    cr_assert_null(invar_registry_suggest(reg, 0, "moco"));
    invar_registry_destroy(reg);
}

Test(plugin, kind_names)
{
    cr_assert_str_eq(invar_plugin_kind_name(INVAR_KIND_OBJECTIVE), "objective");
    cr_assert_str_eq(invar_plugin_kind_name(0), "unknown");
    cr_assert_str_eq(invar_plugin_kind_name(99), "unknown");
    cr_assert_eq(invar_plugin_kind_parse("datasets"), INVAR_KIND_DATASET);
    cr_assert_eq(invar_plugin_kind_parse("encoder"), INVAR_KIND_ENCODER);
    cr_assert_eq(invar_plugin_kind_parse("loss"), 0);
}

/* ---- parameter tables --------------------------------------------------------------------- */

static const struct invar_param_spec *P(const char *key)
{
    const struct invar_param_spec *s = invar_param_find(table, key);
    cr_assert_not_null(s, "no key %s", key);
    return s;
}

static struct fixture_config defaults(void)
{
    struct fixture_config c;
    memset(&c, 0, sizeof c);
    struct invar_error err = {{0}};
    cr_assert_eq(invar_param_defaults(table, &c, &err), INVAR_OK, "%s", err.msg);
    return c;
}

/* set must fail with INVAR_ERR_CONFIG, leave the config alone and mention every needle. */
static void expect_set_error(const char *key, const char *text, int quoted,
                             const char *const *needles)
{
    struct fixture_config c = defaults(), before = c;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_param_set(P(key), &c, text, quoted, &err), INVAR_ERR_CONFIG,
                 "%s=%s was accepted", key, text);
    cr_assert_eq(memcmp(&c, &before, sizeof c), 0, "a failed set changed the config");
    for (; *needles; needles++)
        cr_assert_not_null(strstr(err.msg, *needles), "message lacks '%s': %s", *needles, err.msg);
}

#define SET_FAILS(key, text, quoted, ...)                                                          \
    expect_set_error(key, text, quoted, (const char *const[]){__VA_ARGS__, NULL})

static void set_ok(struct fixture_config *c, const char *key, const char *text, int quoted)
{
    struct invar_error err = {{0}};
    cr_assert_eq(invar_param_set(P(key), c, text, quoted, &err), INVAR_OK, "%s=%s: %s", key, text,
                 err.msg);
}

Test(plugin, table_is_valid_and_defaults_fill_every_field)
{
    struct invar_error err = {{0}};
    cr_assert_eq(invar_param_check_table(table, sizeof(struct fixture_config), &err), INVAR_OK,
                 "%s", err.msg);
    cr_assert_eq(invar_param_check_table(NULL, 0, &err), INVAR_OK);
    cr_assert_eq(invar_param_check_table(table, sizeof(struct fixture_config) - 8, &err),
                 INVAR_ERR_PLUGIN, "the RANGE field no longer fits");
    cr_assert_not_null(strstr(err.msg, "'scale'"), "%s", err.msg);
    struct fixture_config c;
    memset(&c, 0xAB, sizeof c);
    c.path[0] = 'x';
    cr_assert_eq(invar_param_defaults(table, &c, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(c.flip, 0);
    cr_assert_eq(c.epochs, 10);
    cr_assert_eq(c.lr, 1e-3);
    cr_assert_str_eq(c.path, "");
    cr_assert_eq(c.loss, 1);
    cr_assert_eq(c.scale[0], 0.2);
    cr_assert_eq(c.scale[1], 1.0);
}

Test(plugin, bool_from_text)
{
    struct fixture_config c = defaults();
    set_ok(&c, "flip", "true", 0);
    cr_assert_eq(c.flip, 1);
    set_ok(&c, "flip", "False", 0);
    cr_assert_eq(c.flip, 0);
    SET_FAILS("flip", "yes", 0, "flip", "'yes'", "true or false");
    SET_FAILS("flip", "1", 0, "flip", "true or false");
    SET_FAILS("flip", "true", 1, "flip", "string", "quoted");
}

Test(plugin, int_from_text)
{
    struct fixture_config c = defaults();
    set_ok(&c, "epochs", "250", 0);
    cr_assert_eq(c.epochs, 250);
    set_ok(&c, "epochs", "+1000", 0);
    cr_assert_eq(c.epochs, 1000);
    SET_FAILS("epochs", "0", 0, "epochs: 0 is out of range [1, 1000]");
    SET_FAILS("epochs", "1001", 0, "epochs: 1001 is out of range [1, 1000]");
    SET_FAILS("epochs", "99999999999999999999", 0, "out of range [1, 1000]");
    SET_FAILS("epochs", "2.5", 0, "epochs: expected an integer, got '2.5'");
    SET_FAILS("epochs", "1e3", 0, "expected an integer, got '1e3'");
    SET_FAILS("epochs", "0x10", 0, "expected an integer");
    SET_FAILS("epochs", "", 0, "expected an integer");
    SET_FAILS("epochs", "20", 1, "epochs: expected an integer, got the string \"20\"",
              "quoted value stays a string");
}

Test(plugin, float_from_text)
{
    struct fixture_config c = defaults();
    set_ok(&c, "lr", "1e-4", 0); /* a float without a dot */
    cr_assert_eq(c.lr, 1e-4);
    set_ok(&c, "lr", "3", 0);
    cr_assert_eq(c.lr, 3.0);
    set_ok(&c, "lr", ".5", 0);
    cr_assert_eq(c.lr, 0.5);
    set_ok(&c, "lr", "2.5E+0", 0);
    cr_assert_eq(c.lr, 2.5);
    set_ok(&c, "lr", "10", 0); /* bounds are inclusive */
    cr_assert_eq(c.lr, 10.0);
    SET_FAILS("lr", "10.5", 0, "lr: 10.5 is out of range [0, 10]");
    SET_FAILS("lr", "-1e-9", 0, "lr: -1e-9 is out of range [0, 10]");
    SET_FAILS("lr", "1e400", 0, "out of range");
    SET_FAILS("lr", "abc", 0, "lr: expected a number, got 'abc'");
    SET_FAILS("lr", "nan", 0, "expected a number");
    SET_FAILS("lr", ".inf", 0, "expected a number");
    SET_FAILS("lr", "1e", 0, "expected a number");
    SET_FAILS("lr", "0.1", 1, "lr: expected a number, got the string \"0.1\"");
}

Test(plugin, string_from_text)
{
    struct fixture_config c = defaults();
    set_ok(&c, "path", "/usr/share/datasets", 0);
    cr_assert_str_eq(c.path, "/usr/share/datasets");
    set_ok(&c, "path", "123", 1); /* a quoted number is just text here */
    cr_assert_str_eq(c.path, "123");
    char big[INVAR_STR_MAX + 1];
    memset(big, 'x', INVAR_STR_MAX);
    big[INVAR_STR_MAX] = '\0';
    SET_FAILS("path", big, 0, "path: the string is 512 bytes long, at most 511");
    big[INVAR_STR_MAX - 1] = '\0';
    set_ok(&c, "path", big, 0);
    cr_assert_eq(strlen(c.path), INVAR_STR_MAX - 1);
}

Test(plugin, enum_from_text)
{
    struct fixture_config c = defaults();
    set_ok(&c, "loss", "parametric", 0);
    cr_assert_eq(c.loss, 2);
    set_ok(&c, "loss", "nonparametric", 1); /* words may be quoted */
    cr_assert_eq(c.loss, 0);
    SET_FAILS("loss", "nc", 0, "loss: 'nc' is not one of nonparametric|nce|parametric");
    SET_FAILS("loss", "NCE", 0, "'NCE' is not one of");
    SET_FAILS("loss", "nce|parametric", 0, "is not one of");
}

Test(plugin, range_from_text_and_from_two_elements)
{
    struct fixture_config c = defaults();
    struct invar_error err = {{0}};
    set_ok(&c, "scale", "[0.3, 0.9]", 0);
    cr_assert_eq(c.scale[0], 0.3);
    cr_assert_eq(c.scale[1], 0.9);
    set_ok(&c, "scale", " [ 0 ,1 ] ", 0);
    cr_assert_eq(c.scale[0], 0.0);
    cr_assert_eq(c.scale[1], 1.0);
    set_ok(&c, "scale", "[0.5, 0.5]", 0);
    cr_assert_eq(c.scale[0], 0.5);
    SET_FAILS("scale", "[0.9, 0.3]", 0, "scale: lo 0.9 is greater than hi 0.3");
    SET_FAILS("scale", "[0.5, 2]", 0, "scale: 2 is out of range [0, 1]");
    SET_FAILS("scale", "0.5", 0, "scale: expected a list of two numbers [lo, hi], got '0.5'");
    SET_FAILS("scale", "[1, 2, 3]", 0, "expected a list of two numbers");
    SET_FAILS("scale", "[0.1]", 0, "expected a list of two numbers");
    SET_FAILS("scale", "[\"0.1\", 0.5]", 0, "got the string \"0.1\" as lo");
    SET_FAILS("scale", "[0.1, 0.5]", 1, "got the string");
    /* an element too long to hold is refused, never cut short into another number */
    SET_FAILS("scale", "[0.1, 0.5000000000000000000000000000000000000000000000000000000000000001]",
              0, "expected a list of two numbers");

    cr_assert_eq(invar_param_set_range(P("scale"), &c, "0.1", 0, "4e-1", 0, &err), INVAR_OK, "%s",
                 err.msg);
    cr_assert_eq(c.scale[0], 0.1);
    cr_assert_eq(c.scale[1], 0.4);
    cr_assert_eq(invar_param_set_range(P("scale"), &c, "0.2", 1, "0.4", 0, &err), INVAR_ERR_CONFIG);
    cr_assert_not_null(strstr(err.msg, "as lo"), "%s", err.msg);
    cr_assert_eq(invar_param_set_range(P("scale"), &c, "0.2", 0, "x", 0, &err), INVAR_ERR_CONFIG);
    cr_assert_not_null(strstr(err.msg, "got 'x' as hi"), "%s", err.msg);
    cr_assert_eq(c.scale[0], 0.1, "a failed set leaves the field alone");
    cr_assert_eq(invar_param_set_range(P("lr"), &c, "0.2", 0, "0.4", 0, &err), INVAR_ERR_CONFIG);
    cr_assert_not_null(strstr(err.msg, "lr: expected a number, got a list [0.2, 0.4]"), "%s",
                       err.msg);
}

static const char *fmt(const char *key, const struct fixture_config *c)
{
    static char buf[INVAR_PARAM_TEXT_MAX];
    size_t n = invar_param_format(P(key), c, buf, sizeof buf);
    cr_assert_eq(n, strlen(buf));
    return buf;
}

Test(plugin, format_is_canonical)
{
    struct fixture_config c = defaults();
    cr_assert_str_eq(fmt("flip", &c), "false");
    cr_assert_str_eq(fmt("epochs", &c), "10");
    cr_assert_str_eq(fmt("lr", &c), "0.001");
    cr_assert_str_eq(fmt("path", &c), "");
    cr_assert_str_eq(fmt("loss", &c), "nce");
    cr_assert_str_eq(fmt("scale", &c), "[0.2, 1]");
    /* One value, one spelling, however it was written. */
    static const char *const same[][2] = {
        {"0.1", "0.1"},    {"1e-1", "0.1"},        {"0.10", "0.1"},
        {"3", "3"},        {"3.0", "3"},           {"1e-7", "1e-7"},
        {"1E-07", "1e-7"}, {"0.00012", "0.00012"}, {"0.30000000000000004", "0.30000000000000004"},
        {"-0", "0"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        if (same[i][0][0] == '-') { /* below lr's range: write the field directly */
            c.lr = -0.0;
        } else {
            set_ok(&c, "lr", same[i][0], 0);
        }
        cr_assert_str_eq(fmt("lr", &c), same[i][1], "%s", same[i][0]);
    }
    set_ok(&c, "flip", "TRUE", 0);
    cr_assert_str_eq(fmt("flip", &c), "true");
    set_ok(&c, "loss", "parametric", 0);
    cr_assert_str_eq(fmt("loss", &c), "parametric");
    set_ok(&c, "scale", "[2.5e-1,0.75]", 0);
    cr_assert_str_eq(fmt("scale", &c), "[0.25, 0.75]");
    /* snprintf contract: truncated, terminated, full length returned */
    char small[4];
    cr_assert_eq(invar_param_format(P("loss"), &c, small, sizeof small), 10);
    cr_assert_str_eq(small, "par");
}

Test(plugin, format_set_format_round_trips)
{
    /* Deterministic doubles across many magnitudes: format -> set -> format is the identity
     * and the value comes back bit for bit. */
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 2000; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0;              /* [0, 1) */
        double v = 10.0 * pow(10.0, -12.0 * (double)(s % 7) / 6.0) * u; /* [0, 10) */
        struct fixture_config c = defaults(), d = defaults();
        c.lr = v;
        c.epochs = 1 + (int64_t)(s % 1000);
        c.scale[0] = u * 0.5;
        c.scale[1] = 0.5 + u * 0.5;
        c.loss = (int)(s % 3);
        c.flip = (int)(s & 1);
        snprintf(c.path, sizeof c.path, "run %d", i);
        for (size_t k = 0; table[k].key; k++) {
            char a[INVAR_PARAM_TEXT_MAX], b[INVAR_PARAM_TEXT_MAX];
            invar_param_format(&table[k], &c, a, sizeof a);
            set_ok(&d, table[k].key, a, 0);
            invar_param_format(&table[k], &d, b, sizeof b);
            cr_assert_str_eq(a, b, "%s", table[k].key);
        }
        cr_assert_eq(memcmp(&c.lr, &d.lr, sizeof c.lr), 0, "%.17g came back as %.17g", c.lr, d.lr);
        cr_assert_eq(memcmp(c.scale, d.scale, sizeof c.scale), 0);
        cr_assert_eq(c.epochs, d.epochs);
        cr_assert_eq(c.loss, d.loss);
        cr_assert_eq(c.flip, d.flip);
        cr_assert_str_eq(c.path, d.path);
    }
}

Test(plugin, finds_and_suggests_keys)
{
    static const struct invar_param_spec train[] = {
        {"epochs", INVAR_TYPE_INT, 0, "1", 1, 100, NULL, ""},
        {"batch_size", INVAR_TYPE_INT, 8, "1", 1, 100, NULL, ""},
        {"threads", INVAR_TYPE_INT, 16, "1", 1, 100, NULL, ""},
        {"lr", INVAR_TYPE_FLOAT, 24, "1", 0, 100, NULL, ""},
        INVAR_PARAM_END,
    };
    struct invar_error err = {{0}};
    cr_assert_eq(invar_param_check_table(train, 32, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_param_count(train), 4);
    cr_assert_eq(invar_param_find(train, "lr"), &train[3]);
    cr_assert_null(invar_param_find(train, "epoch_count"));
    cr_assert_str_eq(invar_param_suggest(train, "epchs"), "epochs");
    cr_assert_str_eq(invar_param_suggest(train, "epoch"), "epochs");
    cr_assert_str_eq(invar_param_suggest(train, "batchsize"), "batch_size");
    cr_assert_str_eq(invar_param_suggest(train, "thraeds"), "threads"); /* transposition */
    cr_assert_str_eq(invar_param_suggest(train, "lt"), "lr");
    cr_assert_null(invar_param_suggest(train, "momentum"));
    cr_assert_null(invar_param_suggest(train, "wd"));
    cr_assert_null(invar_param_suggest(NULL, "epochs"));
}

Test(plugin, table_checks)
{
    struct invar_error err = {{0}};
    static const struct invar_param_spec misaligned[] = {
        {"lr", INVAR_TYPE_FLOAT, 4, "1", 0, 10, NULL, ""}, INVAR_PARAM_END};
    cr_assert_eq(invar_param_check_table(misaligned, 16, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "misaligned offset 4"), "%s", err.msg);
    static const struct invar_param_spec badkey[] = {
        {"Learning-Rate", INVAR_TYPE_FLOAT, 0, "1", 0, 10, NULL, ""}, INVAR_PARAM_END};
    cr_assert_eq(invar_param_check_table(badkey, 16, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "bad key 'Learning-Rate'"), "%s", err.msg);
    static const struct invar_param_spec badtype[] = {
        {"lr", (enum invar_param_type)42, 0, "1", 0, 10, NULL, ""}, INVAR_PARAM_END};
    cr_assert_eq(invar_param_check_table(badtype, 16, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "unknown type 42"), "%s", err.msg);
    static const struct invar_param_spec badenum[] = {
        {"loss", INVAR_TYPE_ENUM, 0, "a", 0, 0, "a||b", ""}, INVAR_PARAM_END};
    cr_assert_eq(invar_param_check_table(badenum, 16, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "empty word"), "%s", err.msg);
    static const struct invar_param_spec twice[] = {
        {"loss", INVAR_TYPE_ENUM, 0, "a", 0, 0, "a|b|a", ""}, INVAR_PARAM_END};
    cr_assert_eq(invar_param_check_table(twice, 16, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "lists 'a' twice"), "%s", err.msg);
    static const struct invar_param_spec outofrange[] = {
        {"lr", INVAR_TYPE_FLOAT, 0, "11", 0, 10, NULL, ""}, INVAR_PARAM_END};
    cr_assert_eq(invar_param_check_table(outofrange, 16, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "bad default: lr: 11 is out of range [0, 10]"), "%s",
                       err.msg);
    static const struct invar_param_spec nodef[] = {
        {"lr", INVAR_TYPE_FLOAT, 0, NULL, 0, 10, NULL, ""}, INVAR_PARAM_END};
    cr_assert_eq(invar_param_check_table(nodef, 16, &err), INVAR_ERR_PLUGIN);
    cr_assert_not_null(strstr(err.msg, "'lr' has no default"), "%s", err.msg);
}

/* ---- configs of a loaded plugin, and describe --------------------------------------------- */

Test(plugin, plugin_config_defaults_and_check)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_load_file(reg, fixture("good"), &err), INVAR_OK, "%s", err.msg);
    const struct invar_plugin *d = invar_registry_find(reg, 0, "fixture_good")->desc;
    void *cfg = NULL;
    cr_assert_eq(invar_plugin_config_create(d, &cfg, &err), INVAR_OK, "%s", err.msg);
    struct fixture_config *c = cfg;
    cr_assert_eq(c->epochs, 10);
    cr_assert_eq(c->lr, 1e-3);
    cr_assert_eq(c->loss, 1);
    cr_assert_eq(invar_plugin_config_check(d, cfg, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_param_set(invar_param_find(d->params, "flip"), cfg, "true", 0, &err),
                 INVAR_OK);
    cr_assert_eq(invar_param_set(invar_param_find(d->params, "scale"), cfg, "[0.5, 0.55]", 0, &err),
                 INVAR_OK);
    cr_assert_eq(invar_plugin_config_check(d, cfg, &err), INVAR_ERR_CONFIG);
    cr_assert_str_eq(err.msg, "scale: a flipped crop needs hi - lo >= 0.1");
    invar_plugin_config_destroy(cfg);
    invar_registry_destroy(reg);
}

Test(plugin, describe_lists_every_parameter)
{
    struct invar_registry *reg = new_registry();
    struct invar_error err = {{0}};
    cr_assert_eq(invar_registry_load_file(reg, fixture("good"), &err), INVAR_OK, "%s", err.msg);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    cr_assert_eq(invar_plugin_describe(invar_registry_find(reg, 0, "fixture_good")->desc, f),
                 INVAR_OK);
    fclose(f);
    cr_assert_not_null(strstr(text, "augment fixture_good 1.0.0\n"), "%s", text);
    cr_assert_not_null(strstr(text, "  test plugin: scales pixels by lr\n"), "%s", text);
    /* one row per parameter: key, type, default (canonical), range, doc */
    static const char *const rows[][5] = {
        {"flip", "bool", "false", "true|false", "mirror the image"},
        {"epochs", "int", "10", "[1, 1000]", "passes over the data"},
        {"lr", "float", "0.001", "[0, 10]", "learning rate"},
        {"path", "string", "\"\"", "text", "where the data lives"},
        {"loss", "enum", "nce", "nonparametric|nce|parametric", "the NCE variant"},
        {"scale", "range", "[0.2, 1]", "lo <= hi in [0, 1]", "crop area fraction"},
    };
    int nlines = 0;
    for (char *p = text; *p; p++)
        nlines += *p == '\n';
    cr_assert_eq(nlines, 2 + 1 + 1 + 6, "%s", text); /* title, summary, blank, header, rows */
    for (size_t i = 0; i < 6; i++) {
        char *line = strstr(text, rows[i][0]);
        cr_assert_not_null(line, "%s", rows[i][0]);
        while (line && line > text && line[-1] != '\n') /* the row, not the summary */
            line = strstr(line + 1, rows[i][0]);
        cr_assert_not_null(line, "no row for %s", rows[i][0]);
        char *end = strchr(line, '\n');
        char *prev = line;
        for (int k = 1; k < 5; k++) {
            char *at = strstr(prev, rows[i][k]);
            cr_assert(at && at < end, "row %s lacks '%s' in order: %.*s", rows[i][0], rows[i][k],
                      (int)(end - line), line);
            prev = at + strlen(rows[i][k]);
        }
    }
    free(text);
    invar_registry_destroy(reg);
}
