/* Sweeps and reports: expansion of grid × zip × seeds and command-line axes (the library's
 * plan, then `invar sweep --dry-run`), validation before anything starts, resuming by config
 * hash, a crashing trial recorded while the sweep goes on, a parent killed with SIGKILL, and
 * `invar report` on a database built here through the store API (table, CSV, HTML). */
#define _XOPEN_SOURCE 700 // nftw
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "invar/store.h"
#include "invar_process.h"
#include "invar/sweep.h"

/* ---- the plan (library) ------------------------------------------------------------------- */

static const char *const a_vals[] = {"1", "2", "3"};
static const char *const b_vals[] = {"x", "y"};
static const char *const c_vals[] = {"p", "q"};
static const char *const d_vals[] = {"10", "20"};
static const struct invar_sweep_axis grid_axes[] = {{"a", a_vals, 3}, {"b", b_vals, 2}};
static const struct invar_sweep_axis zip_axes[] = {{"c", c_vals, 2}, {"d", d_vals, 2}};
static const int64_t seeds[] = {7, 8};
static const struct invar_sweep file_sweep = {grid_axes, 2, zip_axes, 2, seeds, 2};

static void assert_trial(const struct invar_sweep_plan *p, size_t i, const char *const *want)
{
    const struct invar_sweep_trial *t = invar_sweep_plan_trial(p, i);
    size_t n = 0;
    while (want[n])
        n++;
    cr_assert_eq(t->n_overrides, n, "trial %zu: %zu overrides, want %zu", i, t->n_overrides, n);
    for (size_t k = 0; k < n; k++)
        cr_assert_str_eq(t->overrides[k], want[k], "trial %zu override %zu", i, k);
}

#define TRIAL(p, i, ...) assert_trial(p, i, (const char *const[]){__VA_ARGS__, NULL})

Test(sweep, plan_crosses_grid_with_zip_and_seeds)
{
    struct invar_sweep_plan *p;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_sweep_plan_create(&p, &file_sweep, NULL, 0, &err), INVAR_OK, "%s", err.msg);
    /* 3 × 2 grid, the zip advancing as one axis of 2, 2 seeds. */
    cr_assert_eq(invar_sweep_plan_count(p), 24u);
    TRIAL(p, 0, "a=1", "b=x", "c=p", "d=10", "seed=7");
    TRIAL(p, 1, "a=1", "b=x", "c=p", "d=10", "seed=8");
    TRIAL(p, 2, "a=1", "b=x", "c=q", "d=20", "seed=7");
    TRIAL(p, 4, "a=1", "b=y", "c=p", "d=10", "seed=7");
    TRIAL(p, 8, "a=2", "b=x", "c=p", "d=10", "seed=7");
    TRIAL(p, 23, "a=3", "b=y", "c=q", "d=20", "seed=8");
    /* Every combination once, and c and d never apart. */
    for (size_t i = 0; i < 24; i++) {
        const struct invar_sweep_trial *t = invar_sweep_plan_trial(p, i);
        cr_assert_eq(t->has_seed, 1);
        cr_assert_eq(t->seed, (int64_t)(7 + i % 2));
        cr_assert_eq(t->overrides[2][2] == 'p', !strcmp(t->overrides[3], "d=10"));
        for (size_t j = 0; j < i; j++) {
            const struct invar_sweep_trial *u = invar_sweep_plan_trial(p, j);
            int same = 1;
            for (size_t k = 0; k < 5; k++)
                same &= !strcmp(t->overrides[k], u->overrides[k]);
            cr_assert(!same, "trials %zu and %zu are the same", i, j);
        }
    }
    cr_assert_eq(invar_sweep_plan_n_axes(p), 4u);
    cr_assert_str_eq(invar_sweep_plan_axis(p, 0), "a");
    cr_assert_str_eq(invar_sweep_plan_axis(p, 1), "b");
    cr_assert_str_eq(invar_sweep_plan_axis(p, 2), "c");
    cr_assert_str_eq(invar_sweep_plan_axis(p, 3), "d");
    invar_sweep_plan_destroy(p);
}

Test(sweep, plan_takes_command_line_axes_and_fixed_values)
{
    const char *args[] = {"b=z", "e=0.1,0.2", "f=[1, 2],[3,4]", "g={x: 1, y: 2}", "a=5, 6"};
    struct invar_sweep_plan *p;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_sweep_plan_create(&p, &file_sweep, args, 5, &err), INVAR_OK, "%s", err.msg);
    /* b fixed (its axis gone), a replaced by 2 values, e and f added: 2 × 2 × 2 × zip 2 ×
     * seeds 2. Brackets and braces keep their commas. */
    cr_assert_eq(invar_sweep_plan_count(p), 32u);
    TRIAL(p, 0, "b=z", "g={x: 1, y: 2}", "a=5", "e=0.1", "f=[1, 2]", "c=p", "d=10", "seed=7");
    TRIAL(p, 31, "b=z", "g={x: 1, y: 2}", "a=6", "e=0.2", "f=[3,4]", "c=q", "d=20", "seed=8");
    cr_assert_eq(invar_sweep_plan_n_axes(p), 5u);
    cr_assert_str_eq(invar_sweep_plan_axis(p, 0), "a");
    cr_assert_str_eq(invar_sweep_plan_axis(p, 1), "e");
    cr_assert_str_eq(invar_sweep_plan_axis(p, 2), "f");
    invar_sweep_plan_destroy(p);

    /* No sweep block: one trial, the fixed values only; an axis alone makes a grid. */
    const char *one[] = {"train.epochs=2", "optim.lr=0.1,0.2,0.3"};
    cr_assert_eq(invar_sweep_plan_create(&p, NULL, one, 2, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_sweep_plan_count(p), 3u);
    TRIAL(p, 2, "train.epochs=2", "optim.lr=0.3");
    cr_assert_eq(invar_sweep_plan_trial(p, 2)->has_seed, 0);
    invar_sweep_plan_destroy(p);
    cr_assert_eq(invar_sweep_plan_create(&p, NULL, NULL, 0, &err), INVAR_OK);
    cr_assert_eq(invar_sweep_plan_count(p), 1u);
    cr_assert_eq(invar_sweep_plan_trial(p, 0)->n_overrides, 0u);
    invar_sweep_plan_destroy(p);
}

static void expect_plan_error(const char *arg, const char *want)
{
    struct invar_sweep_plan *p = (void *)1;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_sweep_plan_create(&p, &file_sweep, &arg, 1, &err), INVAR_ERR_CONFIG, "%s",
                 arg);
    cr_assert_null(p);
    cr_assert_str_eq(err.msg, want);
}

Test(sweep, plan_refuses_bad_arguments)
{
    expect_plan_error("c=1,2", "<command line>: c=1,2: `c` is a zip axis of the sweep; change "
                               "its values in the file, where the zip lists advance together");
    expect_plan_error("seed=3",
                      "<command line>: seed=3: the sweep has `seeds`; change them in the file");
    expect_plan_error("=3", "<command line>: =3: expected KEY=VALUE or KEY=V1,V2,...");
    expect_plan_error("e=1,,2", "<command line>: e=1,,2: empty value in the list");
    expect_plan_error("e='a,b", "<command line>: e='a,b: unterminated quote");
}

/* ---- running the binary ------------------------------------------------------------------- */

static const char *data(const char *name)
{
    static char path[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(path[slot], sizeof path[slot], "%s/sweep/%s", getenv("INVAR_TEST_DATA"), name);
    return path[slot];
}

static const char *crash_plugin_dir(void)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/crash", getenv("INVAR_BUILD_ROOT"));
    return path;
}

TestSuite(sweep, .init = proc_setup, .fini = proc_teardown);

static struct invar_store *open_db(void)
{
    struct invar_store *db;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_store_open(&db, db_path, &err), INVAR_OK, "%s", err.msg);
    return db;
}

static void list_runs(struct invar_store *db, const char *sweep, struct invar_store_run_list *l)
{
    struct invar_error err = {{0}};
    cr_assert_eq(invar_store_list_runs(db, sweep, l, &err), INVAR_OK, "%s", err.msg);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Line i (from 0) of text, without its newline. */
static const char *line_at(const char *text, size_t i, char *buf, size_t n)
{
    const char *s = text;
    for (size_t k = 0; k < i && s; k++)
        if ((s = strchr(s, '\n')))
            s++;
    cr_assert(s && *s, "no line %zu in:\n%s", i, text);
    size_t len = strcspn(s, "\n");
    snprintf(buf, n, "%.*s", (int)len, s);
    return buf;
}

/* ---- invar sweep -------------------------------------------------------------------------- */

/* Every experiment file the project ships loads and validates with the real plugins (the
 * dry run resolves each trial without touching the data): a key a plugin no longer knows, or
 * a value out of its range, fails here rather than in a user's hands. */
Test(sweep, every_shipped_experiment_validates)
{
    static const char *const dirs[] = {"experiments", "experiments/ablations"};
    int checked = 0;
    for (int d = 0; d < 2; d++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", getenv("INVAR_SOURCE_ROOT"), dirs[d]);
        DIR *dp = opendir(dir);
        cr_assert_not_null(dp, "%s", dir);
        struct dirent *de;
        while ((de = readdir(dp))) {
            size_t n = strlen(de->d_name);
            if (n < 6 || strcmp(de->d_name + n - 5, ".yaml") != 0)
                continue;
            char path[1300];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            cr_expect_eq(INVAR("sweep", path, "--dry-run"), 0, "%s: %s", path, err_text);
            cr_expect(strstr(out_text, " trials, 0 finished"), "%s: %s", path, out_text);
            checked++;
        }
        closedir(dp);
    }
    cr_assert_geq(checked, 10, "only %d experiment files found", checked);
}

Test(sweep, dry_run_lists_every_trial_with_command_line_axes)
{
    cr_assert_eq(INVAR("sweep", data("grid.yaml"), "--dry-run"), 0, "%s", err_text);
    cr_assert_eq(count_lines(out_text), 9u, "%s", out_text);
    char l[512];
    cr_assert(strstr(line_at(out_text, 0, l, sizeof l),
                     "objective.momentum=0.9 optim.lr=0.01 train.batch_size=32 seed=1"),
              "%s", l);
    cr_assert(strstr(line_at(out_text, 3, l, sizeof l),
                     "objective.momentum=0.9 optim.lr=0.05 train.batch_size=64 seed=2"),
              "%s", l);
    cr_assert(strstr(line_at(out_text, 7, l, sizeof l),
                     "objective.momentum=0.99 optim.lr=0.05 train.batch_size=64 seed=2"),
              "%s", l);
    cr_assert(strstr(line_at(out_text, 0, l, sizeof l), "to run"), "%s", l);
    cr_assert_str_eq(line_at(out_text, 8, l, sizeof l),
                     "sweep grid: 8 trials, 0 finished, 0 running, 8 to run");

    /* A command-line axis multiplies; a fixed value replaces a file axis; --name renames. */
    cr_assert_eq(INVAR("sweep", data("grid.yaml"), "--dry-run", "objective.queue=64,256",
                       "objective.momentum=0.5", "--name", "mine"),
                 0, "%s", err_text);
    cr_assert_eq(count_lines(out_text), 9u, "%s", out_text);
    cr_assert(strstr(line_at(out_text, 0, l, sizeof l),
                     " objective.momentum=0.5 objective.queue=64 optim.lr=0.01 "
                     "train.batch_size=32 seed=1"),
              "%s", l);
    cr_assert(strstr(line_at(out_text, 7, l, sizeof l),
                     " objective.momentum=0.5 objective.queue=256 optim.lr=0.05 "
                     "train.batch_size=64 seed=2"),
              "%s", l);
    cr_assert_str_eq(line_at(out_text, 8, l, sizeof l),
                     "sweep mine: 8 trials, 0 finished, 0 running, 8 to run");
}

Test(sweep, a_typo_in_one_trial_fails_before_anything_starts)
{
    cr_assert_eq(INVAR("sweep", data("grid.yaml"), "-j", "2", "train.epochs=1,2,x"), 1);
    /* The first trial with the third value fails: the axis's index 2 times the 2 zip
     * positions times the 2 seeds, plus one: trial 9 of 24. */
    cr_assert_str_eq(err_text,
                     "invar: trial 9 of 24 (objective.momentum=0.9 train.epochs=x optim.lr=0.01 "
                     "train.batch_size=32 seed=1): <command line>: train.epochs=x: train.epochs: "
                     "expected an integer, got 'x'\n");
    /* Nothing ran: the database was not even created. */
    cr_assert_neq(access(db_path, F_OK), 0);
    cr_assert_eq(INVAR("sweep", data("grid.yaml"), "-j", "0"), 2);
    cr_assert_eq(INVAR("sweep", data("grid.yaml"), "--bogus"), 2);
}

Test(sweep, a_second_run_starts_nothing, .timeout = 300)
{
    cr_assert_eq(INVAR("sweep", data("tiny.yaml"), "-j", "2"), 0, "%s", err_text);
    struct invar_store *db = open_db();
    struct invar_store_run_list l = {0};
    list_runs(db, "tiny-sweep", &l);
    cr_assert_eq(l.count, 2u);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(l.runs[i].status, INVAR_RUN_FINISHED, "%s", l.runs[i].error);
        cr_assert_str_eq(l.runs[i].sweep, "tiny-sweep");
        cr_assert_not_null(strstr(l.runs[i].command, "--sweep tiny-sweep"));
    }
    /* Seeds 1 and 2, whichever finished first. */
    cr_assert_eq(l.runs[0].seed + l.runs[1].seed, 3);
    invar_store_run_list_deinit(&l);
    invar_store_close(db);

    cr_assert_eq(INVAR("sweep", data("tiny.yaml"), "--dry-run"), 0, "%s", err_text);
    cr_assert(strstr(out_text, "sweep tiny-sweep: 2 trials, 2 finished, 0 running, 0 to run"), "%s",
              out_text);
    cr_assert_eq(INVAR("sweep", data("tiny.yaml"), "-j", "2"), 0, "%s", err_text);
    cr_assert(strstr(err_text, "0 finished now, 2 finished before"), "%s", err_text);
    db = open_db();
    list_runs(db, NULL, &l);
    cr_assert_eq(l.count, 2u, "the second sweep started a run");
    invar_store_run_list_deinit(&l);
    invar_store_close(db);
}

Test(sweep, a_crashing_trial_is_recorded_and_the_sweep_goes_on, .timeout = 300)
{
    const char *const args[] = {
        "--plugin-path", crash_plugin_dir(), "sweep", data("crash.yaml"), "-j", "2", NULL};
    cr_assert_eq(invar(args), 1, "%s", err_text);
    cr_assert(strstr(err_text, "died of signal 11"), "%s", err_text);
    struct invar_store *db = open_db();
    struct invar_store_run_list l = {0};
    list_runs(db, "crash", &l);
    cr_assert_eq(l.count, 2u);
    size_t finished = 0, killed = 0;
    for (size_t i = 0; i < l.count; i++) {
        int crashed = strstr(l.runs[i].config, "crash: true") != NULL;
        if (crashed) {
            cr_assert_eq(l.runs[i].status, INVAR_RUN_KILLED);
            cr_assert_eq(l.runs[i].signal, SIGSEGV);
            cr_assert_not_null(l.runs[i].finished_at);
            cr_assert(strstr(l.runs[i].error, "signal 11"), "%s", l.runs[i].error);
            killed++;
        } else {
            cr_assert_eq(l.runs[i].status, INVAR_RUN_FINISHED, "%s", l.runs[i].error);
            finished++;
        }
    }
    cr_assert_eq(finished, 1u);
    cr_assert_eq(killed, 1u);
    invar_store_run_list_deinit(&l);
    invar_store_close(db);

    /* Again: the finished trial is skipped, the crashing one runs (and crashes) again. */
    cr_assert_eq(invar(args), 1, "%s", err_text);
    cr_assert(strstr(err_text, "0 finished now, 1 finished before, 0 diverged, 1 failed"), "%s",
              err_text);
    db = open_db();
    list_runs(db, "crash", &l);
    cr_assert_eq(l.count, 3u);
    cr_assert_eq(l.runs[2].status, INVAR_RUN_KILLED);
    invar_store_run_list_deinit(&l);
    invar_store_close(db);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static size_t count_status(struct invar_store *db, enum invar_run_status st)
{
    struct invar_store_run_list l = {0};
    list_runs(db, NULL, &l);
    size_t n = 0;
    for (size_t i = 0; i < l.count; i++)
        n += l.runs[i].status == st;
    invar_store_run_list_deinit(&l);
    return n;
}

static void integrity_ok(void)
{
    char cmd[512], line[128] = "";
    snprintf(cmd, sizeof cmd, "sqlite3 '%s' 'PRAGMA integrity_check'", db_path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(line, sizeof line, p));
    pclose(p);
    cr_assert_str_eq(line, "ok\n");
}

Test(sweep, a_sweep_killed_with_sigkill_completes_only_the_missing_trials, .timeout = 300)
{
    /* Four trials, one at a time; kill the parent once the first has finished. */
    const char *const args[] = {"sweep", data("tiny.yaml"),        "-j",
                                "1",     "objective.queue=64,128", NULL};
    pid_t pid = invar_start(args);
    /* The parent announces the second trial after forking it: then kill the parent, and wait
     * for the orphaned trial, whose pid the line gives. */
    long orphan = 0;
    for (int i = 0; i < 1200 && !orphan; i++, sleep_ms(100)) {
        slurp(err_path, err_text, sizeof err_text);
        const char *s = strstr(err_text, "[2/4] trial 2: ");
        if (s && strchr(s, '\n'))
            sscanf(strstr(s, "(pid "), "(pid %ld)", &orphan);
    }
    cr_assert_gt(orphan, 0, "%s", err_text);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert_eq(invar_wait(pid), 128 + SIGKILL);
    int gone = 0;
    for (int i = 0; i < 1200 && !gone; i++, sleep_ms(100)) {
        char stat_path[64], stat[256] = "";
        snprintf(stat_path, sizeof stat_path, "/proc/%ld/stat", orphan);
        slurp(stat_path, stat, sizeof stat);
        const char *paren = strrchr(stat, ')');
        gone = !paren || paren[2] == 'Z'; /* exited, reaped or not */
    }
    cr_assert(gone, "trial process %ld still running", orphan);
    struct invar_store *db = open_db();
    cr_assert_eq(count_status(db, INVAR_RUN_RUNNING), 0u);
    invar_store_close(db);
    db = open_db();
    size_t before = count_status(db, INVAR_RUN_FINISHED);
    invar_store_close(db);
    cr_assert_eq(before, 2u, "the first trial and the orphaned second one");

    cr_assert_eq(invar(args), 0, "%s", err_text);
    char want[128];
    snprintf(want, sizeof want, "%zu finished now, %zu finished before", 4 - before, before);
    cr_assert(strstr(err_text, want), "%s", err_text);
    db = open_db();
    struct invar_store_run_list l = {0};
    list_runs(db, "tiny-sweep", &l);
    size_t finished = 0;
    for (size_t i = 0; i < l.count; i++) {
        if (l.runs[i].status != INVAR_RUN_FINISHED)
            continue;
        finished++;
        for (size_t j = 0; j < i; j++)
            cr_assert(l.runs[j].status != INVAR_RUN_FINISHED ||
                          strcmp(l.runs[i].config_hash, l.runs[j].config_hash),
                      "runs %zu and %zu finished the same trial", j, i);
    }
    cr_assert_eq(finished, 4u);
    invar_store_run_list_deinit(&l);
    invar_store_close(db);
    integrity_ok();
}

/* ---- invar report on a database built here ------------------------------------------------ */

struct fake_run {
    const char *sweep, *momentum;
    int64_t seed;
    enum invar_run_status status;
    double knn, linear, loss; /* NaN: not logged */
};

static void add_run(struct invar_store *db, const struct fake_run *f)
{
    struct invar_error err = {{0}};
    char hash[65], config[128];
    snprintf(config, sizeof config, "objective: {momentum: %s}\nseed: %lld\n", f->momentum,
             (long long)f->seed);
    invar_sha256_hex(config, strlen(config), hash);
    int64_t id;
    cr_assert_eq(invar_store_create_run(db,
                                        &(struct invar_store_new_run){.experiment = "abl",
                                                                      .sweep = f->sweep,
                                                                      .config = config,
                                                                      .config_hash = hash,
                                                                      .seed = f->seed},
                                        &id, &err),
                 INVAR_OK, "%s", err.msg);
    char seed[32];
    snprintf(seed, sizeof seed, "%lld", (long long)f->seed);
    /* The m = 0 run poses as another plugin, for grouping by the whole section. */
    struct invar_store_param ps[] = {{"objective.momentum", f->momentum},
                                     {"objective.plugin", strcmp(f->momentum, "0") ? "moco" : "x"},
                                     {"objective.queue", "4096"},
                                     {"seed", seed},
                                     {"sweep.axes", "objective.momentum"}};
    cr_assert_eq(invar_store_log_params(db, id, ps, 5, &err), INVAR_OK, "%s", err.msg);
    /* A loss curve falling to the final loss, one value per epoch. */
    for (int e = 0; e < 3 && !isnan(f->loss); e++)
        cr_assert_eq(invar_store_log_metric(db, id, "loss", e, e, f->loss + 2 - e, &err), INVAR_OK);
    if (!isnan(f->knn))
        cr_assert_eq(invar_store_log_metric(db, id, "knn_top1", 3, 2, f->knn, &err), INVAR_OK);
    if (!isnan(f->linear))
        cr_assert_eq(invar_store_log_metric(db, id, "linear_top1", 3, 2, f->linear, &err),
                     INVAR_OK);
    cr_assert_eq(invar_store_finish_run(db, id, f->status, 0, NULL, &err), INVAR_OK, "%s", err.msg);
}

/* momentum 0.9: knn {80, 82, 84} -> 82 ± 2, linear {70, 71, 72} -> 71 ± 1, final loss
 * {1, 1.5, 2} -> 1.5 ± 0.5; momentum 0.99: knn {85, 86} -> 85.5 ± sqrt(0.5), loss
 * {0.5, 1} -> 0.75 ± sqrt(0.125), no linear; momentum 0: diverged; a failed 0.99 run and a
 * run of an older sweep that must not count. */
static void build_db(const char *sweep)
{
    struct invar_store *db = open_db();
    const struct fake_run runs[] = {
        {"old", "0.5", 1, INVAR_RUN_FINISHED, 10, 10, 9},
        {sweep, "0.9", 1, INVAR_RUN_FINISHED, 80, 70, 1.0},
        {sweep, "0.9", 2, INVAR_RUN_FINISHED, 82, 71, 1.5},
        {sweep, "0.9", 3, INVAR_RUN_FINISHED, 84, 72, 2.0},
        {sweep, "0.99", 1, INVAR_RUN_FINISHED, 85, NAN, 0.5},
        {sweep, "0.99", 2, INVAR_RUN_FINISHED, 86, NAN, 1.0},
        {sweep, "0.99", 3, INVAR_RUN_FAILED, 99, 99, 0.1},
        {sweep, "0", 1, INVAR_RUN_DIVERGED, NAN, NAN, NAN},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        add_run(db, &runs[i]);
    invar_store_close(db);
}

Test(sweep, report_groups_by_the_swept_key_with_mean_std_and_n)
{
    build_db("abl");
    /* No --sweep: the latest sweep. */
    cr_assert_eq(INVAR("report"), 0, "%s", err_text);
    char l[512];
    cr_assert_str_eq(line_at(out_text, 0, l, sizeof l),
                     "sweep abl: 7 runs in 3 groups; mean ± std (n) over finished runs; * best "
                     "knn_top1");
    cr_assert_str_eq(line_at(out_text, 1, l, sizeof l),
                     "  objective.momentum  knn_top1          linear_top1       loss            "
                     "     other");
    cr_assert_str_eq(line_at(out_text, 2, l, sizeof l),
                     "  0.9                 82.00 ± 2.00 (3)  71.00 ± 1.00 (3)  1.5000 ± 0.5000 "
                     "(3)  ");
    cr_assert_str_eq(line_at(out_text, 3, l, sizeof l),
                     "* 0.99                85.50 ± 0.71 (2)  -                 0.7500 ± 0.3536 "
                     "(2)  1 failed");
    cr_assert_str_eq(line_at(out_text, 4, l, sizeof l),
                     "  0                   -                 -                 -              "
                     "      1 diverged");
    cr_assert_eq(count_lines(out_text), 5u, "%s", out_text);

    /* --metric picks the best row: the highest linear_top1, the lowest loss. */
    cr_assert_eq(INVAR("report", "--sweep", "abl", "--metric", "linear_top1"), 0, "%s", err_text);
    cr_assert_eq(line_at(out_text, 2, l, sizeof l)[0], '*', "%s", out_text);
    cr_assert_eq(INVAR("report", "--sweep", "abl", "--metric", "loss"), 0, "%s", err_text);
    cr_assert_eq(line_at(out_text, 3, l, sizeof l)[0], '*', "%s", out_text);
    /* A key that is the same in every run makes one group. */
    cr_assert_eq(INVAR("report", "--sweep", "abl", "--by", "objective.queue"), 0, "%s", err_text);
    cr_assert(strstr(out_text, "7 runs in 1 groups"), "%s", out_text);
    cr_assert(strstr(out_text, "* 4096"), "%s", out_text);
    /* A section as the key: shown by its plugin, or by its settings where plugins repeat. */
    cr_assert_eq(INVAR("report", "--sweep", "abl", "--by", "objective"), 0, "%s", err_text);
    cr_assert(strstr(line_at(out_text, 2, l, sizeof l),
                     "  momentum=0.9 plugin=moco queue=4096   82.00 ± 2.00 (3)"),
              "%s", out_text);
    cr_assert(strstr(line_at(out_text, 3, l, sizeof l), "* momentum=0.99 plugin=moco queue=4096"),
              "%s", out_text);
    cr_assert(!strncmp(line_at(out_text, 4, l, sizeof l), "  x   ", 6), "%s", out_text);
    cr_assert_eq(INVAR("report", "--sweep", "nope"), 1);
    cr_assert_str_eq(err_text, "invar: report: no runs in sweep `nope`\n");
}

Test(sweep, report_writes_csv)
{
    build_db("abl");
    char csv[400];
    snprintf(csv, sizeof csv, "%s/r.csv", tmp);
    cr_assert_eq(INVAR("report", "--csv", csv), 0, "%s", err_text);
    char text[4096], l[512];
    slurp(csv, text, sizeof text);
    cr_assert_eq(count_lines(text), 4u, "%s", text);
    cr_assert_str_eq(line_at(text, 0, l, sizeof l),
                     "objective.momentum,knn_top1_mean,knn_top1_std,knn_top1_n,linear_top1_mean,"
                     "linear_top1_std,linear_top1_n,loss_mean,loss_std,loss_n,runs,best");
    cr_assert_str_eq(line_at(text, 1, l, sizeof l), "0.9,82,2,3,71,1,3,1.5,0.5,3,3,0");
    cr_assert_str_eq(line_at(text, 3, l, sizeof l), "0,,,0,,,0,,,0,1,0");
    double knn, knn_sd, loss, loss_sd;
    int n_knn, n_lin, n_loss, runs, best;
    cr_assert_eq(sscanf(line_at(text, 2, l, sizeof l), "0.99,%lf,%lf,%d,,,%d,%lf,%lf,%d,%d,%d",
                        &knn, &knn_sd, &n_knn, &n_lin, &loss, &loss_sd, &n_loss, &runs, &best),
                 9, "%s", l);
    cr_assert_float_eq(knn, 85.5, 1e-12);
    cr_assert_float_eq(knn_sd, sqrt(0.5), 1e-12);
    cr_assert_float_eq(loss, 0.75, 1e-12);
    cr_assert_float_eq(loss_sd, sqrt(0.125), 1e-12);
    cr_assert_eq(n_knn, 2);
    cr_assert_eq(n_lin, 0);
    cr_assert_eq(n_loss, 2);
    cr_assert_eq(runs, 3);
    cr_assert_eq(best, 1);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *s = hay; (s = strstr(s, needle)); s++)
        n++;
    return n;
}

static char html_text[1 << 20];

Test(sweep, report_writes_one_html_file_with_inline_svg_and_escaped_text)
{
    build_db("a<b>&\"c");
    char html[400];
    snprintf(html, sizeof html, "%s/r.html", tmp);
    cr_assert_eq(INVAR("report", "--html", html), 0, "%s", err_text);
    slurp(html, html_text, sizeof html_text);
    cr_assert(!strncmp(html_text, "<!DOCTYPE html>", 15));
    /* knn_top1, linear_top1 and loss against the momentum, then the training curves. */
    cr_assert_eq(count_of(html_text, "<svg"), 4u);
    cr_assert_eq(count_of(html_text, "</svg>"), 4u);
    cr_assert_null(strstr(html_text, "<?xml"));
    cr_assert_null(strstr(html_text, "src="));
    cr_assert_null(strstr(html_text, "<link"));
    cr_assert(strstr(html_text, "<title>invar report: a&lt;b&gt;&amp;&quot;c</title>"));
    cr_assert_null(strstr(html_text, "a<b>"));
    cr_assert(strstr(html_text, "85.50 ± 0.71 (2)"));
    cr_assert(strstr(html_text, "<tr class=\"best\"><td>&#9733;</td><td>0.99</td>"));
    /* The plotted means are in the SVG as axis labels and paths; the title names the key. */
    cr_assert(strstr(html_text, "knn_top1 against objective.momentum"));
    cr_assert(strstr(html_text, "training loss per epoch"));
}

Test(sweep, the_html_report_renders_in_headless_chromium, .timeout = 120)
{
    if (system("command -v chromium >/dev/null 2>&1") != 0)
        cr_skip_test("chromium is not installed (tools/setup installs it)");
    build_db("abl");
    char html[400], dom[400], cmd[1400];
    snprintf(html, sizeof html, "%s/r.html", tmp);
    snprintf(dom, sizeof dom, "%s/dom.html", tmp);
    cr_assert_eq(INVAR("report", "--html", html), 0, "%s", err_text);
    snprintf(cmd, sizeof cmd,
             "chromium --headless --no-sandbox --disable-gpu --dump-dom 'file://%s' >'%s' "
             "2>/dev/null",
             html, dom);
    cr_assert_eq(system(cmd), 0);
    slurp(dom, html_text, sizeof html_text);
    /* The parsed document still holds the four plots and the table. */
    cr_assert_eq(count_of(html_text, "<svg"), 4u, "%.2000s", html_text);
    cr_assert(strstr(html_text, "85.50 ± 0.71 (2)"));
}
