/* Sweep expansion: the file's grid, zip and seeds plus command-line axes, into one override
 * list per trial (invar/sweep.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invar/sweep.h"

struct axis {
    char *key;
    char **values; /* (n) */
    size_t n;
};

struct invar_sweep_plan {
    struct axis *grid; /* (n_grid), file axes first, then command-line ones */
    size_t n_grid, cap_grid;
    struct axis *zip; /* (n_zip), each with zip_n values */
    size_t n_zip, zip_n;
    char **fixed; /* (n_fixed) "key=value" */
    size_t n_fixed;
    int64_t *seeds; /* (n_seeds) */
    size_t n_seeds;
    const char **axis_keys;           /* (n_grid + n_zip) */
    struct invar_sweep_trial *trials; /* (n_trials) */
    char ***trial_strs;               /* (n_trials) arrays the trials' overrides point into */
    size_t n_trials;
};

static void axis_deinit(struct axis *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->values[i]);
    free(a->values);
    free(a->key);
    memset(a, 0, sizeof *a);
}

static enum invar_status nomem(struct invar_error *err)
{
    return invar_error_set(err, INVAR_ERR_NOMEM, "out of memory expanding the sweep");
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static enum invar_status axis_copy(struct axis *out, const char *key, const char *const *values,
                                   size_t n)
{
    memset(out, 0, sizeof *out);
    out->key = strdup(key);
    out->values = calloc(n, sizeof *out->values);
    if (!out->key || !out->values)
        return INVAR_ERR_NOMEM;
    for (; out->n < n; out->n++)
        if (!(out->values[out->n] = strdup(values[out->n])))
            return INVAR_ERR_NOMEM;
    return INVAR_OK;
}

static enum invar_status grid_push(struct invar_sweep_plan *p, struct axis *a)
{
    if (p->n_grid == p->cap_grid) {
        size_t cap = p->cap_grid ? 2 * p->cap_grid : 8;
        struct axis *g = realloc(p->grid, cap * sizeof *g);
        if (!g)
            return INVAR_ERR_NOMEM;
        p->grid = g;
        p->cap_grid = cap;
    }
    p->grid[p->n_grid++] = *a;
    memset(a, 0, sizeof *a);
    return INVAR_OK;
}

static struct axis *find_axis(struct axis *axes, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(axes[i].key, key))
            return &axes[i];
    return NULL;
}

/* Splits v at the commas that are outside brackets, braces and quotes, so a flow list
 * (`[0.2,1.0]`) stays one value. Pieces are trimmed of blanks; an empty piece is an error. */
static enum invar_status split_values(const char *arg, const char *v, struct axis *out,
                                      struct invar_error *err)
{
    size_t cap = 1;
    for (const char *s = v; *s; s++)
        cap += *s == ',';
    out->values = calloc(cap, sizeof *out->values);
    if (!out->values)
        return nomem(err);
    int depth = 0;
    char quote = 0;
    const char *start = v;
    for (const char *s = v;; s++) {
        if (quote) {
            if (*s == quote)
                quote = 0;
            else if (!*s)
                return invar_error_set(err, INVAR_ERR_CONFIG,
                                       "<command line>: %s: unterminated quote", arg);
            continue;
        }
        if (*s == '\'' || *s == '"')
            quote = *s;
        else if (*s == '[' || *s == '{')
            depth++;
        else if ((*s == ']' || *s == '}') && depth > 0)
            depth--;
        else if ((*s == ',' && depth == 0) || !*s) {
            const char *a = start, *b = s;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (a == b)
                return invar_error_set(err, INVAR_ERR_CONFIG,
                                       "<command line>: %s: empty value in the list", arg);
            if (!(out->values[out->n++] = dup_n(a, (size_t)(b - a))))
                return nomem(err);
            start = s + 1;
            if (!*s)
                break;
        }
    }
    return INVAR_OK;
}

static enum invar_status take_arg(struct invar_sweep_plan *p, const char *arg,
                                  struct invar_error *err)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "<command line>: %s: expected KEY=VALUE or KEY=V1,V2,...", arg);
    struct axis a = {0};
    enum invar_status st = INVAR_ERR_NOMEM;
    if (!(a.key = dup_n(arg, (size_t)(eq - arg))))
        return nomem(err);
    if (find_axis(p->zip, p->n_zip, a.key)) {
        st = invar_error_set(err, INVAR_ERR_CONFIG,
                             "<command line>: %s: `%s` is a zip axis of the sweep; change its "
                             "values in the file, where the zip lists advance together",
                             arg, a.key);
        goto out;
    }
    if (!strcmp(a.key, "seed") && p->n_seeds) {
        st = invar_error_set(err, INVAR_ERR_CONFIG,
                             "<command line>: %s: the sweep has `seeds`; change them in the file",
                             arg);
        goto out;
    }
    if ((st = split_values(arg, eq + 1, &a, err)) != INVAR_OK)
        goto out;
    struct axis *old = find_axis(p->grid, p->n_grid, a.key);
    if (a.n == 1) {
        /* A fixed value: the override as written, and no axis of that key any more. */
        if (old) {
            axis_deinit(old);
            memmove(old, old + 1, (size_t)(p->grid + p->n_grid - old - 1) * sizeof *old);
            p->n_grid--;
        }
        char **f = realloc(p->fixed, (p->n_fixed + 1) * sizeof *f);
        if (!f || !(f[p->n_fixed] = strdup(arg))) {
            if (f)
                p->fixed = f;
            st = nomem(err);
            goto out;
        }
        p->fixed = f;
        p->n_fixed++;
        st = INVAR_OK;
    } else if (old) {
        axis_deinit(old);
        *old = a;
        memset(&a, 0, sizeof a);
        st = INVAR_OK;
    } else if ((st = grid_push(p, &a)) != INVAR_OK) {
        st = nomem(err);
    }
out:
    axis_deinit(&a);
    return st;
}

static char *join_kv(const char *key, const char *value)
{
    size_t n = strlen(key) + strlen(value) + 2;
    char *s = malloc(n);
    if (s) {
        strcpy(s, key);
        strcat(s, "=");
        strcat(s, value);
    }
    return s;
}

static char *seed_override(int64_t seed)
{
    char buf[40];
    snprintf(buf, sizeof buf, "seed=%lld", (long long)seed);
    return strdup(buf);
}

/* Trial t: mixed radix with the seeds fastest, then the zip index, then the grid axes from
 * the last to the first. */
static enum invar_status build_trial(struct invar_sweep_plan *p, size_t t)
{
    size_t n = p->n_fixed + p->n_grid + p->n_zip + (p->n_seeds > 0);
    char **strs = calloc(n ? n : 1, sizeof *strs);
    if (!strs)
        return INVAR_ERR_NOMEM;
    p->trial_strs[t] = strs;
    struct invar_sweep_trial *tr = &p->trials[t];
    tr->overrides = (const char *const *)strs;
    tr->n_overrides = n;
    size_t rest = t, k = 0;
    size_t seed_i = 0, zip_i = 0;
    if (p->n_seeds) {
        seed_i = rest % p->n_seeds;
        rest /= p->n_seeds;
    }
    if (p->n_zip) {
        zip_i = rest % p->zip_n;
        rest /= p->zip_n;
    }
    size_t grid_i[64];
    for (size_t a = p->n_grid; a-- > 0;) {
        grid_i[a] = rest % p->grid[a].n;
        rest /= p->grid[a].n;
    }
    for (size_t i = 0; i < p->n_fixed; i++)
        if (!(strs[k++] = strdup(p->fixed[i])))
            return INVAR_ERR_NOMEM;
    for (size_t a = 0; a < p->n_grid; a++)
        if (!(strs[k++] = join_kv(p->grid[a].key, p->grid[a].values[grid_i[a]])))
            return INVAR_ERR_NOMEM;
    for (size_t a = 0; a < p->n_zip; a++)
        if (!(strs[k++] = join_kv(p->zip[a].key, p->zip[a].values[zip_i])))
            return INVAR_ERR_NOMEM;
    if (p->n_seeds) {
        tr->has_seed = 1;
        tr->seed = p->seeds[seed_i];
        if (!(strs[k++] = seed_override(tr->seed)))
            return INVAR_ERR_NOMEM;
    }
    return INVAR_OK;
}

static enum invar_status expand(struct invar_sweep_plan *p, struct invar_error *err)
{
    if (p->n_grid > 64)
        return invar_error_set(err, INVAR_ERR_INVALID, "sweep: %zu grid axes; at most 64",
                               p->n_grid);
    size_t count = 1;
    for (size_t a = 0; a < p->n_grid + 2; a++) {
        size_t m = a < p->n_grid    ? p->grid[a].n
                   : a == p->n_grid ? (p->n_zip ? p->zip_n : 1)
                                    : (p->n_seeds ? p->n_seeds : 1);
        if (m && count > INVAR_SWEEP_MAX_TRIALS / m)
            return invar_error_set(err, INVAR_ERR_INVALID,
                                   "sweep: more than %d trials; split it into smaller sweeps",
                                   INVAR_SWEEP_MAX_TRIALS);
        count *= m;
    }
    p->axis_keys = calloc(p->n_grid + p->n_zip + 1, sizeof *p->axis_keys);
    p->trials = calloc(count, sizeof *p->trials);
    p->trial_strs = calloc(count, sizeof *p->trial_strs);
    if (!p->axis_keys || !p->trials || !p->trial_strs)
        return nomem(err);
    for (size_t a = 0; a < p->n_grid; a++)
        p->axis_keys[a] = p->grid[a].key;
    for (size_t a = 0; a < p->n_zip; a++)
        p->axis_keys[p->n_grid + a] = p->zip[a].key;
    for (; p->n_trials < count; p->n_trials++)
        if (build_trial(p, p->n_trials) != INVAR_OK) {
            p->n_trials++; /* so destroy frees its partial strings */
            return nomem(err);
        }
    return INVAR_OK;
}

enum invar_status invar_sweep_plan_create(struct invar_sweep_plan **out,
                                          const struct invar_sweep *sweep, const char *const *args,
                                          size_t n_args, struct invar_error *err)
{
    *out = NULL;
    struct invar_sweep_plan *p = calloc(1, sizeof *p);
    if (!p)
        return nomem(err);
    enum invar_status st = INVAR_OK;
    static const struct invar_sweep none = {0};
    if (!sweep)
        sweep = &none;
    for (size_t i = 0; i < sweep->n_grid && st == INVAR_OK; i++) {
        struct axis a;
        const struct invar_sweep_axis *g = &sweep->grid[i];
        st = axis_copy(&a, g->key, g->values, g->n_values);
        if (st == INVAR_OK)
            st = grid_push(p, &a);
        axis_deinit(&a);
    }
    if (st == INVAR_OK && sweep->n_zip) {
        p->zip = calloc(sweep->n_zip, sizeof *p->zip);
        st = p->zip ? INVAR_OK : INVAR_ERR_NOMEM;
        p->zip_n = sweep->zip[0].n_values;
        for (size_t i = 0; i < sweep->n_zip && st == INVAR_OK; i++, p->n_zip++) {
            const struct invar_sweep_axis *z = &sweep->zip[i];
            INVAR_ASSERT(z->n_values == p->zip_n); /* the config module checks this */
            st = axis_copy(&p->zip[i], z->key, z->values, z->n_values);
        }
    }
    if (st == INVAR_OK && sweep->n_seeds) {
        p->seeds = malloc(sweep->n_seeds * sizeof *p->seeds);
        if (!p->seeds)
            st = INVAR_ERR_NOMEM;
        else
            memcpy(p->seeds, sweep->seeds, sweep->n_seeds * sizeof *p->seeds);
        p->n_seeds = sweep->n_seeds;
    }
    if (st != INVAR_OK) {
        invar_sweep_plan_destroy(p);
        return nomem(err);
    }
    for (size_t i = 0; i < n_args && st == INVAR_OK; i++)
        st = take_arg(p, args[i], err);
    if (st == INVAR_OK)
        st = expand(p, err);
    if (st != INVAR_OK) {
        invar_sweep_plan_destroy(p);
        return st;
    }
    *out = p;
    return INVAR_OK;
}

void invar_sweep_plan_destroy(struct invar_sweep_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_grid; i++)
        axis_deinit(&p->grid[i]);
    free(p->grid);
    for (size_t i = 0; i < p->n_zip; i++)
        axis_deinit(&p->zip[i]);
    free(p->zip);
    for (size_t i = 0; i < p->n_fixed; i++)
        free(p->fixed[i]);
    free(p->fixed);
    free(p->seeds);
    free(p->axis_keys);
    for (size_t t = 0; t < p->n_trials; t++) {
        if (!p->trial_strs[t])
            continue;
        for (size_t k = 0; k < p->trials[t].n_overrides; k++)
            free(p->trial_strs[t][k]);
        free(p->trial_strs[t]);
    }
    free(p->trial_strs);
    free(p->trials);
    free(p);
}

size_t invar_sweep_plan_count(const struct invar_sweep_plan *p)
{
    return p->n_trials;
}

const struct invar_sweep_trial *invar_sweep_plan_trial(const struct invar_sweep_plan *p, size_t i)
{
    INVAR_ASSERT(i < p->n_trials);
    return &p->trials[i];
}

size_t invar_sweep_plan_n_axes(const struct invar_sweep_plan *p)
{
    return p->n_grid + p->n_zip;
}

const char *invar_sweep_plan_axis(const struct invar_sweep_plan *p, size_t i)
{
    INVAR_ASSERT(i < p->n_grid + p->n_zip);
    return p->axis_keys[i];
}
