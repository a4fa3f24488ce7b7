/* The `invar` command: shared declarations of its command groups.
 *
 * Each command group lives in its own file and exports one handler per subcommand; main.c
 * holds the table that maps names to handlers. Handlers return the process exit status
 * (0 only on success) and report problems through cli_error, one line on stderr:
 *     invar: <file:line:col or plugin file>: <message>
 */
#ifndef INVAR_CLI_H
#define INVAR_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <invar/core.h>
#include <invar/plugin.h>
#include <invar/registry.h>
#include <invar/store.h>

#define CLI_MAX_ARGS 256

/* Options every command accepts. */
struct cli_globals {
    const char *db;          /* --db, $INVAR_DB, or "results.db" */
    const char *plugin_path; /* --plugin-path, or NULL */
    const char *argv0;
    const char *command_line; /* the whole command line, for the run's provenance */
};

/* A (sub)command: name, handler, one line of help. Tables end with a {NULL} sentinel. */
struct cli_command {
    const char *name;
    int (*run)(const struct cli_globals *g, int argc, char **argv);
    const char *help;
    const char *usage; /* full usage for --help */
};

INVAR_PRINTF(1, 2) void cli_error(const char *fmt, ...);
INVAR_PRINTF(1, 2) void cli_warn(const char *fmt, ...);

/* True when argv holds -h or --help before a "--". */
int cli_wants_help(int argc, char **argv);
/* Prints "usage: ..." for a command to stdout. */
void cli_print_usage(const struct cli_command *c);
/* Dispatches argv[0] through table; prints a suggestion for an unknown name. */
int cli_dispatch(const struct cli_command *table, const char *group, const struct cli_globals *g,
                 int argc, char **argv);
/* The name in table nearest to name, or NULL when none is close. */
const char *cli_suggest(const struct cli_command *table, const char *name);

/* Creates a registry and scans the search path; refusals become warnings on stderr
 * when warn is set. Returns NULL (after printing) on failure. */
struct invar_registry *cli_registry_open(const struct cli_globals *g, int warn);
/* Opens the results database; NULL (after printing) on failure. */
struct invar_store *cli_store_open(const struct cli_globals *g);
/* "<dir of db>/checkpoints/<uuid>.ckpt", or under dir when it is not NULL. */
int cli_checkpoint_path(const struct cli_globals *g, const char *dir, const char *uuid, char *out,
                        size_t n);

/* ---- the experiment (experiment.c, job.c) ------------------------------------------------- */

/* A loaded experiment: the handle (struct invar_experiment *, kept out of the other files so a
 * change in the experiment API touches experiment.c and job.c only) and what the commands read
 * of it. */
struct cli_experiment {
    void *handle; /* struct invar_experiment * */
    const char *name;
    const char *canonical, *hash;
    int64_t seed;
    int64_t limit;
    int64_t knn_k;
    double knn_t;
    size_t n_params;
};

/* Loads path (or, with text, the given YAML) with overrides through reg. Prints the error
 * and returns nonzero on failure. */
int cli_experiment_load(struct cli_experiment *x, const char *path, const char *text,
                        const char *const *overrides, size_t n_overrides,
                        const struct invar_registry *reg);
void cli_experiment_unload(struct cli_experiment *x);
void cli_experiment_param(const struct cli_experiment *x, size_t i, const char **key,
                          const char **value);

/* ---- command groups --------------------------------------------------------------------- */

int cmd_plugins(const struct cli_globals *g, int argc, char **argv);
int cmd_run(const struct cli_globals *g, int argc, char **argv);
int cmd_eval(const struct cli_globals *g, int argc, char **argv);
int cmd_embed(const struct cli_globals *g, int argc, char **argv);
int cmd_preview(const struct cli_globals *g, int argc, char **argv);
int cmd_new(const struct cli_globals *g, int argc, char **argv);
int cmd_sweep(const struct cli_globals *g, int argc, char **argv);
int cmd_report(const struct cli_globals *g, int argc, char **argv);

#endif
