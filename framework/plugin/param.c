/* Parameter tables: typing YAML scalars into plugin config structs, and printing them back.
 *
 * Every value goes through parse_value (text -> union value, all checks) and then one memcpy
 * into the config, so a failed set leaves the field untouched and the loader can validate a
 * default without a config struct at hand.
 */
#include <errno.h>
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invar/registry.h"
#include "plugin_internal.h"

struct type_info {
    const char *name;
    size_t size; /* bytes of the field in the config struct */
    size_t align;
    const char *expected; /* "expected ..." in messages */
};

static const struct type_info type_infos[] = {
    [INVAR_TYPE_BOOL] = {"bool", sizeof(int), alignof(int), "true or false"},
    [INVAR_TYPE_INT] = {"int", sizeof(int64_t), alignof(int64_t), "an integer"},
    [INVAR_TYPE_FLOAT] = {"float", sizeof(double), alignof(double), "a number"},
    [INVAR_TYPE_STRING] = {"string", INVAR_STR_MAX, 1, "a string"},
    [INVAR_TYPE_ENUM] = {"enum", sizeof(int), alignof(int), "one word"},
    [INVAR_TYPE_RANGE] = {"range", 2 * sizeof(double), alignof(double),
                          "a list of two numbers [lo, hi]"},
};
#define TYPE_COUNT (sizeof type_infos / sizeof type_infos[0])
_Static_assert(TYPE_COUNT == INVAR_TYPE_RANGE + 1, "type_infos must cover every param type");

/* A table without its INVAR_PARAM_END would run off into the plugin's data: stop here. */
#define TABLE_MAX 4096
#define KEY_MAX 64
/* Values quoted back in messages are cut here so a binary blob stays one readable line. */
#define SHOW "%.80s"

union value {
    int b;
    int64_t i;
    double f;
    char s[INVAR_STR_MAX];
    int e;
    double r[2];
};

static const struct type_info *type_info(enum invar_param_type t)
{
    if ((unsigned)t == 0 || (unsigned)t >= TYPE_COUNT)
        return NULL;
    return &type_infos[t];
}

const char *invar_param_type_name(enum invar_param_type type)
{
    const struct type_info *ti = type_info(type);
    return ti ? ti->name : "unknown";
}

size_t invar_param_count(const struct invar_param_spec *table)
{
    size_t n = 0;
    while (table && table[n].key)
        n++;
    return n;
}

const struct invar_param_spec *invar_param_find(const struct invar_param_spec *table,
                                                const char *key)
{
    for (size_t i = 0; table && key && table[i].key; i++)
        if (strcmp(table[i].key, key) == 0)
            return &table[i];
    return NULL;
}

const char *invar_param_suggest(const struct invar_param_spec *table, const char *key)
{
    struct suggest s;
    suggest_init(&s, key);
    for (size_t i = 0; table && table[i].key; i++)
        suggest_offer(&s, table[i].key);
    return suggest_result(&s);
}

/* ---- numbers -------------------------------------------------------------------------------- */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* YAML 1.2 core schema integer: [-+]?[0-9]+ */
static int is_yaml_int(const char *s)
{
    if (*s == '+' || *s == '-')
        s++;
    if (!is_digit(*s))
        return 0;
    while (is_digit(*s))
        s++;
    return *s == '\0';
}

/* YAML 1.2 core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
 * An exponent alone makes a float ("1e-4"); hex, "inf" and "nan" are not numbers here. */
static int is_yaml_float(const char *s)
{
    int digits = 0;
    if (*s == '+' || *s == '-')
        s++;
    for (; is_digit(*s); s++)
        digits++;
    if (*s == '.')
        for (s++; is_digit(*s); s++)
            digits++;
    if (!digits)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!is_digit(*s))
            return 0;
        while (is_digit(*s))
            s++;
    }
    return *s == '\0';
}

/* The shortest "%.Ng" that reads back to exactly x, with the exponent written plainly
 * ("1e-05" -> "1e-5"), so one value has one spelling. */
static void fmt_double(char *buf, size_t n, double x)
{
    if (isnan(x)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, n, x < 0 ? "-inf" : "inf");
        return;
    }
    if (x == 0)
        x = 0; /* -0 and 0 are the same setting */
    char tmp[40];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    snprintf(tmp, sizeof tmp, "%.*g", p, x);
    /* %g goes scientific once the exponent reaches the precision: 10 would be "1e+01". Whole
     * numbers below 1e17 read better written out, and still read back exactly. */
    char sci[40];
    snprintf(sci, sizeof sci, "%.*e", p - 1, x);
    int exp10 = atoi(strchr(sci, 'e') + 1);
    if (exp10 >= p && exp10 < 17) {
        char plain[40];
        snprintf(plain, sizeof plain, "%.*g", exp10 + 1, x);
        if (strtod(plain, NULL) == x)
            memcpy(tmp, plain, sizeof tmp);
    }
    char *e = strchr(tmp, 'e');
    if (e) {
        const char *q = e + 1;
        int neg = *q == '-';
        if (*q == '+' || *q == '-')
            q++;
        while (*q == '0' && q[1])
            q++;
        char exp[8];
        snprintf(exp, sizeof exp, "%s", q);
        snprintf(e, sizeof tmp - (size_t)(e - tmp), "e%s%s", neg ? "-" : "", exp);
    }
    snprintf(buf, n, "%s", tmp);
}

/* Bounds of INT fields print as integers; the others as floats. */
static void fmt_bound(char *buf, size_t n, enum invar_param_type t, double x)
{
    if (t == INVAR_TYPE_INT && isfinite(x) && fabs(x) < 9.2e18 && x == floor(x))
        snprintf(buf, n, "%.0f", x);
    else
        fmt_double(buf, n, x);
}

static enum invar_status range_error(const struct invar_param_spec *spec, const char *what,
                                     const char *text, struct invar_error *err)
{
    char lo[40], hi[40];
    fmt_bound(lo, sizeof lo, spec->type, spec->min);
    fmt_bound(hi, sizeof hi, spec->type, spec->max);
    return invar_error_set(err, INVAR_ERR_CONFIG, "%s: %s" SHOW " is out of range [%s, %s]",
                           spec->key, what, text, lo, hi);
}

/* "expected <what the type takes>"; what names the element of a RANGE ("" otherwise). */
static enum invar_status type_error(const struct invar_param_spec *spec, const char *what,
                                    const char *text, int quoted, struct invar_error *err)
{
    const char *expected = type_info(spec->type)->expected;
    if (quoted)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "%s: expected %s, got the string \"" SHOW "\"%s "
                               "(a quoted value stays a string)",
                               spec->key, expected, text, what);
    return invar_error_set(err, INVAR_ERR_CONFIG, "%s: expected %s, got '" SHOW "'%s", spec->key,
                           expected, text, what);
}

/* One number of a FLOAT or RANGE field; what says which element ("" or " as lo"). */
static enum invar_status parse_number(const struct invar_param_spec *spec, const char *text,
                                      int quoted, const char *what, double *out,
                                      struct invar_error *err)
{
    if (quoted || !is_yaml_float(text))
        return type_error(spec, what, text, quoted, err);
    errno = 0;
    double v = strtod(text, NULL);
    if (!isfinite(v))
        return range_error(spec, "", text, err);
    if (!(v >= spec->min && v <= spec->max))
        return range_error(spec, "", text, err);
    *out = v;
    return INVAR_OK;
}

/* ---- text -> value -------------------------------------------------------------------------- */

/* The index of word in an ENUM's "a|b|c", or -1. */
static int enum_index(const char *allowed, const char *word, size_t len)
{
    int idx = 0;
    for (const char *p = allowed; p; idx++) {
        const char *bar = strchr(p, '|');
        size_t wl = bar ? (size_t)(bar - p) : strlen(p);
        if (wl == len && memcmp(p, word, len) == 0)
            return idx;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Copies [b, e) trimmed into out; a surrounding pair of quotes is removed and reported.
 * Returns 0 when it does not fit (no number needs that many characters). */
static int take_element(const char *b, const char *e, char *out, size_t n, int *quoted)
{
    while (b < e && is_space(*b))
        b++;
    while (e > b && is_space(e[-1]))
        e--;
    *quoted = 0;
    if (e - b >= 2 && (*b == '"' || *b == '\'') && e[-1] == *b) {
        b++;
        e--;
        *quoted = 1;
    }
    size_t len = (size_t)(e - b);
    if (len >= n)
        return 0;
    memcpy(out, b, len);
    out[len] = '\0';
    return 1;
}

static enum invar_status parse_range(const struct invar_param_spec *spec, const char *lo, int lo_q,
                                     const char *hi, int hi_q, union value *v,
                                     struct invar_error *err)
{
    enum invar_status st = parse_number(spec, lo, lo_q, " as lo", &v->r[0], err);
    if (st == INVAR_OK)
        st = parse_number(spec, hi, hi_q, " as hi", &v->r[1], err);
    if (st != INVAR_OK)
        return st;
    if (v->r[0] > v->r[1])
        return invar_error_set(err, INVAR_ERR_CONFIG, "%s: lo " SHOW " is greater than hi " SHOW,
                               spec->key, lo, hi);
    return INVAR_OK;
}

static enum invar_status parse_value(const struct invar_param_spec *spec, const char *text,
                                     int quoted, union value *v, struct invar_error *err)
{
    memset(v, 0, sizeof *v);
    switch (spec->type) {
    case INVAR_TYPE_BOOL: {
        /* YAML 1.2 core booleans only: "yes", "on" and "1" are not switches. */
        static const char *const words[] = {"false", "False", "FALSE", "true", "True", "TRUE"};
        for (int i = 0; !quoted && i < 6; i++)
            if (strcmp(text, words[i]) == 0) {
                v->b = i >= 3;
                return INVAR_OK;
            }
        return type_error(spec, "", text, quoted, err);
    }
    case INVAR_TYPE_INT: {
        if (quoted || !is_yaml_int(text))
            return type_error(spec, "", text, quoted, err);
        errno = 0;
        long long x = strtoll(text, NULL, 10);
        if (errno == ERANGE || !((double)x >= spec->min && (double)x <= spec->max))
            return range_error(spec, "", text, err);
        v->i = x;
        return INVAR_OK;
    }
    case INVAR_TYPE_FLOAT:
        return parse_number(spec, text, quoted, "", &v->f, err);
    case INVAR_TYPE_STRING: {
        size_t len = strlen(text);
        if (len >= INVAR_STR_MAX)
            return invar_error_set(err, INVAR_ERR_CONFIG,
                                   "%s: the string is %zu bytes long, at most %d are allowed",
                                   spec->key, len, INVAR_STR_MAX - 1);
        memcpy(v->s, text, len + 1);
        return INVAR_OK;
    }
    case INVAR_TYPE_ENUM: {
        int idx = spec->allowed ? enum_index(spec->allowed, text, strlen(text)) : -1;
        if (idx < 0)
            return invar_error_set(err, INVAR_ERR_CONFIG, "%s: '" SHOW "' is not one of %s",
                                   spec->key, text, spec->allowed ? spec->allowed : "(none)");
        v->e = idx;
        return INVAR_OK;
    }
    case INVAR_TYPE_RANGE: {
        const char *b = text, *e = text + strlen(text);
        while (b < e && is_space(*b))
            b++;
        while (e > b && is_space(e[-1]))
            e--;
        const char *comma = b < e ? memchr(b, ',', (size_t)(e - b)) : NULL;
        if (quoted || e - b < 2 || *b != '[' || e[-1] != ']' || !comma ||
            memchr(comma + 1, ',', (size_t)(e - comma - 1)))
            return type_error(spec, "", text, quoted, err);
        char lo[64], hi[64];
        int lo_q, hi_q;
        if (!take_element(b + 1, comma, lo, sizeof lo, &lo_q) ||
            !take_element(comma + 1, e - 1, hi, sizeof hi, &hi_q))
            return type_error(spec, "", text, quoted, err);
        return parse_range(spec, lo, lo_q, hi, hi_q, v, err);
    }
    }
    return invar_error_set(err, INVAR_ERR_INVALID, "%s: unknown parameter type %d", spec->key,
                           (int)spec->type);
}

static void store_value(const struct invar_param_spec *spec, void *config, const union value *v)
{
    memcpy((char *)config + spec->offset, v, type_info(spec->type)->size);
}

enum invar_status invar_param_set(const struct invar_param_spec *spec, void *config,
                                  const char *text, int quoted, struct invar_error *err)
{
    INVAR_ASSERT(spec && spec->key && config && text);
    union value v;
    enum invar_status st = parse_value(spec, text, quoted, &v, err);
    if (st == INVAR_OK)
        store_value(spec, config, &v);
    return st;
}

enum invar_status invar_param_set_range(const struct invar_param_spec *spec, void *config,
                                        const char *lo, int lo_quoted, const char *hi,
                                        int hi_quoted, struct invar_error *err)
{
    INVAR_ASSERT(spec && spec->key && config && lo && hi);
    if (spec->type != INVAR_TYPE_RANGE)
        return invar_error_set(
            err, INVAR_ERR_CONFIG, "%s: expected %s, got a list [" SHOW ", " SHOW "]", spec->key,
            type_info(spec->type) ? type_info(spec->type)->expected : "?", lo, hi);
    union value v;
    memset(&v, 0, sizeof v);
    enum invar_status st = parse_range(spec, lo, lo_quoted, hi, hi_quoted, &v, err);
    if (st == INVAR_OK)
        store_value(spec, config, &v);
    return st;
}

/* ---- value -> text -------------------------------------------------------------------------- */

size_t invar_param_format(const struct invar_param_spec *spec, const void *config, char *buf,
                          size_t n)
{
    INVAR_ASSERT(spec && type_info(spec->type) && config);
    union value v;
    memset(&v, 0, sizeof v);
    memcpy(&v, (const char *)config + spec->offset, type_info(spec->type)->size);
    char tmp[INVAR_PARAM_TEXT_MAX], a[40], b[40];
    switch (spec->type) {
    case INVAR_TYPE_BOOL:
        snprintf(tmp, sizeof tmp, "%s", v.b ? "true" : "false");
        break;
    case INVAR_TYPE_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.i);
        break;
    case INVAR_TYPE_FLOAT:
        fmt_double(tmp, sizeof tmp, v.f);
        break;
    case INVAR_TYPE_STRING:
        snprintf(tmp, sizeof tmp, "%.*s", (int)strnlen(v.s, INVAR_STR_MAX - 1), v.s);
        break;
    case INVAR_TYPE_ENUM: {
        const char *p = spec->allowed;
        for (int i = 0; p && i < v.e; i++) {
            p = strchr(p, '|');
            p = p ? p + 1 : NULL;
        }
        if (!p || v.e < 0) {
            snprintf(tmp, sizeof tmp, "#%d", v.e); /* only a corrupted config gets here */
            break;
        }
        const char *bar = strchr(p, '|');
        snprintf(tmp, sizeof tmp, "%.*s", (int)(bar ? (size_t)(bar - p) : strlen(p)), p);
        break;
    }
    case INVAR_TYPE_RANGE:
        fmt_double(a, sizeof a, v.r[0]);
        fmt_double(b, sizeof b, v.r[1]);
        snprintf(tmp, sizeof tmp, "[%s, %s]", a, b);
        break;
    }
    size_t len = strlen(tmp);
    if (n > 0)
        snprintf(buf, n, "%s", tmp);
    return len;
}

/* ---- tables --------------------------------------------------------------------------------- */

static int key_ok(const char *k)
{
    size_t len = strlen(k);
    if (len == 0 || len >= KEY_MAX || is_digit(k[0]))
        return 0;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || is_digit(*k) || *k == '_'))
            return 0;
    return 1;
}

static enum invar_status check_enum_words(const struct invar_param_spec *s, struct invar_error *err)
{
    if (!s->allowed || !s->allowed[0])
        return invar_error_set(err, INVAR_ERR_PLUGIN,
                               "parameter table: '%s' is an ENUM without allowed values", s->key);
    int idx = 0;
    for (const char *p = s->allowed; p; idx++) {
        const char *bar = strchr(p, '|');
        size_t wl = bar ? (size_t)(bar - p) : strlen(p);
        if (wl == 0)
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "parameter table: '%s' has an empty word in '%s'", s->key,
                                   s->allowed);
        if (enum_index(s->allowed, p, wl) != idx)
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "parameter table: '%s' lists '%.*s' twice in '%s'", s->key,
                                   (int)wl, p, s->allowed);
        p = bar ? bar + 1 : NULL;
    }
    return INVAR_OK;
}

enum invar_status invar_param_check_table(const struct invar_param_spec *table, size_t config_size,
                                          struct invar_error *err)
{
    size_t i;
    for (i = 0; table && table[i].key && i < TABLE_MAX; i++) {
        const struct invar_param_spec *s = &table[i];
        const struct type_info *ti = type_info(s->type);
        if (!key_ok(s->key))
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "parameter table: bad key '" SHOW "' (use [a-z0-9_], "
                                   "not starting with a digit, under %d characters)",
                                   s->key, KEY_MAX);
        for (size_t j = 0; j < i; j++)
            if (strcmp(table[j].key, s->key) == 0)
                return invar_error_set(err, INVAR_ERR_PLUGIN,
                                       "parameter table: key '%s' appears twice", s->key);
        if (!ti)
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "parameter table: '%s' has unknown type %d", s->key,
                                   (int)s->type);
        if (s->offset > config_size || ti->size > config_size - s->offset)
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "parameter table: '%s' (%s, %zu bytes at offset %zu) lies "
                                   "beyond the %zu-byte config struct",
                                   s->key, ti->name, ti->size, s->offset, config_size);
        if (s->offset % ti->align)
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "parameter table: '%s' (%s) is at misaligned offset %zu", s->key,
                                   ti->name, s->offset);
        int bounded =
            s->type == INVAR_TYPE_INT || s->type == INVAR_TYPE_FLOAT || s->type == INVAR_TYPE_RANGE;
        if (bounded && !(s->min <= s->max)) {
            char lo[40], hi[40];
            fmt_bound(lo, sizeof lo, s->type, s->min);
            fmt_bound(hi, sizeof hi, s->type, s->max);
            return invar_error_set(err, INVAR_ERR_PLUGIN,
                                   "parameter table: '%s' has min %s > max %s", s->key, lo, hi);
        }
        if (s->type == INVAR_TYPE_ENUM) {
            enum invar_status st = check_enum_words(s, err);
            if (st != INVAR_OK)
                return st;
        }
        if (!s->def && s->type != INVAR_TYPE_STRING)
            return invar_error_set(err, INVAR_ERR_PLUGIN, "parameter table: '%s' has no default",
                                   s->key);
        union value v;
        if (parse_value(s, s->def ? s->def : "", 0, &v, err) != INVAR_OK) {
            invar_error_prefix(err, "parameter table: bad default");
            return INVAR_ERR_PLUGIN;
        }
    }
    if (table && i == TABLE_MAX)
        return invar_error_set(err, INVAR_ERR_PLUGIN,
                               "parameter table: no INVAR_PARAM_END within %d entries", TABLE_MAX);
    return INVAR_OK;
}

enum invar_status invar_param_defaults(const struct invar_param_spec *table, void *config,
                                       struct invar_error *err)
{
    for (size_t i = 0; table && table[i].key; i++) {
        const struct invar_param_spec *s = &table[i];
        if (!type_info(s->type))
            return invar_error_set(err, INVAR_ERR_PLUGIN, "%s: unknown parameter type %d", s->key,
                                   (int)s->type);
        enum invar_status st = invar_param_set(s, config, s->def ? s->def : "", 0, err);
        if (st != INVAR_OK) {
            invar_error_prefix(err, "bad default");
            return INVAR_ERR_PLUGIN;
        }
    }
    return INVAR_OK;
}

/* ---- plugin configs ------------------------------------------------------------------------- */

enum invar_status invar_plugin_config_create(const struct invar_plugin *desc, void **out,
                                             struct invar_error *err)
{
    INVAR_ASSERT(desc && out);
    *out = NULL;
    void *cfg = calloc(1, desc->config_size ? desc->config_size : 1);
    if (!cfg)
        return invar_error_set(err, INVAR_ERR_NOMEM, "%s: no memory for a %zu-byte config",
                               desc->name, desc->config_size);
    enum invar_status st = invar_param_defaults(desc->params, cfg, err);
    if (st != INVAR_OK) {
        invar_error_prefix(err, "plugin %s", desc->name);
        free(cfg);
        return st;
    }
    *out = cfg;
    return INVAR_OK;
}

void invar_plugin_config_destroy(void *config)
{
    free(config);
}

enum invar_status invar_plugin_config_check(const struct invar_plugin *desc, const void *config,
                                            struct invar_error *err)
{
    INVAR_ASSERT(desc && config);
    if (!desc->check)
        return INVAR_OK;
    if (err)
        err->msg[0] = '\0';
    enum invar_status st = desc->check(config, err);
    if (st != INVAR_OK && err && !err->msg[0])
        invar_error_set(err, st, "plugin %s: its config check failed", desc->name);
    return st;
}

/* ---- describe ------------------------------------------------------------------------------- */

static void describe_range(const struct invar_param_spec *s, char *buf, size_t n)
{
    char lo[40], hi[40];
    fmt_bound(lo, sizeof lo, s->type, s->min);
    fmt_bound(hi, sizeof hi, s->type, s->max);
    switch (s->type) {
    case INVAR_TYPE_BOOL:
        snprintf(buf, n, "true|false");
        break;
    case INVAR_TYPE_INT:
    case INVAR_TYPE_FLOAT:
        snprintf(buf, n, "[%s, %s]", lo, hi);
        break;
    case INVAR_TYPE_RANGE:
        snprintf(buf, n, "lo <= hi in [%s, %s]", lo, hi);
        break;
    case INVAR_TYPE_ENUM:
        snprintf(buf, n, "%s", s->allowed ? s->allowed : "");
        break;
    case INVAR_TYPE_STRING:
        snprintf(buf, n, "text");
        break;
    }
}

/* One row's default and range columns. */
static void describe_row(const struct invar_param_spec *s, const void *cfg, char *def, size_t nd,
                         char *range, size_t nr)
{
    if (cfg)
        invar_param_format(s, cfg, def, nd);
    else
        snprintf(def, nd, "%s", s->def ? s->def : "");
    if (s->type == INVAR_TYPE_STRING && !def[0])
        snprintf(def, nd, "\"\"");
    describe_range(s, range, nr);
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

enum invar_status invar_plugin_describe(const struct invar_plugin *desc, FILE *out)
{
    INVAR_ASSERT(desc && out);
    fprintf(out, "%s %s %s\n", invar_plugin_kind_name(desc->kind), desc->name,
            desc->version ? desc->version : "");
    if (desc->summary && desc->summary[0])
        fprintf(out, "  %s\n", desc->summary);
    size_t np = invar_param_count(desc->params);
    if (np == 0) {
        fprintf(out, "\nno parameters\n");
        return ferror(out) ? INVAR_ERR_IO : INVAR_OK;
    }
    /* Defaults are shown canonically ("1e-4" as "0.0001"), as they will be stored. */
    void *cfg = NULL;
    if (invar_plugin_config_create(desc, &cfg, NULL) != INVAR_OK)
        cfg = NULL;
    char def[INVAR_PARAM_TEXT_MAX], range[160];
    int wk = 3, wt = 4, wd = 7, wr = 5;
    for (size_t i = 0; i < np; i++) { /* first pass: column widths */
        const struct invar_param_spec *s = &desc->params[i];
        describe_row(s, cfg, def, sizeof def, range, sizeof range);
        wk = max_int(wk, (int)strlen(s->key));
        wt = max_int(wt, (int)strlen(invar_param_type_name(s->type)));
        wd = max_int(wd, (int)strlen(def));
        wr = max_int(wr, (int)strlen(range));
    }
    fprintf(out, "\n%-*s  %-*s  %-*s  %-*s  %s\n", wk, "key", wt, "type", wd, "default", wr,
            "range", "doc");
    for (size_t i = 0; i < np; i++) {
        const struct invar_param_spec *s = &desc->params[i];
        describe_row(s, cfg, def, sizeof def, range, sizeof range);
        fprintf(out, "%-*s  %-*s  %-*s  %-*s  %s\n", wk, s->key, wt, invar_param_type_name(s->type),
                wd, def, wr, range, s->doc ? s->doc : "");
    }
    invar_plugin_config_destroy(cfg);
    return ferror(out) ? INVAR_ERR_IO : INVAR_OK;
}
