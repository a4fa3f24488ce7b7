/* invar report [--sweep NAME] [--by KEYS] [--metric M] [--csv F] [--html F]
 *
 * One row per group of a sweep's runs — grouped by the swept keys, the seeds pooled — with the
 * mean ± sample standard deviation (n) of each final metric over the group's finished runs.
 * The best row (highest mean of --metric, default knn_top1; lowest for a loss) is marked `*`.
 *
 * The groups' keys: --by, else the `sweep.axes` param that `invar sweep` gives its runs, else
 * every param whose value differs between the runs (seed excepted). A key that names a section
 * (`objective`, swept as a whole map) groups by everything under it and is shown by its
 * `plugin` value.
 *
 * --html writes one self-contained file: the table, then SVG plots drawn by gnuplot (final
 * metric against each key with ± std error bars; training loss per epoch per group), inlined.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_KEYS 16
#define MAX_METRICS 8

struct rrun {
    const struct invar_store_run *run;
    struct invar_store_param_list params;
    const char *ident[MAX_KEYS]; /* owned */
    const char *label[MAX_KEYS]; /* owned */
    double metric[MAX_METRICS];  /* final values; NaN when absent */
};

struct stat_cell {
    double mean, std; /* std NaN when n < 2 */
    size_t n;
};

struct group {
    size_t first; /* index of its first run: identity and labels */
    size_t *runs; /* (n_runs) */
    size_t n_runs, n_finished;
    size_t by_status[INVAR_RUN_STATUS_COUNT];
    struct stat_cell cell[MAX_METRICS];
    int relabel; /* scratch: its label is shared by a group with other settings */
};

struct report {
    const char *sweep;
    struct invar_store_run_list list;
    struct rrun *runs;
    const char *keys[MAX_KEYS];
    size_t n_keys;
    const char *metrics[MAX_METRICS];
    size_t n_metrics, best_metric;
    struct group *groups;
    size_t n_groups, best;
    char key_buf[4096]; /* storage for keys split from --by or sweep.axes */
};

static int lower_is_better(const char *metric)
{
    size_t n = strlen(metric);
    return n >= 4 && !strcmp(metric + n - 4, "loss");
}

static const char *param_of(const struct invar_store_param_list *l, const char *key)
{
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->items[i].key, key))
            return l->items[i].value;
    return NULL;
}

/* A key's value for grouping (ident) and for display (label); both heap strings. */
static void value_of(const struct invar_store_param_list *l, const char *key, const char **ident,
                     const char **label)
{
    const char *v = param_of(l, key);
    if (v) {
        *ident = strdup(v);
        *label = strdup(v);
        return;
    }
    /* A section swept whole: everything under it, shown by its plugin. */
    size_t kl = strlen(key), len = 0, cap = 1;
    for (size_t i = 0; i < l->count; i++)
        if (!strncmp(l->items[i].key, key, kl) && l->items[i].key[kl] == '.')
            cap += strlen(l->items[i].key) + strlen(l->items[i].value) + 2;
    char *s = malloc(cap);
    if (s) {
        s[0] = 0;
        for (size_t i = 0; i < l->count; i++)
            if (!strncmp(l->items[i].key, key, kl) && l->items[i].key[kl] == '.')
                len += (size_t)snprintf(s + len, cap - len, "%s%s=%s", len ? " " : "",
                                        l->items[i].key + kl + 1, l->items[i].value);
    }
    char plugin[600];
    snprintf(plugin, sizeof plugin, "%s.plugin", key);
    const char *p = param_of(l, plugin);
    *ident = s && *s ? s : (free(s), strdup("-"));
    *label = strdup(p ? p : *ident);
}

static int add_key(struct report *r, const char *k)
{
    for (size_t i = 0; i < r->n_keys; i++)
        if (!strcmp(r->keys[i], k))
            return 0;
    if (r->n_keys == MAX_KEYS) {
        cli_error("report: more than %d keys to group by", MAX_KEYS);
        return 1;
    }
    r->keys[r->n_keys++] = k;
    return 0;
}

/* Splits "a,b" into r->keys, copying into r->key_buf from offset *used. */
static int add_key_list(struct report *r, const char *list, size_t *used)
{
    size_t n = strlen(list) + 1;
    if (*used + n > sizeof r->key_buf) {
        cli_error("report: key list too long");
        return 1;
    }
    char *s = r->key_buf + *used;
    memcpy(s, list, n);
    *used += n;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ","))
        if (*tok && strcmp(tok, "seed") != 0 && add_key(r, tok))
            return 1;
    return 0;
}

/* No --by: the axes `invar sweep` recorded, else every param that varies (seed excepted). */
static int default_keys(struct report *r)
{
    size_t used = 0;
    for (size_t i = 0; i < r->list.count; i++) {
        const char *axes = param_of(&r->runs[i].params, "sweep.axes");
        int seen = 0;
        for (size_t j = 0; axes && j < i && !seen; j++) {
            const char *prev = param_of(&r->runs[j].params, "sweep.axes");
            seen = prev && !strcmp(prev, axes);
        }
        if (axes && !seen && add_key_list(r, axes, &used))
            return 1;
    }
    if (r->n_keys || r->list.count < 2)
        return 0;
    const struct invar_store_param_list *p0 = &r->runs[0].params;
    for (size_t i = 1; i < r->list.count; i++) {
        const struct invar_store_param_list *pi = &r->runs[i].params;
        for (size_t k = 0; k < pi->count; k++) {
            const char *key = pi->items[k].key, *v0 = param_of(p0, key);
            if (strcmp(key, "seed") && (!v0 || strcmp(v0, pi->items[k].value)) && add_key(r, key))
                return 1;
        }
        for (size_t k = 0; k < p0->count; k++)
            if (strcmp(p0->items[k].key, "seed") && !param_of(pi, p0->items[k].key) &&
                add_key(r, p0->items[k].key))
                return 1;
    }
    return 0;
}

static int load_runs(struct invar_store *db, struct report *r)
{
    struct invar_error err = {{0}};
    if (invar_store_list_runs(db, r->sweep, &r->list, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    if (!r->list.count) {
        cli_error("report: no runs in sweep `%s`", r->sweep);
        return 1;
    }
    r->runs = calloc(r->list.count, sizeof *r->runs);
    if (!r->runs) {
        cli_error("out of memory");
        return 1;
    }
    for (size_t i = 0; i < r->list.count; i++) {
        struct rrun *x = &r->runs[i];
        x->run = &r->list.runs[i];
        if (invar_store_read_params(db, x->run->id, &x->params, &err) != INVAR_OK) {
            cli_error("%s", err.msg);
            return 1;
        }
    }
    return 0;
}

static int load_metrics(struct invar_store *db, struct report *r)
{
    struct invar_error err = {{0}};
    for (size_t i = 0; i < r->list.count; i++) {
        struct rrun *x = &r->runs[i];
        struct invar_store_metric_list ml = {0};
        if (invar_store_read_final_metrics(db, x->run->id, &ml, &err) != INVAR_OK) {
            cli_error("%s", err.msg);
            return 1;
        }
        for (size_t m = 0; m < r->n_metrics; m++) {
            x->metric[m] = NAN;
            for (size_t k = 0; k < ml.count; k++)
                if (!strcmp(ml.items[k].key, r->metrics[m]))
                    x->metric[m] = ml.items[k].value;
        }
        invar_store_metric_list_deinit(&ml);
        for (size_t k = 0; k < r->n_keys; k++)
            value_of(&x->params, r->keys[k], &x->ident[k], &x->label[k]);
    }
    return 0;
}

static int same_group(const struct rrun *a, const struct rrun *b, size_t n_keys)
{
    for (size_t k = 0; k < n_keys; k++)
        if (strcmp(a->ident[k] ? a->ident[k] : "", b->ident[k] ? b->ident[k] : ""))
            return 0;
    return 1;
}

/* Groups in order of first appearance (the sweep's trial order); stats over finished runs. */
static int build_groups(struct report *r)
{
    r->groups = calloc(r->list.count, sizeof *r->groups);
    if (!r->groups)
        return 1;
    for (size_t i = 0; i < r->list.count; i++) {
        size_t g = 0;
        while (g < r->n_groups && !same_group(&r->runs[r->groups[g].first], &r->runs[i], r->n_keys))
            g++;
        struct group *gr = &r->groups[g];
        if (g == r->n_groups) {
            r->n_groups++;
            gr->first = i;
            if (!(gr->runs = calloc(r->list.count, sizeof *gr->runs)))
                return 1;
        }
        gr->runs[gr->n_runs++] = i;
        gr->by_status[r->runs[i].run->status]++;
    }
    /* A section shown by its plugin: groups with the same plugin but other settings show
     * the settings instead, so that no two rows read alike. */
    for (size_t k = 0; k < r->n_keys; k++) {
        for (size_t g = 0; g < r->n_groups; g++) {
            const struct rrun *a = &r->runs[r->groups[g].first];
            r->groups[g].relabel = 0;
            for (size_t h = 0; h < r->n_groups; h++) {
                const struct rrun *b = &r->runs[r->groups[h].first];
                r->groups[g].relabel |=
                    !strcmp(a->label[k], b->label[k]) && strcmp(a->ident[k], b->ident[k]);
            }
        }
        for (size_t g = 0; g < r->n_groups; g++) {
            struct rrun *a = &r->runs[r->groups[g].first];
            char *id = r->groups[g].relabel ? strdup(a->ident[k]) : NULL;
            if (r->groups[g].relabel && !id)
                return 1;
            if (id) {
                free((char *)a->label[k]);
                a->label[k] = id;
            }
        }
    }
    r->best = (size_t)-1;
    for (size_t g = 0; g < r->n_groups; g++) {
        struct group *gr = &r->groups[g];
        gr->n_finished = gr->by_status[INVAR_RUN_FINISHED];
        for (size_t m = 0; m < r->n_metrics; m++) {
            double sum = 0, sq = 0;
            size_t n = 0;
            for (size_t j = 0; j < gr->n_runs; j++) {
                const struct rrun *x = &r->runs[gr->runs[j]];
                if (x->run->status == INVAR_RUN_FINISHED && !isnan(x->metric[m]))
                    sum += x->metric[m], n++;
            }
            double mean = n ? sum / (double)n : NAN;
            for (size_t j = 0; j < gr->n_runs; j++) {
                const struct rrun *x = &r->runs[gr->runs[j]];
                if (x->run->status == INVAR_RUN_FINISHED && !isnan(x->metric[m]))
                    sq += (x->metric[m] - mean) * (x->metric[m] - mean);
            }
            gr->cell[m] = (struct stat_cell){mean, n > 1 ? sqrt(sq / (double)(n - 1)) : NAN, n};
        }
        const struct stat_cell *c = &gr->cell[r->best_metric],
                               *b = r->best == (size_t)-1
                                        ? NULL
                                        : &r->groups[r->best].cell[r->best_metric];
        int low = lower_is_better(r->metrics[r->best_metric]);
        if (c->n && (!b || (low ? c->mean < b->mean : c->mean > b->mean)))
            r->best = g;
    }
    return 0;
}

/* ---- text and CSV ------------------------------------------------------------------------- */

static const char *fmt_of(const char *metric)
{
    return strstr(metric, "top") ? "%.2f" : "%.4f";
}

static void format_cell(const struct report *r, const struct stat_cell *c, size_t m, char *buf,
                        size_t n)
{
    const char *f = fmt_of(r->metrics[m]);
    char mean[40], std[40];
    if (!c->n) {
        snprintf(buf, n, "-");
        return;
    }
    snprintf(mean, sizeof mean, f, c->mean);
    if (isnan(c->std)) {
        snprintf(buf, n, "%s (%zu)", mean, c->n);
        return;
    }
    snprintf(std, sizeof std, f, c->std);
    snprintf(buf, n, "%s ± %s (%zu)", mean, std, c->n);
}

/* Runs in a group that are not finished, as "1 diverged, 2 failed". */
static void format_other(const struct group *g, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int s = 0; s < INVAR_RUN_STATUS_COUNT && len < n; s++)
        if (s != INVAR_RUN_FINISHED && g->by_status[s])
            len += (size_t)snprintf(buf + len, n - len, "%s%zu %s", len ? ", " : "",
                                    g->by_status[s], invar_run_status_str(s));
}

/* Display width of UTF-8 text: one column per code point. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void pad(FILE *f, const char *s, size_t w)
{
    fputs(s, f);
    for (size_t i = width(s); i < w + 2; i++)
        fputc(' ', f);
}

static void print_table(const struct report *r)
{
    size_t nc = r->n_keys + r->n_metrics + 1;
    size_t w[MAX_KEYS + MAX_METRICS + 1] = {0};
    char cell[128];
    for (size_t k = 0; k < r->n_keys; k++)
        w[k] = width(r->keys[k]);
    for (size_t m = 0; m < r->n_metrics; m++)
        w[r->n_keys + m] = width(r->metrics[m]);
    w[nc - 1] = 5;
    for (size_t g = 0; g < r->n_groups; g++) {
        const struct group *gr = &r->groups[g];
        for (size_t k = 0; k < r->n_keys; k++) {
            size_t x = width(r->runs[gr->first].label[k]);
            w[k] = x > w[k] ? x : w[k];
        }
        for (size_t m = 0; m < r->n_metrics; m++) {
            format_cell(r, &gr->cell[m], m, cell, sizeof cell);
            size_t x = width(cell);
            w[r->n_keys + m] = x > w[r->n_keys + m] ? x : w[r->n_keys + m];
        }
    }
    size_t total = 0;
    for (size_t g = 0; g < r->n_groups; g++)
        total += r->groups[g].n_runs;
    printf("sweep %s: %zu runs in %zu groups; mean ± std (n) over finished runs; * best %s\n",
           r->sweep, total, r->n_groups, r->metrics[r->best_metric]);
    printf("  ");
    for (size_t k = 0; k < r->n_keys; k++)
        pad(stdout, r->keys[k], w[k]);
    for (size_t m = 0; m < r->n_metrics; m++)
        pad(stdout, r->metrics[m], w[r->n_keys + m]);
    printf("other\n");
    for (size_t g = 0; g < r->n_groups; g++) {
        const struct group *gr = &r->groups[g];
        printf("%c ", g == r->best ? '*' : ' ');
        for (size_t k = 0; k < r->n_keys; k++)
            pad(stdout, r->runs[gr->first].label[k], w[k]);
        for (size_t m = 0; m < r->n_metrics; m++) {
            format_cell(r, &gr->cell[m], m, cell, sizeof cell);
            pad(stdout, cell, w[r->n_keys + m]);
        }
        format_other(gr, cell, sizeof cell);
        printf("%s\n", cell);
    }
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_number(FILE *f, double v)
{
    if (!isnan(v))
        fprintf(f, "%.17g", v);
}

static int write_csv(const struct report *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    for (size_t k = 0; k < r->n_keys; k++) {
        csv_field(f, r->keys[k]);
        fputc(',', f);
    }
    for (size_t m = 0; m < r->n_metrics; m++)
        fprintf(f, "%s_mean,%s_std,%s_n,", r->metrics[m], r->metrics[m], r->metrics[m]);
    fprintf(f, "runs,best\n");
    for (size_t g = 0; g < r->n_groups; g++) {
        const struct group *gr = &r->groups[g];
        for (size_t k = 0; k < r->n_keys; k++) {
            csv_field(f, r->runs[gr->first].label[k]);
            fputc(',', f);
        }
        for (size_t m = 0; m < r->n_metrics; m++) {
            csv_number(f, gr->cell[m].mean);
            fputc(',', f);
            csv_number(f, gr->cell[m].std);
            fprintf(f, ",%zu,", gr->cell[m].n);
        }
        fprintf(f, "%zu,%d\n", gr->n_runs, g == r->best);
    }
    if (fclose(f) != 0) {
        cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- HTML with gnuplot SVG ---------------------------------------------------------------- */

static void html_text(FILE *f, const char *s)
{
    for (; *s; s++)
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
}

/* A gnuplot single-quoted string: '' is a quote. Markup characters become look-alikes so
 * that gnuplot's SVG, which we inline, carries no text that HTML would read as markup. */
static void gp_string(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++)
        switch (*s) {
        case '\'':
            fputs("''", f);
            break;
        case '<':
            fputs("(", f);
            break;
        case '>':
            fputs(")", f);
            break;
        case '&':
            fputs("+", f);
            break;
        case '\n':
            fputc(' ', f);
            break;
        default:
            fputc(*s, f);
        }
    fputc('\'', f);
}

static int is_number(const char *s)
{
    char *end;
    if (!*s)
        return 0;
    strtod(s, &end);
    return *end == 0;
}

/* Runs gnuplot on the script that write_script writes, then copies the SVG it drew into out,
 * from its <svg tag on (the XML prologue has no place inside HTML). */
static int plot(FILE *out, void (*write_script)(FILE *, const struct report *, size_t),
                const struct report *r, size_t arg)
{
    const char *tmpdir = getenv("TMPDIR");
    char svg[4096];
    snprintf(svg, sizeof svg, "%s/invar-plot-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(svg);
    if (fd < 0) {
        cli_error("%s: %s", svg, strerror(errno));
        return 1;
    }
    close(fd);
    /* gnuplot's warnings ("empty y range" for a flat series) go to a file, shown on failure. */
    char log[4096 + 8], cmd[4096 + 32];
    snprintf(log, sizeof log, "%s.err", svg);
    if (strchr(log, '\'')) {
        cli_error("report: %s: a quote in TMPDIR", log);
        unlink(svg);
        return 1;
    }
    snprintf(cmd, sizeof cmd, "gnuplot 2>'%s'", log);
    fflush(NULL);
    FILE *gp = popen(cmd, "w");
    if (!gp) {
        cli_error("report: cannot start gnuplot: %s", strerror(errno));
        unlink(svg);
        return 1;
    }
    fprintf(gp, "set terminal svg size 720,420 font 'sans,12' background '#ffffff'\n"
                "set output ");
    gp_string(gp, svg);
    fprintf(gp, "\nset termoption noenhanced\nset grid\nset key outside right top\n");
    write_script(gp, r, arg);
    fprintf(gp, "set output\n");
    int st = pclose(gp);
    int rc = 0;
    FILE *in = st == 0 ? fopen(svg, "r") : NULL;
    if (!in) {
        char msg[512] = "";
        FILE *e = fopen(log, "r");
        if (e) {
            size_t n = fread(msg, 1, sizeof msg - 1, e);
            msg[n] = 0;
            fclose(e);
        }
        cli_error("report: gnuplot failed (status %d)%s%s; --html needs gnuplot (Debian: "
                  "gnuplot-nox)",
                  st, *msg ? ": " : "", msg);
        rc = 1;
    } else {
        char buf[8192];
        size_t n;
        int seen = 0;
        while ((n = fread(buf, 1, sizeof buf - 1, in)) > 0) {
            buf[n] = 0;
            const char *s = buf;
            if (!seen) {
                s = strstr(buf, "<svg");
                if (!s)
                    continue; /* the prologue is far shorter than one buffer */
                seen = 1;
            }
            fwrite(s, 1, n - (size_t)(s - buf), out);
        }
        fclose(in);
        if (!seen) {
            cli_error("report: gnuplot wrote no SVG");
            rc = 1;
        }
    }
    unlink(svg);
    unlink(log);
    return rc;
}

/* Metric arg % n_metrics against key arg / n_metrics: one x position per value, one series
 * per combination of the other keys, error bars ± std. */
static void script_metric(FILE *gp, const struct report *r, size_t arg)
{
    size_t m = arg % r->n_metrics, key = arg / r->n_metrics;
    /* The key's distinct values, in numeric order when all are numbers. */
    const char *vals[256];
    size_t nv = 0;
    int numeric = 1;
    for (size_t g = 0; g < r->n_groups && nv < 256; g++) {
        const char *v = r->runs[r->groups[g].first].label[key];
        size_t i = 0;
        while (i < nv && strcmp(vals[i], v))
            i++;
        if (i == nv)
            vals[nv++] = v, numeric &= is_number(v);
    }
    for (size_t i = 1; numeric && i < nv; i++)
        for (size_t j = i; j > 0 && strtod(vals[j - 1], NULL) > strtod(vals[j], NULL); j--) {
            const char *t = vals[j];
            vals[j] = vals[j - 1], vals[j - 1] = t;
        }
    fprintf(gp, "set title ");
    char t[512];
    snprintf(t, sizeof t, "%s against %s (mean, error bars: std over seeds)", r->metrics[m],
             r->keys[key]);
    gp_string(gp, t);
    fprintf(gp, "\nset xlabel ");
    gp_string(gp, r->keys[key]);
    fprintf(gp, "\nset ylabel ");
    gp_string(gp, r->metrics[m]);
    /* Many or long labels are turned, so that they do not run into each other. */
    size_t longest = 0;
    for (size_t i = 0; i < nv; i++)
        longest = strlen(vals[i]) > longest ? strlen(vals[i]) : longest;
    fprintf(gp, "\nset xrange [-0.5:%zu.5]\nset xtics %s(", nv - 1,
            nv * (longest + 1) > 48 ? "rotate by -30 " : "");
    for (size_t i = 0; i < nv; i++) {
        gp_string(gp, vals[i]);
        fprintf(gp, " %zu%s", i, i + 1 < nv ? ", " : "");
    }
    fprintf(gp, ")\n");
    /* Series: groups that agree on every other key, except keys that follow from this one
     * (zipped with it): those would give one point per series. */
    int splits[MAX_KEYS];
    for (size_t k = 0; k < r->n_keys; k++) {
        splits[k] = 0;
        for (size_t g = 0; k != key && g < r->n_groups; g++)
            for (size_t h = 0; h < g; h++) {
                const struct rrun *a = &r->runs[r->groups[g].first],
                                  *b = &r->runs[r->groups[h].first];
                splits[k] |=
                    !strcmp(a->ident[key], b->ident[key]) && strcmp(a->ident[k], b->ident[k]);
            }
    }
    size_t series_of[1024], n_series = 0, head[1024];
    for (size_t g = 0; g < r->n_groups && g < 1024; g++) {
        size_t s = 0;
        for (; s < n_series; s++) {
            const struct rrun *a = &r->runs[r->groups[head[s]].first],
                              *b = &r->runs[r->groups[g].first];
            int same = 1;
            for (size_t k = 0; k < r->n_keys; k++)
                same &= !splits[k] || !strcmp(a->ident[k], b->ident[k]);
            if (same)
                break;
        }
        if (s == n_series)
            head[n_series++] = g;
        series_of[g] = s;
    }
    for (size_t s = 0; s < n_series; s++) {
        fprintf(gp, "$d%zu << EOD\n", s);
        for (size_t i = 0; i < nv; i++)
            for (size_t g = 0; g < r->n_groups && g < 1024; g++) {
                const struct stat_cell *c = &r->groups[g].cell[m];
                if (series_of[g] == s && c->n &&
                    !strcmp(r->runs[r->groups[g].first].label[key], vals[i]))
                    fprintf(gp, "%zu %.17g %.17g\n", i, c->mean, isnan(c->std) ? 0 : c->std);
            }
        fprintf(gp, "EOD\n");
    }
    fprintf(gp, "plot ");
    for (size_t s = 0; s < n_series; s++) {
        char title[512] = "";
        size_t len = 0;
        const struct rrun *a = &r->runs[r->groups[head[s]].first];
        for (size_t k = 0; k < r->n_keys && len < sizeof title; k++)
            if (splits[k])
                len += (size_t)snprintf(title + len, sizeof title - len, "%s%s=%s", len ? " " : "",
                                        r->keys[k], a->label[k]);
        /* Lines join numbers; categories (plugins, names) get bars alone. */
        fprintf(gp, "%s$d%zu using 1:2:3 with %s lw 2 pt 7 title ", s ? ", " : "", s,
                numeric ? "yerrorlines" : "yerrorbars");
        gp_string(gp, n_series > 1 ? title : r->metrics[m]);
    }
    fprintf(gp, "\n");
}

/* Loss per epoch per group: the mean over the group's runs of each epoch's last `loss`. */
struct curves {
    const struct report *r;
    struct invar_store *db;
};
static struct curves curves_ctx;

static void group_label(const struct report *r, size_t g, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t k = 0; k < r->n_keys && len < n; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", r->keys[k],
                                r->runs[r->groups[g].first].label[k]);
    if (!r->n_keys)
        snprintf(buf, n, "all runs");
}

static void script_curves(FILE *gp, const struct report *r, size_t arg)
{
    (void)arg;
    struct invar_error err = {{0}};
    fprintf(gp, "set title 'training loss per epoch (mean over the group''s runs)'\n"
                "set xlabel 'epoch'\nset ylabel 'loss'\nset autoscale x\nunset xtics\n"
                "set xtics\n");
    size_t plotted = 0;
    for (size_t g = 0; g < r->n_groups; g++) {
        enum { MAX_EPOCHS = 4096 };
        static double sum[MAX_EPOCHS];
        static size_t cnt[MAX_EPOCHS];
        memset(cnt, 0, sizeof cnt);
        memset(sum, 0, sizeof sum);
        const struct group *gr = &r->groups[g];
        for (size_t j = 0; j < gr->n_runs; j++) {
            struct invar_store_metric_list ml = {0};
            if (invar_store_read_metrics(curves_ctx.db, r->runs[gr->runs[j]].run->id, "loss", &ml,
                                         &err) != INVAR_OK)
                continue;
            /* The last value of each epoch is that epoch's mean loss. */
            for (size_t k = 0; k < ml.count; k++) {
                int64_t e = ml.items[k].epoch;
                int last = k + 1 == ml.count || ml.items[k + 1].epoch != e;
                if (last && e >= 0 && e < MAX_EPOCHS && !isnan(ml.items[k].value))
                    sum[e] += ml.items[k].value, cnt[e]++;
            }
            invar_store_metric_list_deinit(&ml);
        }
        fprintf(gp, "$c%zu << EOD\n", g);
        for (int e = 0; e < MAX_EPOCHS; e++)
            if (cnt[e])
                fprintf(gp, "%d %.17g\n", e + 1, sum[e] / (double)cnt[e]), plotted++;
        fprintf(gp, "EOD\n");
    }
    if (!plotted) {
        fprintf(gp, "set label 1 'no loss logged' at graph 0.5, graph 0.5 center\n"
                    "set xrange [0:1]\nset yrange [0:1]\nplot NaN notitle\n");
        return;
    }
    fprintf(gp, "plot ");
    for (size_t g = 0; g < r->n_groups; g++) {
        char label[512];
        group_label(r, g, label, sizeof label);
        fprintf(gp, "%s$c%zu using 1:2 with linespoints lw 2 title ", g ? ", " : "", g);
        gp_string(gp, label);
    }
    fprintf(gp, "\n");
}

static void html_table(FILE *f, const struct report *r)
{
    char cell[128];
    fprintf(f, "<table>\n<tr><th></th>");
    for (size_t k = 0; k < r->n_keys; k++) {
        fprintf(f, "<th>");
        html_text(f, r->keys[k]);
        fprintf(f, "</th>");
    }
    for (size_t m = 0; m < r->n_metrics; m++) {
        fprintf(f, "<th>");
        html_text(f, r->metrics[m]);
        fprintf(f, "</th>");
    }
    fprintf(f, "<th>other</th></tr>\n");
    for (size_t g = 0; g < r->n_groups; g++) {
        const struct group *gr = &r->groups[g];
        fprintf(f, "<tr%s><td>%s</td>", g == r->best ? " class=\"best\"" : "",
                g == r->best ? "&#9733;" : "");
        for (size_t k = 0; k < r->n_keys; k++) {
            fprintf(f, "<td>");
            html_text(f, r->runs[gr->first].label[k]);
            fprintf(f, "</td>");
        }
        for (size_t m = 0; m < r->n_metrics; m++) {
            format_cell(r, &gr->cell[m], m, cell, sizeof cell);
            fprintf(f, "<td class=\"num\">");
            html_text(f, cell);
            fprintf(f, "</td>");
        }
        format_other(gr, cell, sizeof cell);
        fprintf(f, "<td>");
        html_text(f, cell);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n");
}

static int write_html(const struct report *r, struct invar_store *db, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<title>invar report: ");
    html_text(f, r->sweep);
    fprintf(f, "</title>\n<style>\n"
               "body{font-family:sans-serif;margin:2em;max-width:1000px}\n"
               "table{border-collapse:collapse;margin:1em 0}\n"
               "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\n"
               "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
               "tr.best{background:#eef8ee;font-weight:bold}\n"
               "figure{margin:1.5em 0}\n"
               "</style>\n</head>\n<body>\n<h1>Sweep ");
    html_text(f, r->sweep);
    size_t total = 0;
    for (size_t g = 0; g < r->n_groups; g++)
        total += r->groups[g].n_runs;
    fprintf(f,
            "</h1>\n<p>%zu runs in %zu groups. Cells: mean &plusmn; sample std (n) of the "
            "final value over each group's finished runs. &#9733; marks the best ",
            total, r->n_groups);
    html_text(f, r->metrics[r->best_metric]);
    fprintf(f, ".</p>\n");
    html_table(f, r);
    int rc = 0;
    fprintf(f, "<h2>Final metrics</h2>\n");
    for (size_t k = 0; k < r->n_keys && !rc; k++)
        for (size_t m = 0; m < r->n_metrics && !rc; m++) {
            size_t have = 0;
            for (size_t g = 0; g < r->n_groups; g++)
                have += r->groups[g].cell[m].n;
            if (!have)
                continue;
            fprintf(f, "<figure>\n");
            rc = plot(f, script_metric, r, k * r->n_metrics + m);
            fprintf(f, "\n</figure>\n");
        }
    if (!rc) {
        fprintf(f, "<h2>Training curves</h2>\n<figure>\n");
        curves_ctx = (struct curves){r, db};
        rc = plot(f, script_curves, r, 0);
        fprintf(f, "\n</figure>\n");
    }
    fprintf(f, "</body>\n</html>\n");
    if (fclose(f) != 0 && !rc) {
        cli_error("%s: %s", path, strerror(errno));
        rc = 1;
    }
    if (rc)
        remove(path);
    return rc;
}

/* ---- the command -------------------------------------------------------------------------- */

struct report_args {
    const char *sweep, *by, *metric, *csv, *html;
};

static int parse_args(struct report_args *a, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char **opt = !strcmp(s, "--sweep")    ? &a->sweep
                           : !strcmp(s, "--by")     ? &a->by
                           : !strcmp(s, "--metric") ? &a->metric
                           : !strcmp(s, "--csv")    ? &a->csv
                           : !strcmp(s, "--html")   ? &a->html
                                                    : NULL;
        if (!opt) {
            cli_error("report: unexpected argument `%s` (see `invar report --help`)", s);
            return 1;
        }
        if (i + 1 == argc) {
            cli_error("report: %s needs a value", s);
            return 1;
        }
        *opt = argv[++i];
    }
    return 0;
}

/* The sweep of the most recent run that belongs to one; heap string. */
static char *latest_sweep(struct invar_store *db)
{
    struct invar_error err = {{0}};
    struct invar_store_run_list all = {0};
    if (invar_store_list_runs(db, NULL, &all, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return NULL;
    }
    char *name = NULL;
    for (size_t i = all.count; i-- > 0 && !name;)
        if (all.runs[i].sweep)
            name = strdup(all.runs[i].sweep);
    invar_store_run_list_deinit(&all);
    if (!name)
        cli_error("report: no sweep in %s (run `invar sweep` first, or give --sweep)",
                  invar_store_path(db));
    return name;
}

int cmd_report(const struct cli_globals *g, int argc, char **argv)
{
    struct report_args a = {0};
    if (parse_args(&a, argc, argv))
        return 2;
    static struct report r;
    memset(&r, 0, sizeof r);
    char *latest = NULL;
    int rc = 1;
    struct invar_store *db = cli_store_open(g);
    if (!db)
        return 1;
    if (!a.sweep && !(a.sweep = latest = latest_sweep(db)))
        goto out;
    r.sweep = a.sweep;
    static const char *const defaults[] = {"knn_top1", "linear_top1", "loss"};
    for (size_t m = 0; m < 3; m++)
        r.metrics[r.n_metrics++] = defaults[m];
    if (a.metric) {
        size_t m = 0;
        while (m < r.n_metrics && strcmp(r.metrics[m], a.metric))
            m++;
        if (m == r.n_metrics)
            r.metrics[r.n_metrics++] = a.metric;
        r.best_metric = m;
    }
    size_t used = 0;
    if (load_runs(db, &r) || (a.by ? add_key_list(&r, a.by, &used) : default_keys(&r)) ||
        load_metrics(db, &r))
        goto out;
    if (build_groups(&r)) {
        cli_error("out of memory");
        goto out;
    }
    print_table(&r);
    if (a.metric && r.best == (size_t)-1)
        cli_warn("report: no finished run has a `%s` value", a.metric);
    rc = 0;
    if (a.csv && write_csv(&r, a.csv))
        rc = 1;
    if (!rc && a.html && write_html(&r, db, a.html))
        rc = 1;
out:
    for (size_t i = 0; r.runs && i < r.list.count; i++) {
        for (size_t k = 0; k < r.n_keys; k++) {
            free((char *)r.runs[i].ident[k]);
            free((char *)r.runs[i].label[k]);
        }
        invar_store_param_list_deinit(&r.runs[i].params);
    }
    for (size_t gi = 0; r.groups && gi < r.n_groups; gi++)
        free(r.groups[gi].runs);
    free(r.groups);
    free(r.runs);
    invar_store_run_list_deinit(&r.list);
    free(latest);
    invar_store_close(db);
    return rc;
}
