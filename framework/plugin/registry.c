/* The plugin registry: dlopen, ABI and table checks, search path, shadowing, lookup.
 *
 * A file is accepted or refused as a whole: every descriptor it exports is checked before any
 * init() runs, and nothing is registered until all of them passed, so a refusal leaves the
 * registry exactly as it was and the handle is dlclosed.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "invar/registry.h"
#include "invar_build_config.h"
#include "plugin_internal.h"

/* Everything ABI version 1 defines: a shorter descriptor is from a broken or foreign build. */
#define DESC_V1_SIZE sizeof(struct invar_plugin)
/* Guards the walk over an entry table that forgot its NULL. */
#define DESC_MAX 256
#define NAME_MAX_LEN 64
/* Explicit loads (invar_registry_load_file) refuse any clash; scans use one group per dir. */
#define GROUP_EXPLICIT (-1)

struct reg_file {
    void *handle;
    char *path; /* as found */
    char *real; /* realpath, to load a file once */
};

struct reg_entry {
    struct invar_registry_entry pub;
    int group;
};

struct invar_registry {
    struct reg_file *files;
    size_t nfiles, capfiles;
    struct reg_entry **entries; /* each allocated alone: pointers handed out stay valid */
    size_t nentries, capentries;
    struct invar_registry_refusal **refusals;
    size_t nrefusals, caprefusals;
    struct invar_registry_shadowed **shadowed;
    size_t nshadowed, capshadowed;
    int next_group;
};

/* ---- kinds ---------------------------------------------------------------------------------- */

struct kind_info {
    const char *name, *plural;
};

static const struct kind_info kinds[] = {
    [INVAR_KIND_DATASET] = {"dataset", "datasets"},
    [INVAR_KIND_AUGMENT] = {"augment", "augments"},
    [INVAR_KIND_ENCODER] = {"encoder", "encoders"},
    [INVAR_KIND_OBJECTIVE] = {"objective", "objectives"},
};
#define KIND_COUNT (sizeof kinds / sizeof kinds[0])

const char *invar_plugin_kind_name(uint32_t kind)
{
    return kind > 0 && kind < KIND_COUNT ? kinds[kind].name : "unknown";
}

uint32_t invar_plugin_kind_parse(const char *name)
{
    for (uint32_t k = 1; name && k < KIND_COUNT; k++)
        if (strcmp(name, kinds[k].name) == 0 || strcmp(name, kinds[k].plural) == 0)
            return k;
    return 0;
}

/* Required functions of each kind's vtable; the others are optional. */
struct required_fn {
    uint32_t kind;
    const char *name;
    size_t offset; /* of the function pointer in the kind's ops struct */
};

#define REQ(KIND, T, f)                                                                            \
    {                                                                                              \
        KIND, #f, offsetof(struct T, f)                                                            \
    }
static const struct required_fn required_fns[] = {
    REQ(INVAR_KIND_DATASET, invar_dataset_ops, open),
    REQ(INVAR_KIND_DATASET, invar_dataset_ops, read),
    REQ(INVAR_KIND_DATASET, invar_dataset_ops, close),
    REQ(INVAR_KIND_AUGMENT, invar_augment_ops, apply),
    REQ(INVAR_KIND_ENCODER, invar_encoder_ops, create),
    REQ(INVAR_KIND_ENCODER, invar_encoder_ops, forward),
    REQ(INVAR_KIND_ENCODER, invar_encoder_ops, destroy),
    REQ(INVAR_KIND_OBJECTIVE, invar_objective_ops, create),
    REQ(INVAR_KIND_OBJECTIVE, invar_objective_ops, loss),
    REQ(INVAR_KIND_OBJECTIVE, invar_objective_ops, destroy),
};
#undef REQ

/* ---- small helpers -------------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Returns arr (of n elem-sized items, room for *cap) with room for one more: arr itself, a
 * larger copy, or NULL when out of memory (arr is then untouched). */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t nc = *cap ? *cap * 2 : 8;
    void *p = realloc(arr, nc * elem);
    if (p)
        *cap = nc;
    return p;
}

static int name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len >= NAME_MAX_LEN)
        return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_'))
            return 0;
    return 1;
}

static const struct reg_entry *find_entry(const struct invar_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->nentries; i++)
        if (strcmp(reg->entries[i]->pub.desc->name, name) == 0)
            return reg->entries[i];
    return NULL;
}

/* ---- create / destroy ----------------------------------------------------------------------- */

enum invar_status invar_registry_create(struct invar_registry **out)
{
    INVAR_ASSERT(out);
    *out = calloc(1, sizeof **out);
    return *out ? INVAR_OK : INVAR_ERR_NOMEM;
}

void invar_registry_destroy(struct invar_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->nentries; i++)
        free(reg->entries[i]);
    for (size_t i = 0; i < reg->nrefusals; i++) {
        free((char *)reg->refusals[i]->path);
        free((char *)reg->refusals[i]->msg);
        free(reg->refusals[i]);
    }
    for (size_t i = 0; i < reg->nshadowed; i++)
        free(reg->shadowed[i]); /* strings live in the same block */
    /* Newest first, in case a later plugin holds on to an earlier one's symbols. */
    for (size_t i = reg->nfiles; i-- > 0;) {
        dlclose(reg->files[i].handle);
        free(reg->files[i].path);
        free(reg->files[i].real);
    }
    free(reg->files);
    free(reg->entries);
    free(reg->refusals);
    free(reg->shadowed);
    free(reg);
}

/* ---- checking one descriptor ---------------------------------------------------------------- */

static enum invar_status check_desc(const struct invar_plugin *d, const char *path,
                                    struct invar_error *err)
{
    /* abi_version first, struct_size second: nothing else may be read before both pass. */
    if (d->abi_version != INVAR_ABI_VERSION)
        return invar_error_set(err, INVAR_ERR_PLUGIN,
                               "plugin %s: ABI version %u, this invar expects %u", path,
                               (unsigned)d->abi_version, (unsigned)INVAR_ABI_VERSION);
    if (d->struct_size < DESC_V1_SIZE)
        return invar_error_set(err, INVAR_ERR_PLUGIN,
                               "plugin %s: descriptor is %u bytes, ABI version %u needs at "
                               "least %zu",
                               path, (unsigned)d->struct_size, (unsigned)INVAR_ABI_VERSION,
                               DESC_V1_SIZE);
    if (!d->name || !name_ok(d->name))
        return invar_error_set(err, INVAR_ERR_PLUGIN,
                               "plugin %s: bad name '%.80s' (use [a-z0-9_], 1 to %d characters)",
                               path, d->name ? d->name : "(null)", NAME_MAX_LEN - 1);
    if (d->kind == 0 || d->kind >= KIND_COUNT)
        return invar_error_set(err, INVAR_ERR_PLUGIN,
                               "plugin %s (%s): unknown kind %u (this invar knows 1 to %u)", path,
                               d->name, (unsigned)d->kind, (unsigned)(KIND_COUNT - 1));
    if (!d->version || !d->version[0])
        return invar_error_set(err, INVAR_ERR_PLUGIN, "plugin %s (%s): no version string", path,
                               d->name);
    const char *kind = invar_plugin_kind_name(d->kind);
    if (!d->ops.any)
        return invar_error_set(err, INVAR_ERR_PLUGIN, "plugin %s (%s): no %s vtable", path, d->name,
                               kind);
    for (size_t i = 0; i < sizeof required_fns / sizeof required_fns[0]; i++) {
        const struct required_fn *r = &required_fns[i];
        if (r->kind != d->kind)
            continue;
        void (*fn)(void);
        memcpy(&fn, (const char *)d->ops.any + r->offset, sizeof fn);
        if (!fn)
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "plugin %s (%s): the %s vtable has no %s()", path, d->name, kind,
                                   r->name);
    }
    if (invar_param_check_table(d->params, d->config_size, err) != INVAR_OK) {
        invar_error_prefix(err, "plugin %s (%s)", path, d->name);
        return INVAR_ERR_PLUGIN;
    }
    return INVAR_OK;
}

/* ---- loading one file ----------------------------------------------------------------------- */

static enum invar_status add_shadow(struct invar_registry *reg, const struct invar_plugin *d,
                                    const char *path, const char *by)
{
    void *arr = grow(reg->shadowed, &reg->capshadowed, reg->nshadowed, sizeof *reg->shadowed);
    if (!arr)
        return INVAR_ERR_NOMEM;
    reg->shadowed = arr;
    /* One block: the record, then its four strings. */
    size_t ln = strlen(d->name) + 1, lv = strlen(d->version) + 1, lp = strlen(path) + 1,
           lb = strlen(by) + 1;
    struct invar_registry_shadowed *s = malloc(sizeof *s + ln + lv + lp + lb);
    if (!s)
        return INVAR_ERR_NOMEM;
    char *p = (char *)(s + 1);
    s->kind = d->kind;
    s->name = memcpy(p, d->name, ln);
    s->version = memcpy(p + ln, d->version, lv);
    s->path = memcpy(p + ln + lv, path, lp);
    s->by_path = memcpy(p + ln + lv + lp, by, lb);
    reg->shadowed[reg->nshadowed++] = s;
    return INVAR_OK;
}

static enum invar_status load_file(struct invar_registry *reg, const char *path, int group,
                                   struct invar_error *err)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return invar_error_set(err, INVAR_ERR_PLUGIN, "plugin %s: %s", path, strerror(errno));
    for (size_t i = 0; i < reg->nfiles; i++)
        if (strcmp(reg->files[i].real, real) == 0)
            return INVAR_OK;

    /* A name without a slash would make dlopen search the library path instead. */
    char local[PATH_MAX + 2];
    const char *open_path = path;
    if (!strchr(path, '/')) {
        snprintf(local, sizeof local, "./%s", path);
        open_path = local;
    }
    dlerror();
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return invar_error_set(err, INVAR_ERR_PLUGIN, "plugin %s: cannot load: %s", path,
                               why ? why : "unknown dlopen error");
    }
    enum invar_status st = INVAR_OK;
    const struct invar_plugin *const *table = NULL;
    size_t n = 0;
    /* The descriptors this file adds, and which of them lose to an earlier directory. */
    const struct invar_plugin *mine[DESC_MAX];
    const struct reg_entry *winner[DESC_MAX];

    void *sym = dlsym(h, INVAR_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        st = invar_error_set(err, INVAR_ERR_PLUGIN,
                             "plugin %s: no entry symbol %s (not an invar plugin, or built "
                             "without INVAR_PLUGIN_DEFINE)",
                             path, INVAR_PLUGIN_ENTRY_SYMBOL);
        goto refuse;
    }
    invar_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* ISO C has no object-to-function pointer cast */
    table = entry();
    while (table && n < DESC_MAX && table[n])
        n++;
    if (n == 0) {
        st =
            invar_error_set(err, INVAR_ERR_PLUGIN, "plugin %s: exports no plugin descriptor", path);
        goto refuse;
    }
    if (n == DESC_MAX) {
        st = invar_error_set(err, INVAR_ERR_PLUGIN,
                             "plugin %s: descriptor table has no NULL within %d entries", path,
                             DESC_MAX);
        goto refuse;
    }
    for (size_t i = 0; i < n; i++) {
        const struct invar_plugin *d = table[i];
        if ((st = check_desc(d, path, err)) != INVAR_OK)
            goto refuse;
        for (size_t j = 0; j < i; j++)
            if (strcmp(mine[j]->name, d->name) == 0) {
                st = invar_error_set(err, INVAR_ERR_PLUGIN,
                                     "plugin %s: name '%s' is defined twice in this file", path,
                                     d->name);
                goto refuse;
            }
        const struct reg_entry *old = find_entry(reg, d->name);
        if (old && (group == GROUP_EXPLICIT || old->group == group)) {
            st = invar_error_set(err, INVAR_ERR_PLUGIN,
                                 "plugin %s (%s %s): name '%s' is already taken by %s (%s %s)",
                                 path, d->name, d->version, d->name, old->pub.path,
                                 old->pub.desc->name, old->pub.desc->version);
            goto refuse;
        }
        mine[i] = d;
        winner[i] = old; /* an earlier directory's plugin of that name, or NULL */
    }
    /* Only plugins that will be used are initialised. */
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (winner[i])
            continue;
        used++;
        if (!mine[i]->init)
            continue;
        struct invar_error ierr = {{0}};
        if (mine[i]->init(&ierr) != INVAR_OK) {
            st = invar_error_set(err, INVAR_ERR_PLUGIN, "plugin %s (%s %s): init failed: %s", path,
                                 mine[i]->name, mine[i]->version,
                                 ierr.msg[0] ? ierr.msg : "no reason given");
            goto refuse;
        }
    }

    /* Commit: nothing below may refuse, only run out of memory. */
    for (size_t i = 0; i < n; i++)
        if (winner[i] && add_shadow(reg, mine[i], path, winner[i]->pub.path) != INVAR_OK)
            goto nomem;
    if (used == 0) {
        dlclose(h);
        return INVAR_OK;
    }
    void *files = grow(reg->files, &reg->capfiles, reg->nfiles, sizeof *reg->files);
    if (!files)
        goto nomem;
    reg->files = files;
    struct reg_file *f = &reg->files[reg->nfiles];
    f->handle = h;
    f->path = dup_str(path);
    f->real = dup_str(real);
    if (!f->path || !f->real) {
        free(f->path);
        free(f->real);
        goto nomem;
    }
    reg->nfiles++; /* owns h from here on */
    for (size_t i = 0; i < n; i++) {
        if (winner[i])
            continue;
        void *arr = grow(reg->entries, &reg->capentries, reg->nentries, sizeof *reg->entries);
        if (arr)
            reg->entries = arr;
        struct reg_entry *e = arr ? malloc(sizeof *e) : NULL;
        if (!e)
            return invar_error_set(err, INVAR_ERR_NOMEM, "plugin %s: out of memory", path);
        e->pub.desc = mine[i];
        e->pub.path = f->path;
        e->group = group;
        reg->entries[reg->nentries++] = e;
    }
    return INVAR_OK;

nomem:
    dlclose(h);
    return invar_error_set(err, INVAR_ERR_NOMEM, "plugin %s: out of memory", path);
refuse:
    dlclose(h);
    return st;
}

enum invar_status invar_registry_load_file(struct invar_registry *reg, const char *path,
                                           struct invar_error *err)
{
    INVAR_ASSERT(reg && path);
    return load_file(reg, path, GROUP_EXPLICIT, err);
}

/* ---- the search path ------------------------------------------------------------------------ */

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] && strcmp(v, "0") != 0;
}

/* Is the running program inside the build tree that holds build_plugins? */
static int running_from_build_tree(const char *build_plugins)
{
    char exe[PATH_MAX], root[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", build_plugins);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    if (!realpath("/proc/self/exe", exe) || !realpath(dir, root))
        return 0;
    size_t n = strlen(root);
    return strncmp(exe, root, n) == 0 && exe[n] == '/';
}

static void each_component(const char *list, invar_registry_dir_fn fn, void *user)
{
    while (list && *list) {
        const char *colon = strchr(list, ':');
        size_t len = colon ? (size_t)(colon - list) : strlen(list);
        if (len > 0 && len < PATH_MAX) {
            char dir[PATH_MAX];
            memcpy(dir, list, len);
            dir[len] = '\0';
            fn(user, dir, 0);
        }
        list = colon ? colon + 1 : NULL;
    }
}

void invar_registry_search_dirs(const char *plugin_path, invar_registry_dir_fn fn, void *user)
{
    INVAR_ASSERT(fn);
    each_component(plugin_path, fn, user);
    each_component(getenv("INVAR_PLUGIN_PATH"), fn, user);
    const char *root = getenv("INVAR_BUILD_ROOT");
    if (root && root[0]) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/plugins", root);
        fn(user, dir, 1);
    } else if (running_from_build_tree(INVAR_BUILD_PLUGINSDIR)) {
        fn(user, INVAR_BUILD_PLUGINSDIR, 1);
    }
    if (!env_true("INVAR_NO_INSTALLED_PLUGINS"))
        fn(user, INVAR_PLUGINSDIR, 0);
}

struct path_list {
    char **v;
    size_t n, cap;
    int nomem;
};

static void path_list_add(struct path_list *l, const char *dir, const char *name)
{
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    void *arr = grow(l->v, &l->cap, l->n, sizeof *l->v);
    char *p = arr ? malloc(len) : NULL;
    if (arr)
        l->v = arr;
    if (!p) {
        l->nomem = 1;
        return;
    }
    snprintf(p, len, "%s/%s", dir, name);
    l->v[l->n++] = p;
}

static int has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

/* Adds dir's "*.so" files and, when depth > 0, those of its subdirectories. */
static void list_dir(struct path_list *l, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return; /* a search directory that does not exist is simply empty */
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", dir, de->d_name) >= (int)sizeof full)
            continue;
        struct stat sb;
        if (stat(full, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth > 0)
                list_dir(l, full, depth - 1);
        } else if (S_ISREG(sb.st_mode) && has_so_suffix(de->d_name)) {
            path_list_add(l, dir, de->d_name);
        }
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum invar_status add_refusal(struct invar_registry *reg, const char *path,
                                     enum invar_status st, const char *msg)
{
    void *arr = grow(reg->refusals, &reg->caprefusals, reg->nrefusals, sizeof *reg->refusals);
    if (!arr)
        return INVAR_ERR_NOMEM;
    reg->refusals = arr;
    struct invar_registry_refusal *r = malloc(sizeof *r);
    char *p = dup_str(path), *m = dup_str(msg);
    if (!r || !p || !m) {
        free(r);
        free(p);
        free(m);
        return INVAR_ERR_NOMEM;
    }
    r->path = p;
    r->status = st;
    r->msg = m;
    reg->refusals[reg->nrefusals++] = r;
    return INVAR_OK;
}

struct scan_ctx {
    struct invar_registry *reg;
    enum invar_status st; /* only NOMEM stops a scan */
};

static void scan_dir(void *user, const char *dir, int recursive)
{
    struct scan_ctx *c = user;
    if (c->st != INVAR_OK)
        return;
    struct path_list l = {0};
    list_dir(&l, dir, recursive ? 1 : 0);
    /* Sorted, so which of two same-named files in one directory is refused is repeatable. */
    if (l.n > 1)
        qsort(l.v, l.n, sizeof *l.v, cmp_str);
    int group = c->reg->next_group++;
    for (size_t i = 0; i < l.n && !l.nomem; i++) {
        struct invar_error e = {{0}};
        enum invar_status st = load_file(c->reg, l.v[i], group, &e);
        if (st == INVAR_ERR_NOMEM)
            l.nomem = 1;
        else if (st != INVAR_OK && add_refusal(c->reg, l.v[i], st, e.msg) != INVAR_OK)
            l.nomem = 1;
    }
    if (l.nomem)
        c->st = INVAR_ERR_NOMEM;
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
}

enum invar_status invar_registry_scan(struct invar_registry *reg, const char *plugin_path,
                                      struct invar_error *err)
{
    INVAR_ASSERT(reg);
    struct scan_ctx c = {reg, INVAR_OK};
    invar_registry_search_dirs(plugin_path, scan_dir, &c);
    if (c.st != INVAR_OK)
        return invar_error_set(err, c.st, "plugin scan: out of memory");
    return INVAR_OK;
}

/* ---- lookup --------------------------------------------------------------------------------- */

size_t invar_registry_count(const struct invar_registry *reg)
{
    return reg->nentries;
}

const struct invar_registry_entry *invar_registry_at(const struct invar_registry *reg, size_t i)
{
    return i < reg->nentries ? &reg->entries[i]->pub : NULL;
}

const struct invar_registry_entry *invar_registry_find(const struct invar_registry *reg,
                                                       uint32_t kind, const char *name)
{
    const struct reg_entry *e = name ? find_entry(reg, name) : NULL;
    if (!e || (kind != 0 && e->pub.desc->kind != kind))
        return NULL;
    return &e->pub;
}

const char *invar_registry_suggest(const struct invar_registry *reg, uint32_t kind,
                                   const char *name)
{
    struct suggest s;
    suggest_init(&s, name);
    for (size_t i = 0; i < reg->nentries; i++) {
        const struct invar_plugin *d = reg->entries[i]->pub.desc;
        if (kind == 0 || d->kind == kind)
            suggest_offer(&s, d->name);
    }
    return suggest_result(&s);
}

size_t invar_registry_refusal_count(const struct invar_registry *reg)
{
    return reg->nrefusals;
}

const struct invar_registry_refusal *invar_registry_refusal_at(const struct invar_registry *reg,
                                                               size_t i)
{
    return i < reg->nrefusals ? reg->refusals[i] : NULL;
}

size_t invar_registry_shadowed_count(const struct invar_registry *reg)
{
    return reg->nshadowed;
}

const struct invar_registry_shadowed *invar_registry_shadowed_at(const struct invar_registry *reg,
                                                                 size_t i)
{
    return i < reg->nshadowed ? reg->shadowed[i] : NULL;
}
