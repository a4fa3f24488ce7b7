/* The results store: schema and pragmas, round trips, status transitions, killed-run detection,
 * migrations, concurrent writers, and the errors the world can cause. Each test works in its own
 * temporary directory and checks the file with a second, raw SQLite connection. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "invar/store.h"

static char dir[64];

static void tmp_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/invar-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void tmp_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(store, .init = tmp_setup, .fini = tmp_teardown);

static const char *tmp_path(const char *name)
{
    static char buf[4][160];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static struct invar_store *open_ok(const char *path)
{
    struct invar_store *s = NULL;
    struct invar_error err = {0};
    enum invar_status st = invar_store_open(&s, path, &err);
    cr_assert_eq(st, INVAR_OK, "open %s: %s", path, err.msg);
    cr_assert_not_null(s);
    return s;
}

static int64_t new_run(struct invar_store *s, const char *sweep, const char *hash, int64_t seed)
{
    struct invar_store_new_run r = {.experiment = "moco-fmnist",
                                    .sweep = sweep,
                                    .config = "name: moco-fmnist\nseed: 1\n",
                                    .config_hash = hash,
                                    .seed = seed,
                                    .command = "invar run exp.yaml objective.momentum=0.99"};
    int64_t id = 0;
    struct invar_error err = {0};
    cr_assert_eq(invar_store_create_run(s, &r, &id, &err), INVAR_OK, "%s", err.msg);
    cr_assert_gt(id, 0);
    return id;
}

/* ---- a raw connection, for checking what is on disk ------------------------------------- */

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                 SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    return db;
}

static int raw_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* First column of the first row as text (static buffer), "(null)" for NULL. */
static const char *raw_text(sqlite3 *db, const char *sql)
{
    static char buf[4096];
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
    const char *t = (const char *)sqlite3_column_text(st, 0);
    snprintf(buf, sizeof buf, "%s", t ? t : "(null)");
    sqlite3_finalize(st);
    return buf;
}

/* ---- schema and pragmas ----------------------------------------------------------------- */

Test(store, schema_and_pragmas)
{
    const char *path = tmp_path("results.db");
    struct invar_store *s = open_ok(path);
    cr_assert_str_eq(invar_store_path(s), path);
    cr_assert_eq(invar_store_reaped(s), 0);

    sqlite3 *db = raw_open(path);
    cr_assert_str_eq(raw_text(db, "PRAGMA journal_mode"), "wal");
    cr_assert_eq(raw_int(db, "PRAGMA user_version"), INVAR_STORE_SCHEMA_VERSION);
    cr_assert_eq(INVAR_STORE_SCHEMA_VERSION, 2);

    /* DESIGN §6's columns, in its order, then the provenance columns. */
    const char *want =
        "id,uuid,experiment,sweep,config,config_hash,status,error,seed,started_at,finished_at,"
        "host,git_rev,invar_version,pid,pid_start,command,checkpoint,signal";
    cr_assert_str_eq(raw_text(db, "SELECT group_concat(name, ',') FROM pragma_table_info('runs')"),
                     want);
    cr_assert_str_eq(
        raw_text(db, "SELECT group_concat(name, ',') FROM pragma_table_info('params')"),
        "run_id,key,value");
    cr_assert_str_eq(
        raw_text(db, "SELECT group_concat(name, ',') FROM pragma_table_info('metrics')"),
        "id,run_id,key,step,epoch,value,wall_time");
    /* The lookups the CLI makes are indexed: by run and key, by config hash and status. */
    cr_assert_str_eq(raw_text(db, "SELECT group_concat(name, ',') FROM "
                                  "(SELECT name FROM pragma_index_list('metrics') ORDER BY name)"),
                     "metrics_run_key");
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM pragma_index_info('runs_config_status')"), 2);
    cr_assert_str_eq(raw_text(db, "SELECT group_concat(name, ',') FROM "
                                  "(SELECT name FROM pragma_index_info('runs_config_status') "
                                  "ORDER BY seqno)"),
                     "config_hash,status");
    cr_assert_str_eq(raw_text(db, "PRAGMA integrity_check"), "ok");
    sqlite3_close(db);

    /* Foreign keys are on in the store's connection: a metric for no run is refused. */
    struct invar_error err = {0};
    cr_assert_eq(invar_store_log_metric(s, 999, "loss", 1, 0, 1.0, &err), INVAR_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    cr_assert(strstr(err.msg, "999"), "%s", err.msg);
    struct invar_store_param p = {"a", "1"};
    cr_assert_eq(invar_store_log_params(s, 999, &p, 1, &err), INVAR_ERR_NOT_FOUND);
    invar_store_close(s);

    /* Reopening an up-to-date database changes nothing. */
    s = open_ok(path);
    invar_store_close(s);
    db = raw_open(path);
    cr_assert_eq(raw_int(db, "PRAGMA user_version"), INVAR_STORE_SCHEMA_VERSION);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM runs"), 0);
    sqlite3_close(db);
}

Test(store, in_memory)
{
    /* Tests and tools may keep a throw-away store in memory (no WAL there). */
    struct invar_store *s = open_ok(":memory:");
    int64_t id = new_run(s, NULL, "h", 1);
    struct invar_error err = {0};
    cr_assert_eq(invar_store_log_metric(s, id, "loss", 1, 0, 0.5, &err), INVAR_OK);
    cr_assert_eq(invar_store_finish_run(s, id, INVAR_RUN_FINISHED, 0, NULL, &err), INVAR_OK);
    int64_t found;
    cr_assert_eq(invar_store_find_finished(s, "h", &found, &err), INVAR_OK);
    cr_assert_eq(found, id);
    invar_store_close(s);
}

Test(store, run_status_names)
{
    static const char *names[] = {"running", "finished", "failed", "diverged", "killed"};
    for (int i = 0; i < INVAR_RUN_STATUS_COUNT; i++) {
        cr_assert_str_eq(invar_run_status_str((enum invar_run_status)i), names[i]);
        enum invar_run_status st;
        cr_assert_eq(invar_run_status_parse(names[i], &st), INVAR_OK);
        cr_assert_eq((int)st, i);
    }
    enum invar_run_status st;
    cr_assert_eq(invar_run_status_parse("done", &st), INVAR_ERR_INVALID);
    cr_assert_str_eq(invar_run_status_str(INVAR_RUN_STATUS_COUNT), "unknown");
}

/* ---- round trip ------------------------------------------------------------------------- */

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void assert_iso_utc(const char *t)
{
    cr_assert_not_null(t);
    /* 2026-11-28T09:40:57.123Z */
    cr_assert_eq(strlen(t), 24, "%s", t);
    cr_assert(t[4] == '-' && t[7] == '-' && t[10] == 'T' && t[13] == ':' && t[16] == ':' &&
                  t[19] == '.' && t[23] == 'Z',
              "%s", t);
}

/* The clock the store stamps wall_time with (time() may read a coarser one). */
static double realtime_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

Test(store, run_round_trip)
{
    const char *path = tmp_path("results.db");
    struct invar_store *s = open_ok(path);
    double t0 = realtime_now();
    int64_t id = new_run(s, "momentum", "h1", 3);
    struct invar_error err = {0};

    struct invar_store_run r;
    cr_assert_eq(invar_store_get_run(s, id, &r, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(r.id, id);
    cr_assert_eq(r.status, INVAR_RUN_RUNNING);
    cr_assert_eq(r.seed, 3);
    cr_assert_eq(r.pid, (int64_t)getpid());
    cr_assert_eq(r.signal, 0);
    cr_assert_str_eq(r.experiment, "moco-fmnist");
    cr_assert_str_eq(r.sweep, "momentum");
    cr_assert_str_eq(r.config, "name: moco-fmnist\nseed: 1\n");
    cr_assert_str_eq(r.config_hash, "h1");
    cr_assert_str_eq(r.command, "invar run exp.yaml objective.momentum=0.99");
    cr_assert_str_eq(r.invar_version, invar_version());
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    cr_assert_str_eq(r.host, host);
    assert_iso_utc(r.started_at);
    cr_assert_null(r.finished_at);
    cr_assert_null(r.error);
    cr_assert_null(r.checkpoint);
    /* A version-4 uuid: 8-4-4-4-12 lower-case hex, version nibble 4, variant 10xx. */
    cr_assert_eq(strlen(r.uuid), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_assert_eq(r.uuid[i], '-', "%s", r.uuid);
        else
            cr_assert(is_hex(r.uuid[i]), "%s", r.uuid);
    }
    cr_assert_eq(r.uuid[14], '4', "%s", r.uuid);
    cr_assert(strchr("89ab", r.uuid[19]), "%s", r.uuid);
    /* Inside a git checkout the revision is HEAD's; our test runs inside the source tree. */
    FILE *g = popen("git rev-parse HEAD 2>/dev/null", "r");
    char head[128] = {0};
    bool have_git = g && fgets(head, sizeof head, g) && pclose(g) == 0;
    if (have_git) {
        head[strcspn(head, "\n")] = '\0';
        cr_assert_not_null(r.git_rev);
        cr_assert_str_eq(r.git_rev, head);
    }
    /* Two runs never share a uuid. */
    int64_t id2 = new_run(s, NULL, "h2", 4);
    struct invar_store_run r2;
    cr_assert_eq(invar_store_get_run(s, id2, &r2, &err), INVAR_OK);
    cr_assert_null(r2.sweep);
    cr_assert_str_neq(r.uuid, r2.uuid);
    invar_store_run_deinit(&r2);

    /* Params: a key logged again replaces its value; read back sorted by key. */
    struct invar_store_param params[] = {
        {"optim.lr", "0.06"},
        {"objective.momentum", "0.999"},
        {"optim.schedule", "cosine"},
        {"train.epochs", "20"},
    };
    cr_assert_eq(invar_store_log_params(s, id, params, 4, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_param again = {"optim.lr", "0.03"};
    cr_assert_eq(invar_store_log_params(s, id, &again, 1, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_param_list pl;
    cr_assert_eq(invar_store_read_params(s, id, &pl, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(pl.count, 4);
    const char *want[][2] = {{"objective.momentum", "0.999"},
                             {"optim.lr", "0.03"},
                             {"optim.schedule", "cosine"},
                             {"train.epochs", "20"}};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(pl.items[i].key, want[i][0]);
        cr_assert_str_eq(pl.items[i].value, want[i][1]);
    }
    invar_store_param_list_deinit(&pl);
    cr_assert_eq(invar_store_read_params(s, id2, &pl, &err), INVAR_OK);
    cr_assert_eq(pl.count, 0);
    invar_store_param_list_deinit(&pl);

    /* Metrics: single and batched; the final value per key is the last one logged. */
    for (int step = 1; step <= 3; step++)
        cr_assert_eq(invar_store_log_metric(s, id, "loss", step * 100, step - 1, 4.0 / step, &err),
                     INVAR_OK, "%s", err.msg);
    struct invar_store_metric batch[] = {
        {.key = "knn_top1", .step = 300, .epoch = 2, .value = 71.25},
        {.key = "knn_top5", .step = 300, .epoch = 2, .value = 97.5},
        {.key = "collapse_std", .step = 300, .epoch = 2, .value = NAN},
        {.key = "img_per_s", .step = 300, .epoch = 2, .value = INFINITY},
    };
    cr_assert_eq(invar_store_log_metrics(s, id, batch, 4, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_store_log_metric(s, id, "knn_top1", 400, 3, 73.5, &err), INVAR_OK);
    double t1 = realtime_now();

    struct invar_store_metric_list ml;
    cr_assert_eq(invar_store_read_final_metrics(s, id, &ml, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(ml.count, 5);
    cr_assert_str_eq(ml.items[0].key, "collapse_std");
    cr_assert(isnan(ml.items[0].value));
    cr_assert_str_eq(ml.items[1].key, "img_per_s");
    cr_assert(isinf(ml.items[1].value) && ml.items[1].value > 0);
    cr_assert_str_eq(ml.items[2].key, "knn_top1");
    cr_assert_eq(ml.items[2].value, 73.5);
    cr_assert_eq(ml.items[2].step, 400);
    cr_assert_eq(ml.items[2].epoch, 3);
    cr_assert_str_eq(ml.items[3].key, "knn_top5");
    cr_assert_eq(ml.items[3].value, 97.5);
    cr_assert_str_eq(ml.items[4].key, "loss");
    cr_assert_eq(ml.items[4].value, 4.0 / 3);
    cr_assert_eq(ml.items[4].step, 300);
    for (size_t i = 0; i < ml.count; i++)
        cr_assert(ml.items[i].wall_time >= t0 && ml.items[i].wall_time <= t1, "%f",
                  ml.items[i].wall_time);
    invar_store_metric_list_deinit(&ml);

    cr_assert_eq(invar_store_read_metrics(s, id, "loss", &ml, &err), INVAR_OK);
    cr_assert_eq(ml.count, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(ml.items[i].step, (i + 1) * 100);
        cr_assert_eq(ml.items[i].epoch, i);
        cr_assert_eq(ml.items[i].value, 4.0 / (i + 1));
    }
    invar_store_metric_list_deinit(&ml);
    cr_assert_eq(invar_store_read_metrics(s, id, NULL, &ml, &err), INVAR_OK);
    cr_assert_eq(ml.count, 8);
    cr_assert_str_eq(ml.items[3].key, "knn_top1"); /* logging order */
    cr_assert_str_eq(ml.items[7].key, "knn_top1");
    invar_store_metric_list_deinit(&ml);

    /* A batch with a bad row writes nothing. */
    struct invar_store_metric bad[] = {{.key = "lr", .value = 0.1}, {.key = NULL}};
    cr_assert_eq(invar_store_log_metrics(s, id, bad, 2, &err), INVAR_ERR_INVALID);
    cr_assert_eq(invar_store_read_metrics(s, id, "lr", &ml, &err), INVAR_OK);
    cr_assert_eq(ml.count, 0);
    invar_store_metric_list_deinit(&ml);

    /* Checkpoint path. */
    cr_assert_eq(invar_store_set_checkpoint(s, id, "/runs/1/ckpt.bin", &err), INVAR_OK);
    cr_assert_eq(invar_store_set_checkpoint(s, 12345, "x", &err), INVAR_ERR_NOT_FOUND);
    invar_store_run_deinit(&r);
    cr_assert_eq(invar_store_get_run(s, id, &r, &err), INVAR_OK);
    cr_assert_str_eq(r.checkpoint, "/runs/1/ckpt.bin");
    invar_store_run_deinit(&r);
    invar_store_close(s);

    /* Everything above was committed: a fresh connection sees it. */
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM metrics"), 8);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM params"), 4);
    cr_assert_str_eq(raw_text(db, "SELECT value FROM params WHERE key = 'objective.momentum'"),
                     "0.999");
    /* NUMERIC affinity: numbers compare as numbers in ad-hoc queries. */
    cr_assert_str_eq(raw_text(db, "SELECT group_concat(t, ',') FROM "
                                  "(SELECT typeof(value) AS t FROM params ORDER BY key)"),
                     "real,real,text,integer");
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM params WHERE value > 5 AND value < 100"), 1);
    sqlite3_close(db);
}

Test(store, create_run_needs_its_fields)
{
    struct invar_store *s = open_ok(tmp_path("r.db"));
    struct invar_error err = {0};
    int64_t id = 7;
    struct invar_store_new_run r = {.experiment = "x", .config = NULL, .config_hash = "h"};
    cr_assert_eq(invar_store_create_run(s, &r, &id, &err), INVAR_ERR_INVALID);
    cr_assert_eq(id, 0);
    cr_assert(strstr(err.msg, "config"), "%s", err.msg);
    invar_store_close(s);
}

/* ---- status transitions ----------------------------------------------------------------- */

static enum invar_run_status status_of(struct invar_store *s, int64_t id)
{
    struct invar_store_run r;
    struct invar_error err = {0};
    cr_assert_eq(invar_store_get_run(s, id, &r, &err), INVAR_OK, "%s", err.msg);
    enum invar_run_status st = r.status;
    invar_store_run_deinit(&r);
    return st;
}

Test(store, status_transitions)
{
    const char *path = tmp_path("results.db");
    struct invar_store *s = open_ok(path);
    struct invar_error err = {0};

    int64_t a = new_run(s, NULL, "ha", 1);
    cr_assert_eq(invar_store_finish_run(s, a, INVAR_RUN_FINISHED, 0, NULL, &err), INVAR_OK, "%s",
                 err.msg);
    struct invar_store_run r;
    cr_assert_eq(invar_store_get_run(s, a, &r, &err), INVAR_OK);
    cr_assert_eq(r.status, INVAR_RUN_FINISHED);
    assert_iso_utc(r.finished_at);
    cr_assert_geq(strcmp(r.finished_at, r.started_at), 0);
    cr_assert_null(r.error);
    invar_store_run_deinit(&r);

    /* A finished run stays finished. */
    cr_assert_eq(invar_store_finish_run(s, a, INVAR_RUN_FAILED, 0, "late", &err),
                 INVAR_ERR_INVALID);
    cr_assert(strstr(err.msg, "is finished, not running"), "%s", err.msg);
    cr_assert_eq(invar_store_resume_run(s, a, &err), INVAR_ERR_INVALID);
    cr_assert_eq(status_of(s, a), INVAR_RUN_FINISHED);
    /* Running is not an end, and a missing run is reported as such. */
    int64_t b = new_run(s, NULL, "hb", 1);
    cr_assert_eq(invar_store_finish_run(s, b, INVAR_RUN_RUNNING, 0, NULL, &err), INVAR_ERR_INVALID);
    cr_assert_eq(invar_store_finish_run(s, 4242, INVAR_RUN_FAILED, 0, NULL, &err),
                 INVAR_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "4242"), "%s", err.msg);

    /* failed -> resumed -> diverged, with the error text kept. */
    cr_assert_eq(invar_store_finish_run(s, b, INVAR_RUN_FAILED, 0, "plugin crashed", &err),
                 INVAR_OK);
    cr_assert_eq(invar_store_resume_run(s, b, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_store_get_run(s, b, &r, &err), INVAR_OK);
    cr_assert_eq(r.status, INVAR_RUN_RUNNING);
    cr_assert_null(r.error);
    cr_assert_null(r.finished_at);
    invar_store_run_deinit(&r);
    cr_assert_eq(
        invar_store_finish_run(s, b, INVAR_RUN_DIVERGED, 0, "loss is nan at step 12", &err),
        INVAR_OK);
    cr_assert_eq(invar_store_get_run(s, b, &r, &err), INVAR_OK);
    cr_assert_eq(r.status, INVAR_RUN_DIVERGED);
    cr_assert_str_eq(r.error, "loss is nan at step 12");
    invar_store_run_deinit(&r);

    /* Ctrl-C: killed with the signal recorded. */
    int64_t c = new_run(s, NULL, "hc", 1);
    cr_assert_eq(invar_store_finish_run(s, c, INVAR_RUN_KILLED, SIGINT, "interrupted", &err),
                 INVAR_OK);
    cr_assert_eq(invar_store_get_run(s, c, &r, &err), INVAR_OK);
    cr_assert_eq(r.status, INVAR_RUN_KILLED);
    cr_assert_eq(r.signal, SIGINT);
    invar_store_run_deinit(&r);
    invar_store_close(s);

    /* The CHECK constraint refuses any other status, even from outside the library. */
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_exec(db, "UPDATE runs SET status = 'done' WHERE id = 1"), SQLITE_CONSTRAINT);
    cr_assert_eq(raw_exec(db, "UPDATE runs SET status = 'killed' WHERE id = 1"), SQLITE_OK);
    sqlite3_close(db);
}

/* ---- lookups ---------------------------------------------------------------------------- */

Test(store, lookups)
{
    const char *path = tmp_path("results.db");
    struct invar_store *s = open_ok(path);
    struct invar_error err = {0};
    int64_t id;
    cr_assert_eq(invar_store_latest_run(s, &id, &err), INVAR_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    cr_assert_eq(invar_store_find_run(s, "latest", &id, &err), INVAR_ERR_NOT_FOUND);

    int64_t a = new_run(s, "sw", "hash-a", 1);
    int64_t b = new_run(s, "sw", "hash-a", 2);
    int64_t c = new_run(s, NULL, "hash-c", 1);
    cr_assert_eq(invar_store_latest_run(s, &id, &err), INVAR_OK);
    cr_assert_eq(id, c);
    cr_assert_eq(invar_store_find_run(s, "last", &id, &err), INVAR_OK);
    cr_assert_eq(id, c);

    /* Resumable sweeps: only finished runs count, the newest wins. */
    cr_assert_eq(invar_store_find_finished(s, "hash-a", &id, &err), INVAR_OK);
    cr_assert_eq(id, 0);
    cr_assert_eq(invar_store_finish_run(s, a, INVAR_RUN_FINISHED, 0, NULL, &err), INVAR_OK);
    cr_assert_eq(invar_store_find_finished(s, "hash-a", &id, &err), INVAR_OK);
    cr_assert_eq(id, a);
    cr_assert_eq(invar_store_finish_run(s, b, INVAR_RUN_FINISHED, 0, NULL, &err), INVAR_OK);
    cr_assert_eq(invar_store_find_finished(s, "hash-a", &id, &err), INVAR_OK);
    cr_assert_eq(id, b);
    cr_assert_eq(invar_store_finish_run(s, c, INVAR_RUN_FAILED, 0, "x", &err), INVAR_OK);
    cr_assert_eq(invar_store_find_finished(s, "hash-c", &id, &err), INVAR_OK);
    cr_assert_eq(id, 0);

    struct invar_store_run_list rl;
    cr_assert_eq(invar_store_list_runs(s, "sw", &rl, &err), INVAR_OK);
    cr_assert_eq(rl.count, 2);
    cr_assert_eq(rl.runs[0].id, a);
    cr_assert_eq(rl.runs[1].id, b);
    cr_assert_eq(rl.runs[1].seed, 2);
    invar_store_run_list_deinit(&rl);
    cr_assert_eq(invar_store_list_runs(s, NULL, &rl, &err), INVAR_OK);
    cr_assert_eq(rl.count, 3);
    cr_assert_eq(rl.runs[2].status, INVAR_RUN_FAILED);
    invar_store_run_list_deinit(&rl);
    cr_assert_eq(invar_store_list_runs(s, "nope", &rl, &err), INVAR_OK);
    cr_assert_eq(rl.count, 0);
    invar_store_run_list_deinit(&rl);
    invar_store_close(s);

    /* Give two runs uuids that share a prefix, to see ambiguity reported. */
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_exec(db, "UPDATE runs SET uuid = 'abcd1111-0000-4000-8000-000000000001' "
                              "WHERE id = 1;"
                              "UPDATE runs SET uuid = 'abcd2222-0000-4000-8000-000000000002' "
                              "WHERE id = 2;"
                              "UPDATE runs SET uuid = '30000000-0000-4000-8000-000000000003' "
                              "WHERE id = 3;"),
                 SQLITE_OK);
    sqlite3_close(db);
    s = open_ok(path);
    cr_assert_eq(invar_store_find_run(s, "2", &id, &err), INVAR_OK);
    cr_assert_eq(id, 2);
    cr_assert_eq(invar_store_find_run(s, "abcd2", &id, &err), INVAR_OK);
    cr_assert_eq(id, 2);
    cr_assert_eq(invar_store_find_run(s, "ABCD1111-0", &id, &err), INVAR_OK);
    cr_assert_eq(id, 1);
    cr_assert_eq(invar_store_find_run(s, "abcd", &id, &err), INVAR_ERR_INVALID);
    cr_assert(strstr(err.msg, "ambiguous") && strstr(err.msg, "2 runs"), "%s", err.msg);
    /* A number that is no id is tried as a uuid prefix. */
    cr_assert_eq(invar_store_find_run(s, "3000", &id, &err), INVAR_OK);
    cr_assert_eq(id, 3);
    cr_assert_eq(invar_store_find_run(s, "ffff", &id, &err), INVAR_ERR_NOT_FOUND);
    cr_assert_eq(invar_store_find_run(s, "abc", &id, &err), INVAR_ERR_NOT_FOUND);
    cr_assert_eq(invar_store_find_run(s, "x'; DROP TABLE runs; --", &id, &err),
                 INVAR_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "uuid prefix"), "%s", err.msg);
    cr_assert_eq(invar_store_find_run(s, "", &id, &err), INVAR_ERR_INVALID);
    struct invar_store_run r;
    cr_assert_eq(invar_store_get_run(s, 99, &r, &err), INVAR_ERR_NOT_FOUND);
    invar_store_close(s);
}

/* ---- killed-run detection --------------------------------------------------------------- */

Test(store, dead_process_marked_killed)
{
    const char *path = tmp_path("results.db");
    /* A child creates a run and dies without finishing it. (The parent opens nothing before
     * the fork: a connection must not be carried across one.) */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        struct invar_store *s = NULL;
        struct invar_error err = {0};
        int64_t id = 0;
        struct invar_store_new_run r = {.experiment = "e", .config = "c", .config_hash = "h"};
        if (invar_store_open(&s, path, &err) != INVAR_OK ||
            invar_store_create_run(s, &r, &id, &err) != INVAR_OK)
            _exit(1);
        if (write(fds[1], &id, sizeof id) != (ssize_t)sizeof id)
            _exit(1);
        _exit(0); /* no finish, no close: as if killed */
    }
    close(fds[1]);
    int64_t orphan = 0;
    cr_assert_eq(read(fds[0], &orphan, sizeof orphan), (ssize_t)sizeof orphan);
    close(fds[0]);
    int wst;
    cr_assert_eq(waitpid(pid, &wst, 0), pid);
    cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);

    /* The parent holds a live running run through its own handle. */
    struct invar_store *live = open_ok(path);
    cr_assert_eq(invar_store_reaped(live), 1); /* the child's run, found on this open */
    int64_t mine = new_run(live, NULL, "mine", 1);

    /* A run of this process whose pid start time does not match: the pid was reused. A run
     * of another host with the dead child's pid is not ours to judge. */
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_exec(db, "INSERT INTO runs (uuid, experiment, config, config_hash, status, "
                              "started_at, host, pid, pid_start) SELECT "
                              "'reused', 'e', 'c', 'h', 'running', started_at, host, pid, "
                              "pid_start + 1 FROM runs WHERE config_hash = 'mine';"
                              "INSERT INTO runs (uuid, experiment, config, config_hash, status, "
                              "started_at, host, pid) SELECT 'elsewhere', 'e', 'c', 'h', "
                              "'running', started_at, 'another-host', pid FROM runs "
                              "WHERE status = 'killed';"),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    int64_t reused = raw_int(db, "SELECT id FROM runs WHERE uuid = 'reused'");
    int64_t elsewhere = raw_int(db, "SELECT id FROM runs WHERE uuid = 'elsewhere'");
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM runs WHERE status = 'running'"), 3);
    sqlite3_close(db);

    struct invar_store *s = open_ok(path);
    cr_assert_eq(invar_store_reaped(s), 1); /* the reused pid's run */
    struct invar_store_run r;
    struct invar_error err = {0};
    cr_assert_eq(invar_store_get_run(s, orphan, &r, &err), INVAR_OK);
    cr_assert_eq(r.status, INVAR_RUN_KILLED);
    cr_assert_eq(r.pid, (int64_t)pid);
    cr_assert_not_null(r.error);
    char want[64];
    snprintf(want, sizeof want, "process %d", (int)pid);
    cr_assert(strstr(r.error, "killed") && strstr(r.error, want), "%s", r.error);
    assert_iso_utc(r.finished_at);
    invar_store_run_deinit(&r);
    cr_assert_eq(status_of(s, reused), INVAR_RUN_KILLED);
    cr_assert_eq(status_of(s, elsewhere), INVAR_RUN_RUNNING);
    cr_assert_eq(status_of(s, mine), INVAR_RUN_RUNNING);
    /* The live run can still finish normally; a killed one can be resumed. */
    cr_assert_eq(invar_store_finish_run(live, mine, INVAR_RUN_FINISHED, 0, NULL, &err), INVAR_OK,
                 "%s", err.msg);
    cr_assert_eq(invar_store_resume_run(s, orphan, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_store_get_run(s, orphan, &r, &err), INVAR_OK);
    cr_assert_eq(r.status, INVAR_RUN_RUNNING);
    cr_assert_eq(r.pid, (int64_t)getpid());
    invar_store_run_deinit(&r);
    invar_store_close(s);
    invar_store_close(live);

    /* Nothing more to reap: this process is alive and owns the resumed run. */
    s = open_ok(path);
    cr_assert_eq(invar_store_reaped(s), 0);
    cr_assert_eq(status_of(s, orphan), INVAR_RUN_RUNNING);
    invar_store_close(s);
}

Test(store, handle_refused_after_fork)
{
    const char *path = tmp_path("results.db");
    struct invar_store *s = open_ok(path);
    int64_t id = new_run(s, NULL, "h", 1);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        struct invar_error err = {0};
        enum invar_status st = invar_store_log_metric(s, id, "loss", 1, 0, 9.0, &err);
        bool ok = st == INVAR_ERR_INVALID && strstr(err.msg, "fork") && strstr(err.msg, path);
        invar_store_close(s); /* must leave the parent's connection working */
        _exit(ok ? 0 : 1);
    }
    int wst;
    cr_assert_eq(waitpid(pid, &wst, 0), pid);
    cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "status %d", wst);
    struct invar_error err = {0};
    cr_assert_eq(invar_store_log_metric(s, id, "loss", 2, 0, 1.0, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_metric_list ml;
    cr_assert_eq(invar_store_read_metrics(s, id, NULL, &ml, &err), INVAR_OK);
    cr_assert_eq(ml.count, 1);
    cr_assert_eq(ml.items[0].value, 1.0);
    invar_store_metric_list_deinit(&ml);
    invar_store_close(s);
    sqlite3 *db = raw_open(path);
    cr_assert_str_eq(raw_text(db, "PRAGMA integrity_check"), "ok");
    sqlite3_close(db);
}

/* ---- migrations ------------------------------------------------------------------------- */

/* The version-1 schema as it was released (DESIGN §6 without provenance), written out here
 * independently of the library's migration table. */
static const char v1_schema[] =
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, uuid TEXT UNIQUE NOT NULL, experiment TEXT NOT "
    "NULL, sweep TEXT, config TEXT NOT NULL, config_hash TEXT NOT NULL, status TEXT NOT NULL "
    "DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed', 'diverged', "
    "'killed')), error TEXT, seed INTEGER, started_at TEXT NOT NULL, finished_at TEXT, host TEXT, "
    "git_rev TEXT, invar_version TEXT);"
    "CREATE TABLE params (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, key "
    "TEXT NOT NULL, value NUMERIC, PRIMARY KEY (run_id, key));"
    "CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) "
    "ON DELETE CASCADE, key TEXT NOT NULL, step INTEGER, epoch INTEGER, value REAL, wall_time "
    "REAL);"
    "CREATE INDEX metrics_run_key ON metrics(run_id, key);"
    "PRAGMA user_version = 1;";

Test(store, migrates_version_1)
{
    const char *path = tmp_path("old.db");
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_exec(db, v1_schema), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(
        raw_exec(db, "INSERT INTO runs (uuid, experiment, config, config_hash, status, seed, "
                     "started_at, finished_at, host) VALUES ('0ld00000-0000-4000-8000-"
                     "000000000000', 'old', 'cfg', 'oldhash', 'finished', 5, "
                     "'2026-01-01T00:00:00.000Z', '2026-01-01T01:00:00.000Z', 'h');"
                     "INSERT INTO runs (uuid, experiment, config, config_hash, status, "
                     "started_at, host) VALUES ('1ld', 'old', 'cfg', 'h2', 'running', "
                     "'2026-01-01T00:00:00.000Z', 'HOST');"
                     "INSERT INTO params VALUES (1, 'optim.lr', '0.1');"
                     "INSERT INTO metrics (run_id, key, step, epoch, value, wall_time) VALUES "
                     "(1, 'knn_top1', 10, 1, 80.5, 1.0e9), (1, 'knn_top1', 20, 2, 81.5, 1.1e9);"),
        SQLITE_OK, "%s", sqlite3_errmsg(db));
    /* The old running row is this host's, so only its missing pid keeps it from being reaped. */
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    sqlite3_stmt *u = NULL;
    cr_assert_eq(
        sqlite3_prepare_v2(db, "UPDATE runs SET host = ?1 WHERE host = 'HOST'", -1, &u, NULL),
        SQLITE_OK);
    sqlite3_bind_text(u, 1, host, -1, SQLITE_TRANSIENT);
    cr_assert_eq(sqlite3_step(u), SQLITE_DONE);
    sqlite3_finalize(u);
    sqlite3_close(db);

    struct invar_store *s = open_ok(path);
    struct invar_error err = {0};
    struct invar_store_run r;
    cr_assert_eq(invar_store_get_run(s, 1, &r, &err), INVAR_OK, "%s", err.msg);
    cr_assert_str_eq(r.experiment, "old");
    cr_assert_eq(r.status, INVAR_RUN_FINISHED);
    cr_assert_eq(r.seed, 5);
    cr_assert_eq(r.pid, 0);
    cr_assert_null(r.command);
    invar_store_run_deinit(&r);
    /* A running row with no pid cannot be judged and is left alone. */
    cr_assert_eq(invar_store_reaped(s), 0);
    cr_assert_eq(status_of(s, 2), INVAR_RUN_RUNNING);
    struct invar_store_metric_list ml;
    cr_assert_eq(invar_store_read_final_metrics(s, 1, &ml, &err), INVAR_OK);
    cr_assert_eq(ml.count, 1);
    cr_assert_eq(ml.items[0].value, 81.5);
    invar_store_metric_list_deinit(&ml);
    int64_t id;
    cr_assert_eq(invar_store_find_finished(s, "oldhash", &id, &err), INVAR_OK);
    cr_assert_eq(id, 1);
    /* New runs get the new columns. */
    id = new_run(s, NULL, "new", 1);
    cr_assert_eq(invar_store_get_run(s, id, &r, &err), INVAR_OK);
    cr_assert_eq(r.pid, (int64_t)getpid());
    invar_store_run_deinit(&r);
    invar_store_close(s);

    db = raw_open(path);
    cr_assert_eq(raw_int(db, "PRAGMA user_version"), INVAR_STORE_SCHEMA_VERSION);
    cr_assert_str_eq(raw_text(db, "PRAGMA journal_mode"), "wal");
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM pragma_table_info('runs') WHERE name IN "
                             "('pid', 'pid_start', 'command', 'checkpoint', 'signal')"),
                 5);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM pragma_index_list('runs') WHERE name = "
                             "'runs_config_status'"),
                 1);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM metrics"), 2);
    cr_assert_str_eq(raw_text(db, "PRAGMA integrity_check"), "ok");
    sqlite3_close(db);
}

Test(store, migrates_version_0)
{
    /* An empty file is a version-0 database: it is given the whole schema. */
    const char *path = tmp_path("empty.db");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    struct invar_store *s = open_ok(path);
    int64_t id = new_run(s, NULL, "h", 1);
    cr_assert_eq(id, 1);
    invar_store_close(s);
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_int(db, "PRAGMA user_version"), INVAR_STORE_SCHEMA_VERSION);
    sqlite3_close(db);
}

Test(store, failed_migration_changes_nothing)
{
    /* Some other program's database, version 0 with its own `metrics` table: the upgrade fails
     * part-way and its one transaction leaves the file as it was. */
    const char *path = tmp_path("foreign.db");
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_exec(db, "CREATE TABLE metrics (x); INSERT INTO metrics VALUES (42);"),
                 SQLITE_OK);
    sqlite3_close(db);
    struct invar_store *s = (struct invar_store *)1;
    struct invar_error err = {0};
    enum invar_status st = invar_store_open(&s, path, &err);
    cr_assert_neq(st, INVAR_OK);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "upgrading the schema to version 1") &&
                  strstr(err.msg, "metrics"),
              "%s", err.msg);
    db = raw_open(path);
    cr_assert_eq(raw_int(db, "PRAGMA user_version"), 0);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'runs'"), 0);
    cr_assert_eq(raw_int(db, "SELECT x FROM metrics"), 42);
    sqlite3_close(db);
}

Test(store, refuses_newer_schema)
{
    const char *path = tmp_path("future.db");
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_exec(db, "PRAGMA user_version = 99"), SQLITE_OK);
    sqlite3_close(db);
    struct invar_store *s = NULL;
    struct invar_error err = {0};
    cr_assert_eq(invar_store_open(&s, path, &err), INVAR_ERR_DB);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "99") && strstr(err.msg, "newer"), "%s",
              err.msg);
}

/* ---- errors the world causes ------------------------------------------------------------ */

Test(store, unwritable_path)
{
    struct invar_store *s = NULL;
    struct invar_error err = {0};
    const char *path = tmp_path("no/such/dir/results.db");
    cr_assert_eq(invar_store_open(&s, path, &err), INVAR_ERR_IO);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "unable to open"), "%s", err.msg);

    /* A directory where the file should be. */
    cr_assert_eq(invar_store_open(&s, dir, &err), INVAR_ERR_IO);
    cr_assert(strstr(err.msg, dir), "%s", err.msg);

    cr_assert_eq(invar_store_open(&s, "", &err), INVAR_ERR_INVALID);
}

Test(store, not_a_database)
{
    const char *path = tmp_path("notes.txt");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 200; i++)
        fprintf(f, "this is line %d of a text file, not a database\n", i);
    fclose(f);
    struct invar_store *s = NULL;
    struct invar_error err = {0};
    cr_assert_eq(invar_store_open(&s, path, &err), INVAR_ERR_FORMAT);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "not a database"), "%s", err.msg);
    /* The file is untouched. */
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_gt(sb.st_size, 8000);
    f = fopen(path, "r");
    char head[16] = {0};
    cr_assert_eq(fread(head, 1, 12, f), 12);
    fclose(f);
    cr_assert_str_eq(head, "this is line");
}

/* ---- concurrency ------------------------------------------------------------------------ */

#define WRITERS 4
#define PER_WRITER 500

/* One writer process: opens the (possibly not yet created) database, creates a run, logs
 * PER_WRITER metrics in many small transactions, and finishes. Any error ends it non-zero. */
static int writer(const char *path, int w, int go_fd)
{
    char c;
    if (read(go_fd, &c, 1) < 0) /* wait for the start: EOF when the parent closes the pipe */
        return 10;
    struct invar_store *s = NULL;
    struct invar_error err = {0};
    int64_t id = 0;
    char hash[16];
    snprintf(hash, sizeof hash, "w%d", w);
    struct invar_store_new_run r = {
        .experiment = "concurrent", .config = "c", .config_hash = hash, .seed = w};
    enum invar_status st = invar_store_open(&s, path, &err);
    if (st == INVAR_OK)
        st = invar_store_create_run(s, &r, &id, &err);
    int logged = 0;
    /* 400 single-row transactions, then 20 batches of 5. */
    while (st == INVAR_OK && logged < 400) {
        st = invar_store_log_metric(s, id, "loss", logged, logged / 100, w * 1000.0 + logged, &err);
        logged++;
    }
    while (st == INVAR_OK && logged < PER_WRITER) {
        struct invar_store_metric m[5];
        for (int i = 0; i < 5; i++)
            m[i] = (struct invar_store_metric){.key = "loss",
                                               .step = logged + i,
                                               .epoch = (logged + i) / 100,
                                               .value = w * 1000.0 + logged + i};
        st = invar_store_log_metrics(s, id, m, 5, &err);
        logged += 5;
    }
    if (st == INVAR_OK)
        st = invar_store_finish_run(s, id, INVAR_RUN_FINISHED, 0, NULL, &err);
    if (st != INVAR_OK)
        fprintf(stderr, "writer %d: %s: %s\n", w, invar_status_str(st), err.msg);
    invar_store_close(s);
    return st == INVAR_OK ? 0 : 1;
}

Test(store, four_processes_log_at_once)
{
    const char *path = tmp_path("shared.db");
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        cr_assert_neq(pids[w], -1);
        if (pids[w] == 0) {
            close(go[1]);
            _exit(writer(path, w, go[0]));
        }
    }
    close(go[0]);
    close(go[1]); /* all start together, on a file none has created yet */
    for (int w = 0; w < WRITERS; w++) {
        int wst;
        cr_assert_eq(waitpid(pids[w], &wst, 0), pids[w]);
        cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "writer %d failed (status %d)", w, wst);
    }

    struct invar_store *s = open_ok(path);
    struct invar_error err = {0};
    struct invar_store_run_list rl;
    cr_assert_eq(invar_store_list_runs(s, NULL, &rl, &err), INVAR_OK);
    cr_assert_eq(rl.count, WRITERS);
    bool seen[WRITERS] = {0};
    for (size_t i = 0; i < rl.count; i++) {
        cr_assert_eq(rl.runs[i].status, INVAR_RUN_FINISHED);
        int w = (int)rl.runs[i].seed;
        cr_assert(w >= 0 && w < WRITERS && !seen[w]);
        seen[w] = true;
        struct invar_store_metric_list ml;
        cr_assert_eq(invar_store_read_metrics(s, rl.runs[i].id, "loss", &ml, &err), INVAR_OK);
        cr_assert_eq(ml.count, PER_WRITER);
        /* Each writer's rows arrive complete and in its own order. */
        for (size_t k = 0; k < ml.count; k++) {
            cr_assert_eq(ml.items[k].step, (int64_t)k);
            cr_assert_eq(ml.items[k].value, w * 1000.0 + (double)k);
        }
        invar_store_metric_list_deinit(&ml);
    }
    invar_store_run_list_deinit(&rl);
    invar_store_close(s);

    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM metrics"), WRITERS * PER_WRITER);
    cr_assert_eq(raw_int(db, "SELECT count(DISTINCT run_id) FROM metrics"), WRITERS);
    cr_assert_str_eq(raw_text(db, "PRAGMA integrity_check"), "ok");
    cr_assert_str_eq(raw_text(db, "PRAGMA journal_mode"), "wal");
    sqlite3_close(db);
}

Test(store, waits_out_a_held_write_lock)
{
    /* Another process holds the write lock for a while; a write through the store waits for it
     * (busy timeout, BEGIN IMMEDIATE retries) instead of reporting "database is locked". No
     * connection is open across the fork: SQLite's per-process lock state must not be copied. */
    const char *path = tmp_path("held.db");
    struct invar_store *s = open_ok(path);
    int64_t id = new_run(s, NULL, "h", 1);
    invar_store_close(s);

    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(ready[0]);
        sqlite3 *db = NULL;
        if (sqlite3_open(path, &db) != SQLITE_OK ||
            sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO params VALUES (1, 'held', 1)", NULL,
                         NULL, NULL) != SQLITE_OK ||
            write(ready[1], "x", 1) != 1)
            _exit(1);
        usleep(300 * 1000); /* the parent is now waiting for the lock (most likely; either way
                               the outcome must be the same) */
        int rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(db);
        _exit(rc == SQLITE_OK ? 0 : 1);
    }
    close(ready[1]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
    s = open_ok(path);
    struct invar_error err = {0};
    cr_assert_eq(invar_store_log_metric(s, id, "loss", 1, 0, 0.25, &err), INVAR_OK, "%s", err.msg);
    invar_store_close(s);
    int wst;
    cr_assert_eq(waitpid(pid, &wst, 0), pid);
    cr_assert(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "status %d", wst);
    sqlite3 *db = raw_open(path);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM metrics WHERE key = 'loss' AND value = 0.25"),
                 1);
    cr_assert_eq(raw_int(db, "SELECT count(*) FROM params WHERE key = 'held'"), 1);
    sqlite3_close(db);
}
