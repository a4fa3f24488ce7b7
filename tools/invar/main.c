/* invar — train, evaluate and inspect self-supervised experiments (DESIGN §5).
 *
 *     invar [--db FILE] [--plugin-path DIRS] COMMAND [ARGS...]
 *
 * This file holds the global options, the command table and the shared helpers; each command
 * group lives in its own file.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../blas_env.h"
#include "cli.h"

static const struct cli_command commands[] = {
    {"run", cmd_run, "train and evaluate one run (or continue one with --resume)",
     "invar run EXP.yaml [KEY=VALUE...] [--resume RUN] [--checkpoint-dir DIR]"},
    {"sweep", cmd_sweep, "run every trial of an experiment's sweep, N processes at once",
     "invar sweep EXP.yaml [-j N] [KEY=V1,V2,...] [KEY=V...] [--dry-run] [--name NAME]"},
    {"report", cmd_report, "tables (mean ± std over seeds) and plots of a sweep",
     "invar report [--sweep NAME] [--by KEYS] [--metric M] [--csv F] [--html F]"},
    {"eval", cmd_eval, "evaluate a run's checkpoint: kNN, linear probe, k-means, invariance",
     "invar eval RUN [--knn] [--linear] [--cluster [--k N]] [--invariance]\n"
     "               [--features head|backbone] [--size N] [eval.KEY=VALUE...]\n\n"
     "  --knn        weighted kNN, training features as memory (knn_top1, knn_top5)\n"
     "  --linear     the linear probe (linear_top1; also runs kNN)\n"
     "  --cluster    k-means on the L2-normalised test features, scored against the labels:\n"
     "               cluster_acc (percent, Hungarian matching) and cluster_nmi (0 to 1)\n"
     "  --k N        clusters for --cluster (default: the dataset's number of classes)\n"
     "  --invariance for each augmentation step, the mean cosine similarity of the test\n"
     "               images' features and their augmented copies' (1: invariant), as\n"
     "               invariance/<plugin> (invariance/<plugin>.K when a plugin has several\n"
     "               steps), and invariance/baseline: two different images' similarity\n"
     "  --features F  what every protocol asked for classifies: head (the encoder's output)\n"
     "               or backbone (the representation under its projection head); without\n"
     "               it kNN and the probe follow eval.knn.features and\n"
     "               eval.linear.features, --cluster and --invariance use the head\n"
     "  --size N     kNN, the probe and --cluster embed the images resized to N x N\n"
     "               (bilinear); without it kNN and the probe follow eval.knn.size and\n"
     "               eval.linear.size, --cluster takes the images as stored\n"
     "  eval.knn.KEY=VALUE, eval.linear.KEY=VALUE\n"
     "               kNN's and the probe's settings for this evaluation instead of the\n"
     "               run's (k, t, size, features; epochs, lr, batch_size,\n"
     "               weight_decay, size, features); the run's params follow\n"
     "\nWith no flag: --knn --linear. Results are added to the run's metrics."},
    {"embed", cmd_embed, "write a split's embeddings as NumPy .npy (float32) plus labels",
     "invar embed RUN --out F.npy [--split train|test] [--features head|backbone]\n"
     "            [--size N]\n\n"
     "  --size N  embed the images resized to N x N (bilinear); default: as stored"},
    {"preview", cmd_preview, "write a PNG grid of original images and their augmented views",
     "invar preview EXP.yaml --out grid.png [-n N] [KEY=VALUE...]"},
    {"plugins", cmd_plugins, "list plugins, or describe one's parameters",
     "invar plugins [describe NAME]"},
    {"new", cmd_new, "scaffold an out-of-tree plugin (source, meson.build, test)",
     "invar new KIND NAME [--dir D]   (KIND: dataset, augment, encoder, objective)"},
    {NULL, NULL, NULL, NULL},
};

static void vreport(const char *what, const char *fmt, va_list ap)
{
    char line[2 * INVAR_ERROR_MAX];
    vsnprintf(line, sizeof line, fmt, ap);
    /* One line per message: scripts grep stderr. */
    for (char *p = line; *p; p++)
        if (*p == '\n')
            *p = ' ';
    fprintf(stderr, "invar: %s%s\n", what, line);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("", fmt, ap);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("warning: ", fmt, ap);
    va_end(ap);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

void cli_print_usage(const struct cli_command *c)
{
    printf("usage: %s\n\n%s\n", c->usage, c->help);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return (size_t)-1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

const char *cli_suggest(const struct cli_command *table, const char *name)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (const struct cli_command *c = table; c->name; c++) {
        size_t d = edit_distance(name, c->name);
        if (d < best_d)
            best_d = d, best = c->name;
    }
    /* A prefix ("pl") or up to two typos ("rnu", "plugns") is a plausible slip. */
    if (best && best_d > 2 && strncmp(best, name, strlen(name)) != 0)
        return NULL;
    return best;
}

int cli_dispatch(const struct cli_command *table, const char *group, const struct cli_globals *g,
                 int argc, char **argv)
{
    for (const struct cli_command *c = table; c->name; c++)
        if (!strcmp(c->name, argv[0])) {
            if (cli_wants_help(argc - 1, argv + 1)) {
                cli_print_usage(c);
                return 0;
            }
            return c->run(g, argc - 1, argv + 1);
        }
    const char *near = cli_suggest(table, argv[0]);
    if (near)
        cli_error("unknown %s `%s`, did you mean `%s`? (see `invar --help`)", group, argv[0], near);
    else
        cli_error("unknown %s `%s` (see `invar --help`)", group, argv[0]);
    return 2;
}

struct invar_registry *cli_registry_open(const struct cli_globals *g, int warn)
{
    struct invar_registry *reg;
    struct invar_error err = {{0}};
    if (invar_registry_create(&reg) != INVAR_OK) {
        cli_error("out of memory");
        return NULL;
    }
    if (invar_registry_scan(reg, g->plugin_path, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        invar_registry_destroy(reg);
        return NULL;
    }
    if (warn)
        for (size_t i = 0; i < invar_registry_refusal_count(reg); i++)
            cli_warn("%s", invar_registry_refusal_at(reg, i)->msg);
    return reg;
}

struct invar_store *cli_store_open(const struct cli_globals *g)
{
    struct invar_store *db;
    struct invar_error err = {{0}};
    if (invar_store_open(&db, g->db, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return NULL;
    }
    return db;
}

int cli_checkpoint_path(const struct cli_globals *g, const char *dir, const char *uuid, char *out,
                        size_t n)
{
    char dirbuf[4096 + 16];
    if (!dir) {
        /* Absolute, so that eval and embed find it from any working directory. */
        char copy[4096], real[PATH_MAX];
        snprintf(copy, sizeof copy, "%s", g->db);
        const char *parent = dirname(copy);
        snprintf(dirbuf, sizeof dirbuf, "%s/checkpoints", realpath(parent, real) ? real : parent);
        dir = dirbuf;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        cli_error("%s: %s", dir, strerror(errno));
        return 1;
    }
    if ((size_t)snprintf(out, n, "%s/%s.ckpt", dir, uuid) >= n) {
        cli_error("%s: checkpoint path too long", dir);
        return 1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: invar [--db FILE] [--plugin-path DIRS] [--version] COMMAND [ARGS...]\n\n"
               "commands:\n");
    for (const struct cli_command *c = commands; c->name; c++)
        fprintf(f, "  %-9s %s\n", c->name, c->help);
    fprintf(f, "\noptions:\n"
               "  --db FILE           results database (default $INVAR_DB or results.db)\n"
               "  --plugin-path DIRS  colon-separated plugin directories searched first\n"
               "  --help              help for invar or for a command\n"
               "  --version           print the version\n");
}

/* Global options may come before the command or anywhere after it. */
static int take_globals(struct cli_globals *g, int *argc, char **argv)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--db")            ? &g->db
                            : !strcmp(a, "--plugin-path") ? &g->plugin_path
                                                          : NULL;
        if (slot) {
            if (i + 1 == *argc) {
                cli_error("%s needs a value", a);
                return 1;
            }
            *slot = argv[++i];
        } else if (!strncmp(a, "--db=", 5)) {
            g->db = a + 5;
        } else if (!strncmp(a, "--plugin-path=", 14)) {
            g->plugin_path = a + 14;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    blas_env_apply(argv);
    static char cmdline[8192];
    size_t len = 0;
    for (int i = 0; i < argc && len + 1 < sizeof cmdline; i++)
        len += (size_t)snprintf(cmdline + len, sizeof cmdline - len, "%s%s", i ? " " : "", argv[i]);
    struct cli_globals g = {.db = getenv("INVAR_DB"), .argv0 = argv[0], .command_line = cmdline};
    if (!g.db || !*g.db)
        g.db = "results.db";
    argc--, argv++;
    if (take_globals(&g, &argc, argv))
        return 2;
    if (argc == 0) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[0], "--version") || !strcmp(argv[0], "version")) {
        printf("invar %s\n", invar_version());
        return 0;
    }
    if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
        usage(stdout);
        return 0;
    }
    if (argv[0][0] == '-') {
        cli_error("unknown option `%s` (see `invar --help`)", argv[0]);
        return 2;
    }
    return cli_dispatch(commands, "command", &g, argc, argv);
}
