/* The results database: schema and migrations, the statement cache, runs, params, metrics.
 *
 * Every SQL text the store runs is a row of a table below: migrations (one row per schema
 * version) and cached statements (prepared once per handle, on first use). Values are always
 * bound, never formatted into SQL. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "invar/store.h"

/* ---- schema ----------------------------------------------------------------------------- */

/* migrations[v] takes a database from user_version v to v + 1. Append-only: a released row never
 * changes, a new schema version is one new row. Version 1 is DESIGN §6 as first written;
 * version 2 adds the provenance columns and the lookup indexes. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE runs ("
    "  id INTEGER PRIMARY KEY,"
    "  uuid TEXT UNIQUE NOT NULL,"
    "  experiment TEXT NOT NULL,"
    "  sweep TEXT,"
    "  config TEXT NOT NULL,"
    "  config_hash TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'running'"
    "    CHECK (status IN ('running', 'finished', 'failed', 'diverged', 'killed')),"
    "  error TEXT,"
    "  seed INTEGER,"
    "  started_at TEXT NOT NULL,"
    "  finished_at TEXT,"
    "  host TEXT,"
    "  git_rev TEXT,"
    "  invar_version TEXT);"
    "CREATE TABLE params ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  value NUMERIC,"
    "  PRIMARY KEY (run_id, key));"
    "CREATE TABLE metrics ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  key TEXT NOT NULL,"
    "  step INTEGER,"
    "  epoch INTEGER,"
    "  value REAL,"
    "  wall_time REAL);"
    "CREATE INDEX metrics_run_key ON metrics(run_id, key);",
    /* 1 -> 2 */
    "ALTER TABLE runs ADD COLUMN pid INTEGER;"
    "ALTER TABLE runs ADD COLUMN pid_start INTEGER;" /* the pid's start time: pids get reused */
    "ALTER TABLE runs ADD COLUMN command TEXT;"
    "ALTER TABLE runs ADD COLUMN checkpoint TEXT;"
    "ALTER TABLE runs ADD COLUMN signal INTEGER;"
    "CREATE INDEX runs_config_status ON runs(config_hash, status);"
    "CREATE INDEX runs_sweep ON runs(sweep, id);"
    "CREATE INDEX runs_status_host ON runs(status, host);",
};
_Static_assert(sizeof migrations / sizeof migrations[0] == INVAR_STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- cached statements ------------------------------------------------------------------ */

#define RUN_COLUMNS                                                                                \
    "id, uuid, status, seed, pid, signal, experiment, sweep, config, config_hash, error, "         \
    "started_at, finished_at, host, git_rev, invar_version, command, checkpoint"

enum stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_VERSION,
    ST_SYNC_FULL,
    ST_SYNC_NORMAL,
    ST_INSERT_RUN,
    ST_INSERT_PARAM,
    ST_INSERT_METRIC,
    ST_FINISH_RUN,
    ST_RUN_STATUS,
    ST_RESUME_RUN,
    ST_SET_CHECKPOINT,
    ST_GET_RUN,
    ST_RUN_EXISTS,
    ST_RUNS_BY_UUID,
    ST_LATEST_RUN,
    ST_FIND_FINISHED,
    ST_LIST_RUNS,
    ST_LIST_SWEEP,
    ST_READ_PARAMS,
    ST_FINAL_METRICS,
    ST_METRICS_KEY,
    ST_METRICS_ALL,
    ST_RUNNING_HERE,
    ST_MARK_KILLED,
    ST_COUNT
};

static const char *const stmt_sql[] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_VERSION] = "PRAGMA user_version",
    [ST_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    [ST_INSERT_RUN] = "INSERT INTO runs (uuid, experiment, sweep, config, config_hash, status, "
                      "seed, started_at, host, git_rev, invar_version, pid, pid_start, command) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_INSERT_PARAM] = "INSERT OR REPLACE INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
    [ST_INSERT_METRIC] = "INSERT INTO metrics (run_id, key, step, epoch, value, wall_time) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_FINISH_RUN] = "UPDATE runs SET status = ?2, signal = ?3, error = ?4, finished_at = ?5 "
                      "WHERE id = ?1 AND status = 'running'",
    [ST_RUN_STATUS] = "SELECT status FROM runs WHERE id = ?1",
    [ST_RESUME_RUN] = "UPDATE runs SET status = 'running', error = NULL, signal = NULL, "
                      "finished_at = NULL, host = ?2, pid = ?3, pid_start = ?4 "
                      "WHERE id = ?1 AND status IN ('killed', 'failed')",
    [ST_SET_CHECKPOINT] = "UPDATE runs SET checkpoint = ?2 WHERE id = ?1",
    [ST_GET_RUN] = "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?1",
    [ST_RUN_EXISTS] = "SELECT 1 FROM runs WHERE id = ?1",
    [ST_RUNS_BY_UUID] = "SELECT id FROM runs WHERE uuid GLOB ?1 || '*' ORDER BY id LIMIT 10",
    [ST_LATEST_RUN] = "SELECT max(id) FROM runs",
    [ST_FIND_FINISHED] = "SELECT max(id) FROM runs WHERE config_hash = ?1 AND status = 'finished'",
    [ST_LIST_RUNS] = "SELECT " RUN_COLUMNS " FROM runs ORDER BY id",
    [ST_LIST_SWEEP] = "SELECT " RUN_COLUMNS " FROM runs WHERE sweep = ?1 ORDER BY id",
    [ST_READ_PARAMS] = "SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key",
    [ST_FINAL_METRICS] = "SELECT key, step, epoch, value, wall_time FROM metrics WHERE id IN "
                         "(SELECT max(id) FROM metrics WHERE run_id = ?1 GROUP BY key) "
                         "ORDER BY key",
    [ST_METRICS_KEY] = "SELECT key, step, epoch, value, wall_time FROM metrics "
                       "WHERE run_id = ?1 AND key = ?2 ORDER BY id",
    [ST_METRICS_ALL] = "SELECT key, step, epoch, value, wall_time FROM metrics "
                       "WHERE run_id = ?1 ORDER BY id",
    [ST_RUNNING_HERE] = "SELECT id, pid, pid_start FROM runs WHERE status = 'running' AND "
                        "host = ?1",
    [ST_MARK_KILLED] = "UPDATE runs SET status = 'killed', finished_at = ?2, error = ?3 "
                       "WHERE id = ?1 AND status = 'running'",
};
_Static_assert(sizeof stmt_sql / sizeof stmt_sql[0] == ST_COUNT, "stmt_sql names every stmt");

static const char *const run_status_names[] = {
    [INVAR_RUN_RUNNING] = "running", [INVAR_RUN_FINISHED] = "finished",
    [INVAR_RUN_FAILED] = "failed",   [INVAR_RUN_DIVERGED] = "diverged",
    [INVAR_RUN_KILLED] = "killed",
};
_Static_assert(sizeof run_status_names / sizeof run_status_names[0] == INVAR_RUN_STATUS_COUNT,
               "run_status_names names every run status");

/* SQLite waits this long for a lock itself; BEGIN IMMEDIATE and COMMIT are retried on top. */
#define STORE_BUSY_TIMEOUT_MS 10000
#define STORE_BUSY_RETRIES 6

struct invar_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmts[ST_COUNT]; /* prepared on first use, finalized on close */
    char host[256];
    int64_t pid;
    int64_t pid_start; /* this process's start time, -1 when unknown */
    char *git_rev;     /* looked up on the first create_run */
    bool git_rev_looked;
    bool durable;                  /* the open transaction commits with synchronous = FULL */
    enum invar_status prep_status; /* why the last stmt_get returned NULL */
    size_t reaped;
};

/* ---- small helpers ---------------------------------------------------------------------- */

const char *invar_run_status_str(enum invar_run_status st)
{
    if ((unsigned)st >= INVAR_RUN_STATUS_COUNT)
        return "unknown";
    return run_status_names[st];
}

enum invar_status invar_run_status_parse(const char *name, enum invar_run_status *out)
{
    for (int i = 0; name && i < INVAR_RUN_STATUS_COUNT; i++) {
        if (strcmp(name, run_status_names[i]) == 0) {
            *out = (enum invar_run_status)i;
            return INVAR_OK;
        }
    }
    return INVAR_ERR_INVALID;
}

/* SQLite's primary result codes that the world can cause, mapped to ours; the rest are DB. */
static const struct {
    int rc;
    enum invar_status st;
} rc_status[] = {
    {SQLITE_NOMEM, INVAR_ERR_NOMEM},
    {SQLITE_CANTOPEN, INVAR_ERR_IO},
    {SQLITE_IOERR, INVAR_ERR_IO},
    {SQLITE_READONLY, INVAR_ERR_IO},
    {SQLITE_FULL, INVAR_ERR_IO},
    {SQLITE_PERM, INVAR_ERR_IO},
    {SQLITE_NOTADB, INVAR_ERR_FORMAT},
    {SQLITE_CORRUPT, INVAR_ERR_FORMAT},
    {SQLITE_CONSTRAINT, INVAR_ERR_INVALID},
    {SQLITE_MISMATCH, INVAR_ERR_INVALID},
};

static enum invar_status status_of_rc(int rc)
{
    for (size_t i = 0; i < sizeof rc_status / sizeof rc_status[0]; i++)
        if (rc_status[i].rc == (rc & 0xff))
            return rc_status[i].st;
    return INVAR_ERR_DB;
}

/* "PATH: WHAT: sqlite's message", plus the OS error when SQLite saw one. */
static enum invar_status db_fail(struct invar_store *s, int rc, struct invar_error *err,
                                 const char *what)
{
    int sys = sqlite3_system_errno(s->db);
    int prim = rc & 0xff;
    if (sys != 0 && (prim == SQLITE_CANTOPEN || prim == SQLITE_IOERR || prim == SQLITE_FULL))
        return invar_error_set(err, status_of_rc(rc), "%s: %s: %s (%s)", s->path, what,
                               sqlite3_errmsg(s->db), strerror(sys));
    return invar_error_set(err, status_of_rc(rc), "%s: %s: %s", s->path, what,
                           sqlite3_errmsg(s->db));
}

static bool rc_busy(int rc)
{
    return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

/* 10 ms, 20 ms, 40 ms, ... with jitter, so competing writers do not retry in lockstep. */
static void busy_backoff(int attempt)
{
    long ms = 10L << attempt;
    ms += (long)((unsigned)getpid() * 2654435761u % 10u);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Steps once, retrying a busy database after SQLite's own busy timeout has run out. */
static int step_retry(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    for (int attempt = 0; rc_busy(rc) && attempt < STORE_BUSY_RETRIES; attempt++) {
        sqlite3_reset(st);
        busy_backoff(attempt);
        rc = sqlite3_step(st);
    }
    return rc;
}

/* The cached statement, reset and unbound; NULL (with err set) when it cannot be prepared. */
static sqlite3_stmt *stmt_get(struct invar_store *s, enum stmt id, struct invar_error *err)
{
    if ((int64_t)getpid() != s->pid) {
        s->prep_status = invar_error_set(err, INVAR_ERR_INVALID,
                                         "%s: handle opened by process %" PRId64
                                         " used in process %d after a fork; open the store "
                                         "again in the child",
                                         s->path, s->pid, (int)getpid());
        return NULL;
    }
    if (!s->stmts[id]) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            s->prep_status = db_fail(s, rc, err, "preparing a statement");
            return NULL;
        }
    }
    sqlite3_reset(s->stmts[id]);
    sqlite3_clear_bindings(s->stmts[id]);
    return s->stmts[id];
}

/* Runs a statement that returns no rows (or whose rows are ignored) to completion. */
static enum invar_status stmt_run(struct invar_store *s, sqlite3_stmt *st, struct invar_error *err,
                                  const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    enum invar_status out = rc == SQLITE_DONE ? INVAR_OK : db_fail(s, rc, err, what);
    sqlite3_reset(st);
    return out;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void now_iso(char buf[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Field 22 of /proc/PID/stat (start time in clock ticks since boot), -1 when unreadable. The
 * command name (field 2) may hold spaces and parentheses, so fields are counted after the last
 * ')'. */
static int64_t proc_start_time(int64_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%" PRId64 "/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* After ')' come fields 3, 4, ...; field 22 is the 20th of them. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -1;
    }
    char *end;
    errno = 0;
    long long v = strtoll(p + 1, &end, 10);
    if (errno || end == p + 1)
        return -1;
    return v;
}

/* A process is gone when kill(pid, 0) says ESRCH, or when its pid now belongs to a process that
 * started at another time (pids are reused, and containers start every program at small pids). */
static bool process_gone(int64_t pid, int64_t start)
{
    if (pid <= 0 || pid > INT32_MAX)
        return false; /* no pid recorded: nothing to judge by */
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return true;
    if (start < 0)
        return false;
    int64_t now = proc_start_time(pid);
    return now >= 0 && now != start;
}

static enum invar_status random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)r;
    }
    if (got == n)
        return INVAR_OK;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f)
        return INVAR_ERR_IO;
    size_t r = fread(buf, 1, n, f);
    fclose(f);
    return r == n ? INVAR_OK : INVAR_ERR_IO;
}

/* A random (version 4, RFC 4122 variant) uuid in lower-case hex. */
static enum invar_status uuid_v4(char out[INVAR_STORE_UUID_LEN + 1])
{
    unsigned char b[16];
    if (random_bytes(b, sizeof b) != INVAR_OK)
        return INVAR_ERR_IO;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return INVAR_OK;
}

/* HEAD of the git checkout around the working directory; NULL outside one or without git. */
static char *git_head(void)
{
    FILE *p = popen("git rev-parse HEAD 2>/dev/null", "r");
    if (!p)
        return NULL;
    char line[128] = {0};
    bool got = fgets(line, sizeof line, p) != NULL;
    int rc = pclose(p);
    if (!got || rc != 0)
        return NULL;
    size_t n = strspn(line, "0123456789abcdef");
    if (n < 40)
        return NULL;
    line[n] = '\0';
    return strdup(line);
}

/* ---- transactions ----------------------------------------------------------------------- */

/* Durability: the connection runs with synchronous = NORMAL, under which a WAL commit survives a
 * crash of the process (or of every process) but the last commits may roll back on power loss.
 * Milestones (a run created, finished, resumed, its checkpoint recorded) commit with
 * synchronous = FULL, which fsyncs the WAL and with it every earlier commit: a run that reads
 * `finished` has its metrics on disk. Metrics alone do not pay an fsync each. */
static enum invar_status set_sync(struct invar_store *s, enum stmt which, struct invar_error *err)
{
    sqlite3_stmt *st = stmt_get(s, which, err);
    return st ? stmt_run(s, st, err, "setting synchronous") : s->prep_status;
}

static enum invar_status tx_begin(struct invar_store *s, struct invar_error *err)
{
    sqlite3_stmt *st = stmt_get(s, ST_BEGIN, err);
    if (!st)
        return s->prep_status;
    int rc = step_retry(st);
    enum invar_status out = rc == SQLITE_DONE ? INVAR_OK : db_fail(s, rc, err, "BEGIN IMMEDIATE");
    sqlite3_reset(st);
    return out;
}

/* Commits when st is OK (retrying a busy COMMIT, which leaves the transaction open), rolls back
 * otherwise; returns the first failure. */
static enum invar_status tx_end(struct invar_store *s, enum invar_status st,
                                struct invar_error *err)
{
    if (st == INVAR_OK) {
        sqlite3_stmt *c = stmt_get(s, ST_COMMIT, err);
        if (c) {
            int rc = step_retry(c);
            if (rc != SQLITE_DONE)
                st = db_fail(s, rc, err, "COMMIT");
            sqlite3_reset(c);
        } else {
            st = s->prep_status;
        }
    }
    if (st != INVAR_OK && !sqlite3_get_autocommit(s->db)) {
        struct invar_error ignored;
        sqlite3_stmt *r = stmt_get(s, ST_ROLLBACK, &ignored);
        if (r) {
            sqlite3_step(r);
            sqlite3_reset(r);
        }
    }
    if (s->durable) {
        s->durable = false;
        struct invar_error ignored;
        enum invar_status sync = set_sync(s, ST_SYNC_NORMAL, &ignored);
        (void)sync; /* a failure leaves FULL in force: slower, never less safe */
    }
    return st;
}

/* A milestone transaction: commits with an fsync (see set_sync). */
static enum invar_status tx_begin_durable(struct invar_store *s, struct invar_error *err)
{
    enum invar_status st = set_sync(s, ST_SYNC_FULL, err);
    if (st != INVAR_OK)
        return st;
    s->durable = true;
    st = tx_begin(s, err);
    if (st != INVAR_OK)
        tx_end(s, st, err); /* restores NORMAL; no transaction is open */
    return st;
}

/* ---- open, migrate, reap ---------------------------------------------------------------- */

/* Runs every statement of a multi-statement SQL text (a migration row). */
static enum invar_status exec_script(struct invar_store *s, const char *sql,
                                     struct invar_error *err, const char *what)
{
    while (sql && *sql) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, &tail);
        if (rc != SQLITE_OK)
            return db_fail(s, rc, err, what);
        if (st) { /* NULL for trailing whitespace */
            rc = step_retry(st);
            while (rc == SQLITE_ROW)
                rc = sqlite3_step(st);
            enum invar_status out = rc == SQLITE_DONE ? INVAR_OK : db_fail(s, rc, err, what);
            sqlite3_finalize(st);
            if (out != INVAR_OK)
                return out;
        }
        sql = tail;
    }
    return INVAR_OK;
}

static enum invar_status read_user_version(struct invar_store *s, int *version,
                                           struct invar_error *err)
{
    sqlite3_stmt *st = stmt_get(s, ST_USER_VERSION, err);
    if (!st)
        return s->prep_status;
    int rc = step_retry(st);
    if (rc != SQLITE_ROW) {
        enum invar_status out = db_fail(s, rc, err, "reading the schema version");
        sqlite3_reset(st);
        return out;
    }
    *version = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return INVAR_OK;
}

static enum invar_status check_version(struct invar_store *s, int v, struct invar_error *err)
{
    if (v < 0 || v > INVAR_STORE_SCHEMA_VERSION)
        return invar_error_set(err, INVAR_ERR_DB,
                               "%s: schema version %d is newer than this invar supports (%d); "
                               "upgrade invar",
                               s->path, v, INVAR_STORE_SCHEMA_VERSION);
    return INVAR_OK;
}

/* Applies every missing migration in one transaction; the version is re-read inside it because
 * another process may have upgraded the file meanwhile. */
static enum invar_status migrate(struct invar_store *s, struct invar_error *err)
{
    int v = 0;
    enum invar_status st = read_user_version(s, &v, err);
    if (st == INVAR_OK)
        st = check_version(s, v, err);
    if (st != INVAR_OK || v == INVAR_STORE_SCHEMA_VERSION)
        return st;
    st = tx_begin_durable(s, err);
    if (st != INVAR_OK)
        return st;
    st = read_user_version(s, &v, err);
    if (st == INVAR_OK)
        st = check_version(s, v, err);
    for (; st == INVAR_OK && v < INVAR_STORE_SCHEMA_VERSION; v++) {
        char what[64];
        snprintf(what, sizeof what, "upgrading the schema to version %d", v + 1);
        st = exec_script(s, migrations[v], err, what);
    }
    if (st == INVAR_OK) {
        /* PRAGMA takes no bound parameters; the number is our own constant. */
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", INVAR_STORE_SCHEMA_VERSION);
        st = exec_script(s, sql, err, "setting the schema version");
    }
    return tx_end(s, st, err);
}

/* Marks `running` rows of this host whose process is gone as `killed`. The scan is a plain
 * read, so opening a healthy database takes no write lock. */
static enum invar_status reap_dead_runs(struct invar_store *s, struct invar_error *err)
{
    sqlite3_stmt *st = stmt_get(s, ST_RUNNING_HERE, err);
    if (!st)
        return s->prep_status;
    bind_text(st, 1, s->host);
    size_t n = 0, cap = 0;
    int64_t(*dead)[2] = NULL; /* (id, pid) */
    int rc;
    enum invar_status out = INVAR_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t pid = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 1);
        int64_t start =
            sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
        if (!process_gone(pid, start))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            void *grown = realloc(dead, cap * sizeof *dead);
            if (!grown) {
                out = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", s->path);
                break;
            }
            dead = grown;
        }
        dead[n][0] = sqlite3_column_int64(st, 0);
        dead[n][1] = pid;
        n++;
    }
    if (out == INVAR_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        out = db_fail(s, rc, err, "looking for dead runs");
    sqlite3_reset(st);
    if (out != INVAR_OK || n == 0) {
        free(dead);
        return out;
    }
    char now[32];
    now_iso(now);
    out = tx_begin_durable(s, err);
    for (size_t i = 0; out == INVAR_OK && i < n; i++) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "killed: process %" PRId64 " on %s ended without finishing the run "
                 "(found when the database was next opened)",
                 dead[i][1], s->host);
        sqlite3_stmt *u = stmt_get(s, ST_MARK_KILLED, err);
        if (!u) {
            out = s->prep_status;
            break;
        }
        sqlite3_bind_int64(u, 1, dead[i][0]);
        bind_text(u, 2, now);
        bind_text(u, 3, msg);
        out = stmt_run(s, u, err, "marking a dead run killed");
        if (out == INVAR_OK)
            s->reaped += (size_t)sqlite3_changes(s->db);
    }
    free(dead);
    return tx_end(s, out, err);
}

/* journal_mode answers with the mode in force: "wal", or "memory" for an in-memory database. */
static enum invar_status set_wal(struct invar_store *s, struct invar_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc, err, "opening the database");
    rc = step_retry(st);
    enum invar_status out = INVAR_OK;
    if (rc != SQLITE_ROW) {
        out = db_fail(s, rc, err, "opening the database");
    } else {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0))
            out = invar_error_set(err, INVAR_ERR_DB, "%s: cannot switch to WAL mode (got %s)",
                                  s->path, mode ? mode : "nothing");
    }
    sqlite3_finalize(st);
    return out;
}

enum invar_status invar_store_open(struct invar_store **out, const char *path,
                                   struct invar_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return invar_error_set(err, INVAR_ERR_INVALID, "database path is empty");
    struct invar_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
    }
    if (gethostname(s->host, sizeof s->host) != 0)
        snprintf(s->host, sizeof s->host, "unknown");
    s->host[sizeof s->host - 1] = '\0';
    s->pid = (int64_t)getpid();
    s->pid_start = proc_start_time(s->pid);

    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    enum invar_status st = INVAR_OK;
    if (rc != SQLITE_OK) {
        st = s->db ? db_fail(s, rc, err, "cannot open the database")
                   : invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st == INVAR_OK) {
        sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
        st = set_wal(s, err);
    }
    if (st == INVAR_OK)
        st = exec_script(s, "PRAGMA foreign_keys = ON", err, "enabling foreign keys");
    if (st == INVAR_OK)
        st = set_sync(s, ST_SYNC_NORMAL, err);
    if (st == INVAR_OK)
        st = migrate(s, err);
    if (st == INVAR_OK)
        st = reap_dead_runs(s, err);
    if (st != INVAR_OK) {
        invar_store_close(s);
        return st;
    }
    *out = s;
    return INVAR_OK;
}

void invar_store_close(struct invar_store *s)
{
    if (!s)
        return;
    /* In a forked child the connection is the parent's: closing it here could checkpoint or
     * unlock behind the parent's back, so the child only drops its copy of our memory. */
    if ((int64_t)getpid() == s->pid) {
        for (int i = 0; i < ST_COUNT; i++)
            sqlite3_finalize(s->stmts[i]);
        sqlite3_close(s->db);
    }
    free(s->git_rev);
    free(s->path);
    free(s);
}

const char *invar_store_path(const struct invar_store *s)
{
    return s->path;
}

size_t invar_store_reaped(const struct invar_store *s)
{
    return s->reaped;
}

/* ---- writing ---------------------------------------------------------------------------- */

/* A failed insert into params or metrics: a foreign-key failure means there is no such run. */
static enum invar_status insert_fail(struct invar_store *s, int rc, int64_t run_id,
                                     struct invar_error *err, const char *what)
{
    if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return invar_error_set(err, INVAR_ERR_NOT_FOUND, "%s: %s: no run with id %" PRId64, s->path,
                               what, run_id);
    return db_fail(s, rc, err, what);
}

enum invar_status invar_store_create_run(struct invar_store *s,
                                         const struct invar_store_new_run *run, int64_t *run_id,
                                         struct invar_error *err)
{
    *run_id = 0;
    if (!run->experiment || !run->config || !run->config_hash)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "%s: a run needs an experiment name, a config and its hash",
                               s->path);
    char uuid[INVAR_STORE_UUID_LEN + 1], now[32];
    if (uuid_v4(uuid) != INVAR_OK)
        return invar_error_set(err, INVAR_ERR_IO, "%s: no random bytes for a run uuid: %s", s->path,
                               strerror(errno));
    now_iso(now);
    if (!s->git_rev_looked) {
        s->git_rev = git_head();
        s->git_rev_looked = true;
    }
    enum invar_status st = tx_begin_durable(s, err);
    if (st != INVAR_OK)
        return st;
    sqlite3_stmt *q = stmt_get(s, ST_INSERT_RUN, err);
    if (!q)
        return tx_end(s, s->prep_status, err);
    bind_text(q, 1, uuid);
    bind_text(q, 2, run->experiment);
    bind_text(q, 3, run->sweep);
    bind_text(q, 4, run->config);
    bind_text(q, 5, run->config_hash);
    sqlite3_bind_int64(q, 6, run->seed);
    bind_text(q, 7, now);
    bind_text(q, 8, s->host);
    bind_text(q, 9, s->git_rev);
    bind_text(q, 10, invar_version());
    sqlite3_bind_int64(q, 11, s->pid);
    if (s->pid_start >= 0)
        sqlite3_bind_int64(q, 12, s->pid_start);
    bind_text(q, 13, run->command);
    st = stmt_run(s, q, err, "creating a run");
    if (st == INVAR_OK)
        *run_id = sqlite3_last_insert_rowid(s->db);
    st = tx_end(s, st, err);
    if (st != INVAR_OK)
        *run_id = 0;
    return st;
}

enum invar_status invar_store_log_params(struct invar_store *s, int64_t run_id,
                                         const struct invar_store_param *params, size_t n,
                                         struct invar_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!params[i].key)
            return invar_error_set(err, INVAR_ERR_INVALID, "%s: param %zu has no key", s->path, i);
    enum invar_status st = tx_begin(s, err);
    if (st != INVAR_OK)
        return st;
    for (size_t i = 0; st == INVAR_OK && i < n; i++) {
        sqlite3_stmt *q = stmt_get(s, ST_INSERT_PARAM, err);
        if (!q) {
            st = s->prep_status;
            break;
        }
        sqlite3_bind_int64(q, 1, run_id);
        bind_text(q, 2, params[i].key);
        bind_text(q, 3, params[i].value);
        int rc = sqlite3_step(q);
        if (rc != SQLITE_DONE)
            st = insert_fail(s, rc, run_id, err, "logging params");
        sqlite3_reset(q);
    }
    return tx_end(s, st, err);
}

/* Inserts one metric row inside the caller's transaction. */
static enum invar_status insert_metric(struct invar_store *s, int64_t run_id,
                                       const struct invar_store_metric *m, double wall,
                                       struct invar_error *err)
{
    if (!m->key)
        return invar_error_set(err, INVAR_ERR_INVALID, "%s: a metric has no key", s->path);
    sqlite3_stmt *q = stmt_get(s, ST_INSERT_METRIC, err);
    if (!q)
        return s->prep_status;
    sqlite3_bind_int64(q, 1, run_id);
    bind_text(q, 2, m->key);
    sqlite3_bind_int64(q, 3, m->step);
    sqlite3_bind_int64(q, 4, m->epoch);
    if (isnan(m->value))
        sqlite3_bind_null(q, 5); /* SQLite has no NaN; NULL reads back as NaN */
    else
        sqlite3_bind_double(q, 5, m->value);
    sqlite3_bind_double(q, 6, wall);
    int rc = sqlite3_step(q);
    enum invar_status st =
        rc == SQLITE_DONE ? INVAR_OK : insert_fail(s, rc, run_id, err, "logging a metric");
    sqlite3_reset(q);
    return st;
}

enum invar_status invar_store_log_metric(struct invar_store *s, int64_t run_id, const char *key,
                                         int64_t step, int64_t epoch, double value,
                                         struct invar_error *err)
{
    struct invar_store_metric m = {.key = key, .step = step, .epoch = epoch, .value = value};
    return invar_store_log_metrics(s, run_id, &m, 1, err);
}

enum invar_status invar_store_log_metrics(struct invar_store *s, int64_t run_id,
                                          const struct invar_store_metric *metrics, size_t n,
                                          struct invar_error *err)
{
    double wall = now_unix();
    enum invar_status st = tx_begin(s, err);
    if (st != INVAR_OK)
        return st;
    for (size_t i = 0; st == INVAR_OK && i < n; i++)
        st = insert_metric(s, run_id, &metrics[i], wall, err);
    return tx_end(s, st, err);
}

/* Inside a transaction: NOT_FOUND for no such run, else INVALID naming its status. */
static enum invar_status explain_status(struct invar_store *s, int64_t run_id, const char *want,
                                        struct invar_error *err)
{
    sqlite3_stmt *q = stmt_get(s, ST_RUN_STATUS, err);
    if (!q)
        return s->prep_status;
    sqlite3_bind_int64(q, 1, run_id);
    int rc = sqlite3_step(q);
    enum invar_status st;
    if (rc == SQLITE_ROW)
        st = invar_error_set(err, INVAR_ERR_INVALID, "%s: run %" PRId64 " is %s, not %s", s->path,
                             run_id, (const char *)sqlite3_column_text(q, 0), want);
    else if (rc == SQLITE_DONE)
        st = invar_error_set(err, INVAR_ERR_NOT_FOUND, "%s: no run with id %" PRId64, s->path,
                             run_id);
    else
        st = db_fail(s, rc, err, "reading a run's status");
    sqlite3_reset(q);
    return st;
}

/* Runs an UPDATE of one run inside its own transaction; when it changed nothing, explains why
 * (want names the status the update needed). */
static enum invar_status update_run(struct invar_store *s, sqlite3_stmt *q, int64_t run_id,
                                    const char *want, struct invar_error *err, const char *what)
{
    enum invar_status st = stmt_run(s, q, err, what);
    if (st == INVAR_OK && sqlite3_changes(s->db) == 0)
        st = explain_status(s, run_id, want, err);
    return tx_end(s, st, err);
}

enum invar_status invar_store_finish_run(struct invar_store *s, int64_t run_id,
                                         enum invar_run_status status, int signal,
                                         const char *error, struct invar_error *err)
{
    if ((unsigned)status >= INVAR_RUN_STATUS_COUNT || status == INVAR_RUN_RUNNING)
        return invar_error_set(err, INVAR_ERR_INVALID, "%s: run %" PRId64 " cannot finish as `%s'",
                               s->path, run_id, invar_run_status_str(status));
    char now[32];
    now_iso(now);
    enum invar_status st = tx_begin_durable(s, err);
    if (st != INVAR_OK)
        return st;
    sqlite3_stmt *q = stmt_get(s, ST_FINISH_RUN, err);
    if (!q)
        return tx_end(s, s->prep_status, err);
    sqlite3_bind_int64(q, 1, run_id);
    bind_text(q, 2, run_status_names[status]);
    if (signal != 0)
        sqlite3_bind_int(q, 3, signal);
    bind_text(q, 4, error);
    bind_text(q, 5, now);
    return update_run(s, q, run_id, "running", err, "finishing a run");
}

enum invar_status invar_store_resume_run(struct invar_store *s, int64_t run_id,
                                         struct invar_error *err)
{
    enum invar_status st = tx_begin_durable(s, err);
    if (st != INVAR_OK)
        return st;
    sqlite3_stmt *q = stmt_get(s, ST_RESUME_RUN, err);
    if (!q)
        return tx_end(s, s->prep_status, err);
    sqlite3_bind_int64(q, 1, run_id);
    bind_text(q, 2, s->host);
    sqlite3_bind_int64(q, 3, s->pid);
    if (s->pid_start >= 0)
        sqlite3_bind_int64(q, 4, s->pid_start);
    return update_run(s, q, run_id, "killed or failed", err, "resuming a run");
}

enum invar_status invar_store_set_checkpoint(struct invar_store *s, int64_t run_id,
                                             const char *path, struct invar_error *err)
{
    enum invar_status st = tx_begin_durable(s, err);
    if (st != INVAR_OK)
        return st;
    sqlite3_stmt *q = stmt_get(s, ST_SET_CHECKPOINT, err);
    if (!q)
        return tx_end(s, s->prep_status, err);
    sqlite3_bind_int64(q, 1, run_id);
    bind_text(q, 2, path);
    return update_run(s, q, run_id, "present", err, "setting a checkpoint path");
}

/* ---- reading ---------------------------------------------------------------------------- */

/* A text column copied to the heap; NULL stays NULL. *oom is set when a copy failed. */
static char *col_dup(sqlite3_stmt *q, int i, bool *oom)
{
    if (sqlite3_column_type(q, i) == SQLITE_NULL)
        return NULL;
    const char *t = (const char *)sqlite3_column_text(q, i);
    char *d = t ? strdup(t) : NULL;
    if (!d)
        *oom = true;
    return d;
}

void invar_store_run_deinit(struct invar_store_run *r)
{
    if (!r)
        return;
    char **strs[] = {&r->experiment, &r->sweep,         &r->config,      &r->config_hash,
                     &r->error,      &r->started_at,    &r->finished_at, &r->host,
                     &r->git_rev,    &r->invar_version, &r->command,     &r->checkpoint};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
}

/* Fills r from a row of RUN_COLUMNS. */
static enum invar_status run_from_row(struct invar_store *s, sqlite3_stmt *q,
                                      struct invar_store_run *r, struct invar_error *err)
{
    memset(r, 0, sizeof *r);
    bool oom = false;
    r->id = sqlite3_column_int64(q, 0);
    const char *uuid = (const char *)sqlite3_column_text(q, 1);
    snprintf(r->uuid, sizeof r->uuid, "%s", uuid ? uuid : "");
    const char *status = (const char *)sqlite3_column_text(q, 2);
    if (invar_run_status_parse(status, &r->status) != INVAR_OK)
        r->status = INVAR_RUN_STATUS_COUNT; /* the CHECK constraint makes this unreachable */
    r->seed = sqlite3_column_int64(q, 3);
    r->pid = sqlite3_column_int64(q, 4);
    r->signal = sqlite3_column_int(q, 5);
    char **strs[] = {&r->experiment, &r->sweep,         &r->config,      &r->config_hash,
                     &r->error,      &r->started_at,    &r->finished_at, &r->host,
                     &r->git_rev,    &r->invar_version, &r->command,     &r->checkpoint};
    for (int i = 0; i < (int)(sizeof strs / sizeof strs[0]); i++)
        *strs[i] = col_dup(q, 6 + i, &oom);
    if (oom) {
        invar_store_run_deinit(r);
        return invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", s->path);
    }
    return INVAR_OK;
}

enum invar_status invar_store_get_run(struct invar_store *s, int64_t run_id,
                                      struct invar_store_run *out, struct invar_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = stmt_get(s, ST_GET_RUN, err);
    if (!q)
        return s->prep_status;
    sqlite3_bind_int64(q, 1, run_id);
    int rc = step_retry(q);
    enum invar_status st;
    if (rc == SQLITE_ROW)
        st = run_from_row(s, q, out, err);
    else if (rc == SQLITE_DONE)
        st = invar_error_set(err, INVAR_ERR_NOT_FOUND, "%s: no run with id %" PRId64, s->path,
                             run_id);
    else
        st = db_fail(s, rc, err, "reading a run");
    sqlite3_reset(q);
    return st;
}

/* Runs a one-row, one-integer query; *v = 0 when the value is NULL. */
static enum invar_status query_int(struct invar_store *s, sqlite3_stmt *q, int64_t *v,
                                   struct invar_error *err, const char *what)
{
    int rc = step_retry(q);
    enum invar_status st = INVAR_OK;
    *v = 0;
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(q, 0);
    else if (rc != SQLITE_DONE)
        st = db_fail(s, rc, err, what);
    sqlite3_reset(q);
    return st;
}

enum invar_status invar_store_latest_run(struct invar_store *s, int64_t *run_id,
                                         struct invar_error *err)
{
    sqlite3_stmt *q = stmt_get(s, ST_LATEST_RUN, err);
    if (!q)
        return s->prep_status;
    enum invar_status st = query_int(s, q, run_id, err, "finding the latest run");
    if (st == INVAR_OK && *run_id == 0)
        st = invar_error_set(err, INVAR_ERR_NOT_FOUND, "%s: there are no runs yet", s->path);
    return st;
}

enum invar_status invar_store_find_finished(struct invar_store *s, const char *config_hash,
                                            int64_t *run_id, struct invar_error *err)
{
    sqlite3_stmt *q = stmt_get(s, ST_FIND_FINISHED, err);
    if (!q)
        return s->prep_status;
    bind_text(q, 1, config_hash);
    return query_int(s, q, run_id, err, "looking for a finished run");
}

/* A uuid prefix normalised to lower case: hex digits and dashes, at least 4 hex digits. */
static bool uuid_prefix(const char *ref, char out[INVAR_STORE_UUID_LEN + 1])
{
    size_t n = strlen(ref), hex = 0;
    if (n > INVAR_STORE_UUID_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = ref[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
            hex++;
        else if (c != '-')
            return false;
        out[i] = c;
    }
    out[n] = '\0';
    return hex >= 4;
}

enum invar_status invar_store_find_run(struct invar_store *s, const char *ref, int64_t *run_id,
                                       struct invar_error *err)
{
    *run_id = 0;
    if (!ref || !*ref)
        return invar_error_set(err, INVAR_ERR_INVALID, "%s: empty run reference", s->path);
    if (strcmp(ref, "latest") == 0 || strcmp(ref, "last") == 0)
        return invar_store_latest_run(s, run_id, err);
    enum invar_status st;
    if (strspn(ref, "0123456789") == strlen(ref) && strlen(ref) <= 18) {
        int64_t id = strtoll(ref, NULL, 10), found;
        sqlite3_stmt *q = stmt_get(s, ST_RUN_EXISTS, err);
        if (!q)
            return s->prep_status;
        sqlite3_bind_int64(q, 1, id);
        st = query_int(s, q, &found, err, "looking up a run");
        if (st != INVAR_OK)
            return st;
        if (found) {
            *run_id = id;
            return INVAR_OK;
        }
    }
    char prefix[INVAR_STORE_UUID_LEN + 1];
    if (!uuid_prefix(ref, prefix))
        return invar_error_set(err, INVAR_ERR_NOT_FOUND,
                               "%s: no run `%s' (give an id, a uuid prefix of 4+ hex digits, "
                               "or `latest')",
                               s->path, ref);
    sqlite3_stmt *q = stmt_get(s, ST_RUNS_BY_UUID, err);
    if (!q)
        return s->prep_status;
    bind_text(q, 1, prefix);
    int rc, matches = 0;
    int64_t first = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (matches++ == 0)
            first = sqlite3_column_int64(q, 0);
    }
    st = rc == SQLITE_DONE ? INVAR_OK : db_fail(s, rc, err, "looking up a run");
    sqlite3_reset(q);
    if (st != INVAR_OK)
        return st;
    if (matches == 0)
        return invar_error_set(err, INVAR_ERR_NOT_FOUND, "%s: no run matches `%s'", s->path, ref);
    if (matches > 1)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "%s: `%s' is ambiguous: %s%d runs match; give more digits", s->path,
                               ref, matches >= 10 ? "at least " : "", matches);
    *run_id = first;
    return INVAR_OK;
}

void invar_store_run_list_deinit(struct invar_store_run_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        invar_store_run_deinit(&list->runs[i]);
    free(list->runs);
    list->runs = NULL;
    list->count = 0;
}

/* Grows *items (of elem bytes each) so that one more fits. */
static bool grow(void **items, size_t count, size_t *cap, size_t elem)
{
    if (count < *cap)
        return true;
    size_t ncap = *cap ? 2 * *cap : 16;
    void *p = realloc(*items, ncap * elem);
    if (!p)
        return false;
    *items = p;
    *cap = ncap;
    return true;
}

enum invar_status invar_store_list_runs(struct invar_store *s, const char *sweep,
                                        struct invar_store_run_list *out, struct invar_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = stmt_get(s, sweep ? ST_LIST_SWEEP : ST_LIST_RUNS, err);
    if (!q)
        return s->prep_status;
    if (sweep)
        bind_text(q, 1, sweep);
    size_t cap = 0;
    int rc;
    enum invar_status st = INVAR_OK;
    while (st == INVAR_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (!grow((void **)&out->runs, out->count, &cap, sizeof *out->runs)) {
            st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", s->path);
            break;
        }
        st = run_from_row(s, q, &out->runs[out->count], err);
        if (st == INVAR_OK)
            out->count++;
    }
    if (st == INVAR_OK && rc != SQLITE_DONE)
        st = db_fail(s, rc, err, "listing runs");
    sqlite3_reset(q);
    if (st != INVAR_OK)
        invar_store_run_list_deinit(out);
    return st;
}

void invar_store_param_list_deinit(struct invar_store_param_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++) {
        free((char *)list->items[i].key);
        free((char *)list->items[i].value);
    }
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

enum invar_status invar_store_read_params(struct invar_store *s, int64_t run_id,
                                          struct invar_store_param_list *out,
                                          struct invar_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = stmt_get(s, ST_READ_PARAMS, err);
    if (!q)
        return s->prep_status;
    sqlite3_bind_int64(q, 1, run_id);
    size_t cap = 0;
    int rc;
    enum invar_status st = INVAR_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        bool oom = !grow((void **)&out->items, out->count, &cap, sizeof *out->items);
        if (!oom) {
            struct invar_store_param *p = &out->items[out->count++];
            p->key = col_dup(q, 0, &oom);
            p->value = col_dup(q, 1, &oom);
        }
        if (oom) {
            st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", s->path);
            break;
        }
    }
    if (st == INVAR_OK && rc != SQLITE_DONE)
        st = db_fail(s, rc, err, "reading params");
    sqlite3_reset(q);
    if (st != INVAR_OK)
        invar_store_param_list_deinit(out);
    return st;
}

void invar_store_metric_list_deinit(struct invar_store_metric_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        free((char *)list->items[i].key);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

/* Collects rows of (key, step, epoch, value, wall_time). */
static enum invar_status read_metric_rows(struct invar_store *s, sqlite3_stmt *q,
                                          struct invar_store_metric_list *out,
                                          struct invar_error *err)
{
    size_t cap = 0;
    int rc;
    enum invar_status st = INVAR_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        bool oom = !grow((void **)&out->items, out->count, &cap, sizeof *out->items);
        if (!oom) {
            struct invar_store_metric *m = &out->items[out->count++];
            m->key = col_dup(q, 0, &oom);
            m->step = sqlite3_column_int64(q, 1);
            m->epoch = sqlite3_column_int64(q, 2);
            m->value = sqlite3_column_type(q, 3) == SQLITE_NULL ? NAN : sqlite3_column_double(q, 3);
            m->wall_time = sqlite3_column_double(q, 4);
        }
        if (oom) {
            st = invar_error_set(err, INVAR_ERR_NOMEM, "%s: out of memory", s->path);
            break;
        }
    }
    if (st == INVAR_OK && rc != SQLITE_DONE)
        st = db_fail(s, rc, err, "reading metrics");
    sqlite3_reset(q);
    if (st != INVAR_OK)
        invar_store_metric_list_deinit(out);
    return st;
}

enum invar_status invar_store_read_final_metrics(struct invar_store *s, int64_t run_id,
                                                 struct invar_store_metric_list *out,
                                                 struct invar_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = stmt_get(s, ST_FINAL_METRICS, err);
    if (!q)
        return s->prep_status;
    sqlite3_bind_int64(q, 1, run_id);
    return read_metric_rows(s, q, out, err);
}

enum invar_status invar_store_read_metrics(struct invar_store *s, int64_t run_id, const char *key,
                                           struct invar_store_metric_list *out,
                                           struct invar_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q = stmt_get(s, key ? ST_METRICS_KEY : ST_METRICS_ALL, err);
    if (!q)
        return s->prep_status;
    sqlite3_bind_int64(q, 1, run_id);
    if (key)
        bind_text(q, 2, key);
    return read_metric_rows(s, q, out, err);
}
