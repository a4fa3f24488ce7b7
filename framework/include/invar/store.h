/* invar/store.h — the SQLite results database (runs, params, metrics).
 *
 *     struct invar_store *db;
 *     struct invar_error err = {0};
 *     if (invar_store_open(&db, "results.db", &err) != INVAR_OK)
 *         fail(err.msg);                                  // the message names the file
 *     int64_t run;
 *     invar_store_create_run(db, &(struct invar_store_new_run){
 *         .experiment = "moco-fmnist", .config = canon, .config_hash = hash, .seed = 1,
 *         .command = "invar run exp.yaml"}, &run, &err);
 *     invar_store_log_params(db, run, params, nparams, &err);
 *     for (epoch ...)
 *         invar_store_log_metric(db, run, "loss", step, epoch, loss, &err);
 *     invar_store_finish_run(db, run, INVAR_RUN_FINISHED, 0, NULL, &err);
 *     invar_store_close(db);
 *
 * Contract (DESIGN §6): WAL journal, a 10 s busy timeout plus retries around BEGIN IMMEDIATE,
 * foreign keys on, schema version in PRAGMA user_version, older databases upgraded in place on
 * open (in one transaction). Every write is its own committed BEGIN IMMEDIATE transaction, so a
 * crashed process never loses what it had already reported. Metrics commit without an fsync
 * (synchronous = NORMAL); milestones (run created, finished, resumed, checkpoint recorded) fsync
 * the WAL, and with it every earlier commit, so a power cut cannot lose a finished run's metrics.
 * Any number of processes may write to one file at once; never put it on a network filesystem.
 *
 * On open, a `running` row of this host whose process is gone (or whose pid now belongs to a
 * younger process) becomes `killed`, with an error text saying so.
 *
 * Tables (columns beyond DESIGN §6 are provenance):
 *   runs(id, uuid, experiment, sweep, config, config_hash, status, error, seed, started_at,
 *        finished_at, host, git_rev, invar_version, pid, pid_start, command, checkpoint, signal)
 *   params(run_id, key, value)          one row per key and run; value has NUMERIC affinity
 *   metrics(id, run_id, key, step, epoch, value, wall_time)
 * Timestamps (started_at, finished_at) are ISO-8601 UTC text, "2026-01-31T12:00:00.000Z";
 * metrics.wall_time is seconds since the Unix epoch (REAL), for plotting and rates. A NaN metric
 * value is stored as NULL and read back as NaN.
 *
 * Threads and processes: a handle serves one thread at a time. Each process opens its own, and
 * no handle may be open across a fork() whose child opens the same file without exec'ing first:
 * SQLite keeps per-process lock state that the fork copies, and the child then waits on locks
 * nobody holds. (A sweep forks its workers before opening, or has them exec.)
 *
 * Nothing here is async-signal-safe: a SIGINT handler sets a flag, and the main loop calls
 * invar_store_finish_run(..., INVAR_RUN_KILLED, SIGINT, ...).
 *
 * Strings returned in structs are owned by the struct and freed by its *_deinit; they stay valid
 * until then.
 */
#ifndef INVAR_STORE_H
#define INVAR_STORE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The schema version this library writes (PRAGMA user_version). */
#define INVAR_STORE_SCHEMA_VERSION 2
/* Characters in a run's uuid, without the NUL. */
#define INVAR_STORE_UUID_LEN 36

/* Append-only; the names are the database's status strings. */
enum invar_run_status {
    INVAR_RUN_RUNNING = 0,
    INVAR_RUN_FINISHED,
    INVAR_RUN_FAILED,
    INVAR_RUN_DIVERGED,
    INVAR_RUN_KILLED,
    INVAR_RUN_STATUS_COUNT
};

/* "running", "finished", ...; "unknown" out of range. Static storage. */
INVAR_API const char *invar_run_status_str(enum invar_run_status st);
/* The inverse; INVAR_ERR_INVALID for a name that is not a status. */
INVAR_API enum invar_status invar_run_status_parse(const char *name, enum invar_run_status *out);

struct invar_store;

/* Opens (creating if needed) and upgrades the database at path; ":memory:" works for tests.
 * Errors: INVAR_ERR_IO (cannot open or write the file), INVAR_ERR_FORMAT (not a database, or
 * not an invar database), INVAR_ERR_DB (schema newer than this library, other SQLite failures).
 * On failure *out is NULL. */
INVAR_API enum invar_status invar_store_open(struct invar_store **out, const char *path,
                                             struct invar_error *err);
/* Takes NULL. In a forked child it leaves the parent's connection alone and frees only the
 * child's copy of the handle; every other call there fails with INVAR_ERR_INVALID. */
INVAR_API void invar_store_close(struct invar_store *s);
/* The path given to open; valid until close. */
INVAR_API const char *invar_store_path(const struct invar_store *s);
/* How many dead `running` rows this open marked `killed`. */
INVAR_API size_t invar_store_reaped(const struct invar_store *s);

/* ---- writing ---------------------------------------------------------------------------- */

/* What the caller knows about a new run; the store adds uuid, started_at, host, pid,
 * git_rev (of the working directory's git checkout, NULL outside one) and invar_version. */
struct invar_store_new_run {
    const char *experiment;  /* required */
    const char *sweep;       /* sweep name, or NULL for a single run */
    const char *config;      /* canonical resolved config text, required */
    const char *config_hash; /* its hash, required */
    int64_t seed;
    const char *command; /* the full command line, or NULL */
};

/* Inserts a `running` row for this process; *run_id gets its id. */
INVAR_API enum invar_status invar_store_create_run(struct invar_store *s,
                                                   const struct invar_store_new_run *run,
                                                   int64_t *run_id, struct invar_error *err);

struct invar_store_param {
    const char *key;   /* "objective.momentum" */
    const char *value; /* "0.999" */
};

/* Inserts n params in one transaction; a key logged again for the run replaces its value. */
INVAR_API enum invar_status invar_store_log_params(struct invar_store *s, int64_t run_id,
                                                   const struct invar_store_param *params, size_t n,
                                                   struct invar_error *err);

struct invar_store_metric {
    const char *key;
    int64_t step;
    int64_t epoch;
    double value;
    double wall_time; /* seconds since the Unix epoch; ignored on input (the store fills it) */
};

/* One metric, one transaction. Any run takes metrics whatever its status (`invar eval` adds
 * results to finished runs). INVAR_ERR_NOT_FOUND when run_id names no run. */
INVAR_API enum invar_status invar_store_log_metric(struct invar_store *s, int64_t run_id,
                                                   const char *key, int64_t step, int64_t epoch,
                                                   double value, struct invar_error *err);
/* n metrics in one transaction (all or none). */
INVAR_API enum invar_status invar_store_log_metrics(struct invar_store *s, int64_t run_id,
                                                    const struct invar_store_metric *metrics,
                                                    size_t n, struct invar_error *err);

/* Ends a `running` run with a terminal status (not RUNNING), the signal that ended it (0 for
 * none) and an optional error text; fills finished_at. INVAR_ERR_NOT_FOUND for no such run,
 * INVAR_ERR_INVALID when the run is not running or status is RUNNING. */
INVAR_API enum invar_status invar_store_finish_run(struct invar_store *s, int64_t run_id,
                                                   enum invar_run_status status, int signal,
                                                   const char *error, struct invar_error *err);

/* Puts a `killed` or `failed` run back to `running` under this process (for --resume): clears
 * error, signal and finished_at, takes over host and pid. INVAR_ERR_INVALID for any other
 * status. */
INVAR_API enum invar_status invar_store_resume_run(struct invar_store *s, int64_t run_id,
                                                   struct invar_error *err);

/* Records where the run's latest checkpoint lives (NULL clears it). */
INVAR_API enum invar_status invar_store_set_checkpoint(struct invar_store *s, int64_t run_id,
                                                       const char *path, struct invar_error *err);

/* ---- reading ---------------------------------------------------------------------------- */

struct invar_store_run {
    int64_t id;
    char uuid[INVAR_STORE_UUID_LEN + 1];
    enum invar_run_status status;
    int64_t seed;
    int64_t pid;
    int signal; /* 0 when none recorded */
    char *experiment;
    char *sweep; /* NULL for a single run */
    char *config;
    char *config_hash;
    char *error; /* NULL unless failed/diverged/killed with a reason */
    char *started_at;
    char *finished_at; /* NULL while running */
    char *host;
    char *git_rev; /* NULL outside a git checkout */
    char *invar_version;
    char *command;    /* NULL if not recorded */
    char *checkpoint; /* NULL if none */
};
/* Frees the strings; takes a zeroed struct. */
INVAR_API void invar_store_run_deinit(struct invar_store_run *run);

struct invar_store_run_list {
    size_t count;
    struct invar_store_run *runs; /* (count) */
};
INVAR_API void invar_store_run_list_deinit(struct invar_store_run_list *list);

struct invar_store_param_list {
    size_t count;
    struct invar_store_param *items; /* (count), sorted by key; strings owned by the list */
};
INVAR_API void invar_store_param_list_deinit(struct invar_store_param_list *list);

struct invar_store_metric_list {
    size_t count;
    struct invar_store_metric *items; /* (count); keys owned by the list */
};
INVAR_API void invar_store_metric_list_deinit(struct invar_store_metric_list *list);

/* One run by id. INVAR_ERR_NOT_FOUND when there is none. */
INVAR_API enum invar_status invar_store_get_run(struct invar_store *s, int64_t run_id,
                                                struct invar_store_run *out,
                                                struct invar_error *err);
/* Resolves what a user typed: "latest" (or "last"), a decimal id, or a uuid prefix of at least
 * 4 hex digits (dashes allowed). A decimal that is no run id is tried as a uuid prefix.
 * INVAR_ERR_NOT_FOUND for no match, INVAR_ERR_INVALID for an ambiguous prefix (the message
 * counts the matches) or a malformed reference. */
INVAR_API enum invar_status invar_store_find_run(struct invar_store *s, const char *ref,
                                                 int64_t *run_id, struct invar_error *err);
/* The most recently created run. INVAR_ERR_NOT_FOUND on an empty database. */
INVAR_API enum invar_status invar_store_latest_run(struct invar_store *s, int64_t *run_id,
                                                   struct invar_error *err);
/* For resumable sweeps: the newest `finished` run with this config hash in *run_id, or 0 when
 * there is none (which is not an error). */
INVAR_API enum invar_status invar_store_find_finished(struct invar_store *s,
                                                      const char *config_hash, int64_t *run_id,
                                                      struct invar_error *err);
/* Every run of a sweep (all runs when sweep is NULL), oldest first. */
INVAR_API enum invar_status invar_store_list_runs(struct invar_store *s, const char *sweep,
                                                  struct invar_store_run_list *out,
                                                  struct invar_error *err);
/* A run's params, sorted by key. */
INVAR_API enum invar_status invar_store_read_params(struct invar_store *s, int64_t run_id,
                                                    struct invar_store_param_list *out,
                                                    struct invar_error *err);
/* The last value logged for each metric key of a run (by logging order), sorted by key. */
INVAR_API enum invar_status invar_store_read_final_metrics(struct invar_store *s, int64_t run_id,
                                                           struct invar_store_metric_list *out,
                                                           struct invar_error *err);
/* Every value of one key (every key when key is NULL), in logging order: series for plots. */
INVAR_API enum invar_status invar_store_read_metrics(struct invar_store *s, int64_t run_id,
                                                     const char *key,
                                                     struct invar_store_metric_list *out,
                                                     struct invar_error *err);

#ifdef __cplusplus
}
#endif
#endif
