/* invar sweep EXP.yaml [-j N] [KEY=V1,V2,...] [KEY=V] [--dry-run] [--name NAME]
 *
 * Expands the experiment's `sweep:` block and the command-line axes into trials
 * (invar/sweep.h), loads and validates every trial's config before anything starts, then runs
 * each trial as its own process, `invar run EXP <overrides> --sweep NAME`, up to N at once.
 *
 * Resuming is by config hash: a trial whose resolved config already has a `finished` run
 * (in any sweep) is skipped, one with a live `running` row of this sweep is left to it. A
 * child that dies without ending its row (a signal, an exit before training) has the row ended
 * here: `killed` with the signal, or `failed` with the exit status; a child that died before
 * creating a row gets one, so every trial that ran leaves a trace.
 *
 * The parent's store handle stays open across fork(): each child only redirects its output
 * and exec's, so it never touches the parent's SQLite state, and opens its own handle. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <invar/config.h>
#include <invar/sweep.h>

#include "cli.h"

enum trial_state {
    TRIAL_PENDING,
    TRIAL_DONE_BEFORE, /* a finished run with this hash exists */
    TRIAL_ELSEWHERE,   /* a live `running` row of this sweep has this hash */
    TRIAL_RUNNING,
    TRIAL_FINISHED,
    TRIAL_DIVERGED,
    TRIAL_FAILED,
};

struct trial {
    const struct invar_sweep_trial *t;
    char *experiment, *canonical, *hash;
    int64_t seed;
    enum trial_state state;
    int64_t run_id;            /* the earlier finished run, or this sweep's */
    enum invar_run_status end; /* how this sweep's run ended */
    pid_t pid;
    double started;
};

struct sweep_args {
    const char *exp, *name;
    int jobs, dry_run;
    const char *axes[CLI_MAX_ARGS];
    size_t n_axes;
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_jobs(const char *v, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 1 || n > 256) {
        cli_error("sweep: -j takes a number of processes from 1 to 256, got `%s`", v);
        return 1;
    }
    *out = (int)n;
    return 0;
}

static int parse_args(struct sweep_args *a, int argc, char **argv)
{
    a->jobs = 1;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-j") || !strcmp(s, "--jobs") || !strcmp(s, "--name")) {
            if (i + 1 == argc) {
                cli_error("sweep: %s needs a value", s);
                return 1;
            }
            if (!strcmp(s, "--name"))
                a->name = argv[++i];
            else if (parse_jobs(argv[++i], &a->jobs))
                return 1;
        } else if (!strncmp(s, "-j", 2) && s[2]) {
            if (parse_jobs(s + 2, &a->jobs))
                return 1;
        } else if (!strncmp(s, "--jobs=", 7)) {
            if (parse_jobs(s + 7, &a->jobs))
                return 1;
        } else if (!strcmp(s, "--dry-run")) {
            a->dry_run = 1;
        } else if (s[0] == '-') {
            cli_error("sweep: unknown option `%s` (see `invar sweep --help`)", s);
            return 1;
        } else if (strchr(s, '=')) {
            if (a->n_axes == CLI_MAX_ARGS) {
                cli_error("sweep: more than %d KEY=VALUE arguments", CLI_MAX_ARGS);
                return 1;
            }
            a->axes[a->n_axes++] = s;
        } else if (!a->exp) {
            a->exp = s;
        } else {
            cli_error("sweep: unexpected argument `%s` (axes are KEY=V1,V2,...)", s);
            return 1;
        }
    }
    if (!a->exp) {
        cli_error("sweep: give an experiment file (see `invar sweep --help`)");
        return 1;
    }
    return 0;
}

static void describe(const struct invar_sweep_trial *t, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t k = 0; k < t->n_overrides && len < n; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", k ? " " : "", t->overrides[k]);
    if (!t->n_overrides)
        snprintf(buf, n, "(no overrides)");
}

/* Every trial's config, resolved before anything runs: a typo fails now, not in hour three. */
static int validate(struct trial *tr, size_t n, const struct sweep_args *a,
                    const struct invar_registry *reg)
{
    for (size_t i = 0; i < n; i++) {
        struct invar_experiment *e;
        struct invar_error err = {{0}};
        if (invar_experiment_load(&e, a->exp, tr[i].t->overrides, tr[i].t->n_overrides, reg,
                                  &err) != INVAR_OK) {
            char d[1024];
            describe(tr[i].t, d, sizeof d);
            cli_error("trial %zu of %zu (%s): %s", i + 1, n, d, err.msg);
            return 1;
        }
        tr[i].experiment = strdup(invar_experiment_name(e));
        tr[i].canonical = strdup(invar_experiment_canonical(e));
        tr[i].hash = strdup(invar_experiment_hash(e));
        tr[i].seed = invar_experiment_seed(e);
        invar_experiment_destroy(e);
        if (!tr[i].experiment || !tr[i].canonical || !tr[i].hash) {
            cli_error("out of memory");
            return 1;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(tr[j].hash, tr[i].hash)) {
                cli_error("trials %zu and %zu resolve to the same config (a repeated value?)",
                          j + 1, i + 1);
                return 1;
            }
    }
    return 0;
}

/* Marks trials already finished (anywhere) or running (in this sweep). */
static int check_done(struct invar_store *db, const char *sweep, struct trial *tr, size_t n)
{
    struct invar_error err = {{0}};
    struct invar_store_run_list runs = {0};
    if (invar_store_list_runs(db, sweep, &runs, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (invar_store_find_finished(db, tr[i].hash, &tr[i].run_id, &err) != INVAR_OK) {
            cli_error("%s", err.msg);
            rc = 1;
        } else if (tr[i].run_id) {
            tr[i].state = TRIAL_DONE_BEFORE;
        } else {
            /* The store marked dead `running` rows `killed` when it opened: what is left
             * runs now (a child of an earlier, killed sweep, or another host). */
            for (size_t r = 0; r < runs.count; r++)
                if (runs.runs[r].status == INVAR_RUN_RUNNING &&
                    !strcmp(runs.runs[r].config_hash, tr[i].hash)) {
                    tr[i].state = TRIAL_ELSEWHERE;
                    tr[i].run_id = runs.runs[r].id;
                }
        }
    }
    invar_store_run_list_deinit(&runs);
    return rc;
}

static const char *state_name(enum trial_state s)
{
    static const char *const names[] = {"to run",   "finished", "running", "running",
                                        "finished", "diverged", "failed"};
    return names[s];
}

static void dry_run(const struct trial *tr, size_t n, const char *name)
{
    size_t done = 0, elsewhere = 0;
    for (size_t i = 0; i < n; i++) {
        char d[1024], run[32] = "";
        describe(tr[i].t, d, sizeof d);
        if (tr[i].run_id)
            snprintf(run, sizeof run, "run %lld", (long long)tr[i].run_id);
        printf("%4zu  %-8s  %.12s  %-9s %s\n", i + 1, state_name(tr[i].state), tr[i].hash, run, d);
        done += tr[i].state == TRIAL_DONE_BEFORE;
        elsewhere += tr[i].state == TRIAL_ELSEWHERE;
    }
    printf("sweep %s: %zu trials, %zu finished, %zu running, %zu to run\n", name, n, done,
           elsewhere, n - done - elsewhere);
}

/* "<dir of the database>/sweeps/<name>/", created; the name made safe for a path. */
static int log_dir(const struct cli_globals *g, const char *name, char *out, size_t n)
{
    char copy[PATH_MAX], safe[256];
    snprintf(copy, sizeof copy, "%s", g->db);
    size_t k = 0;
    for (const char *s = name; *s && k + 1 < sizeof safe; s++)
        safe[k++] = *s == '/' || (s == name && *s == '.') ? '_' : *s;
    safe[k] = 0;
    snprintf(out, n, "%s/sweeps", dirname(copy));
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        cli_error("%s: %s", out, strerror(errno));
        return 1;
    }
    size_t len = strlen(out);
    snprintf(out + len, n - len, "/%s", safe);
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        cli_error("%s: %s", out, strerror(errno));
        return 1;
    }
    return 0;
}

struct launcher {
    char self[PATH_MAX];
    const struct cli_globals *g;
    const struct sweep_args *a;
    const char *name;
    char axes[4096]; /* "k1,k2": what the report groups by */
    char logs[PATH_MAX];
};

/* fork + exec of `invar run`; the child does nothing between them but redirect its output. */
static int start_trial(const struct launcher *l, struct trial *tr, size_t i)
{
    const char *argv[CLI_MAX_ARGS + 16];
    size_t k = 0;
    argv[k++] = l->self;
    argv[k++] = "--db";
    argv[k++] = l->g->db;
    if (l->g->plugin_path) {
        argv[k++] = "--plugin-path";
        argv[k++] = l->g->plugin_path;
    }
    argv[k++] = "run";
    argv[k++] = l->a->exp;
    for (size_t j = 0; j < tr->t->n_overrides && k < CLI_MAX_ARGS; j++)
        argv[k++] = tr->t->overrides[j];
    argv[k++] = "--sweep";
    argv[k++] = l->name;
    if (l->axes[0]) {
        argv[k++] = "--sweep-axes";
        argv[k++] = l->axes;
    }
    argv[k] = NULL;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/trial-%zu.log", l->logs, i + 1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("fork: %s", strerror(errno));
        close(fd);
        return 1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull > 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        dup2(fd, 1);
        dup2(fd, 2);
        execv(l->self, (char *const *)argv);
        static const char msg[] = "invar: sweep: exec of invar failed\n";
        if (write(2, msg, sizeof msg - 1) < 0)
            _exit(127);
        _exit(127);
    }
    close(fd);
    tr->pid = pid;
    tr->state = TRIAL_RUNNING;
    tr->started = now_s();
    return 0;
}

/* The newest row of this sweep that pid created on this host. */
static int64_t row_of_pid(struct invar_store *db, const char *sweep, pid_t pid,
                          struct invar_store_run *out)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    struct invar_error err = {{0}};
    struct invar_store_run_list runs = {0};
    int64_t id = 0;
    if (invar_store_list_runs(db, sweep, &runs, &err) != INVAR_OK) {
        cli_warn("%s", err.msg);
        return 0;
    }
    for (size_t r = runs.count; r-- > 0;)
        if (runs.runs[r].pid == pid && runs.runs[r].host && !strcmp(runs.runs[r].host, host)) {
            id = runs.runs[r].id;
            *out = runs.runs[r];
            memset(&runs.runs[r], 0, sizeof runs.runs[r]);
            break;
        }
    invar_store_run_list_deinit(&runs);
    return id;
}

/* After the child exits: make sure its row tells how the trial ended. */
static void settle(struct invar_store *db, const char *sweep, struct trial *tr, int status)
{
    struct invar_store_run row = {0};
    struct invar_error err = {{0}};
    int64_t id = row_of_pid(db, sweep, tr->pid, &row);
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    char why[160];
    if (sig)
        snprintf(why, sizeof why, "the trial's process died of signal %d (%s)", sig,
                 strsignal(sig));
    else
        snprintf(why, sizeof why, "the trial's process exited with status %d",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    enum invar_run_status end = sig ? INVAR_RUN_KILLED : INVAR_RUN_FAILED;
    if (!id) {
        /* Died before its row existed: record the trial so the sweep's table shows it. */
        struct invar_store_new_run nr = {.experiment = tr->experiment,
                                         .sweep = sweep,
                                         .config = tr->canonical,
                                         .config_hash = tr->hash,
                                         .seed = tr->seed,
                                         .command = "invar sweep"};
        if (invar_store_create_run(db, &nr, &id, &err) != INVAR_OK ||
            invar_store_finish_run(db, id, end, sig, why, &err) != INVAR_OK)
            cli_warn("%s", err.msg);
        row.status = end;
    } else if (row.status == INVAR_RUN_RUNNING) {
        if (invar_store_finish_run(db, id, end, sig, why, &err) != INVAR_OK)
            cli_warn("%s", err.msg);
        row.status = end;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && row.status != INVAR_RUN_FINISHED) {
        row.status = INVAR_RUN_FAILED; /* exit 0 without finishing: not a result */
    }
    tr->run_id = id;
    tr->end = row.status;
    tr->state = row.status == INVAR_RUN_FINISHED   ? TRIAL_FINISHED
                : row.status == INVAR_RUN_DIVERGED ? TRIAL_DIVERGED
                                                   : TRIAL_FAILED;
    if (tr->state == TRIAL_FAILED && !sig && row.error)
        snprintf(why, sizeof why, "%s %s", invar_run_status_str(row.status), row.error);
    else if (tr->state == TRIAL_FAILED && !sig)
        snprintf(why + strlen(why), sizeof why - strlen(why), " (%s)",
                 invar_run_status_str(row.status));
    if (tr->state == TRIAL_FAILED)
        cli_error("run %lld: %s", (long long)id, why);
    invar_store_run_deinit(&row);
}

static int run_trials(struct invar_store *db, const struct launcher *l, struct trial *tr, size_t n)
{
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal; /* no SA_RESTART: waitpid returns to look at the flag */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    size_t next = 0, active = 0, todo = 0, seq = 0;
    for (size_t i = 0; i < n; i++)
        todo += tr[i].state == TRIAL_PENDING;
    int forwarded = 0, rc = 0;
    double t0 = now_s();
    for (;;) {
        while (!stop_signal && active < (size_t)l->a->jobs && next < n) {
            struct trial *t = &tr[next++];
            if (t->state != TRIAL_PENDING)
                continue;
            char d[1024];
            describe(t->t, d, sizeof d);
            if (start_trial(l, t, next - 1)) {
                rc = 1;
                stop_signal = SIGTERM;
                break;
            }
            active++;
            fprintf(stderr, "[%zu/%zu] trial %zu: %s (pid %ld)\n", ++seq, todo, next, d,
                    (long)t->pid);
        }
        if (!active)
            break;
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno != EINTR)
                break;
            if (stop_signal && !forwarded) {
                /* The children record themselves `killed` and stop; we wait for them. */
                for (size_t i = 0; i < n; i++)
                    if (tr[i].state == TRIAL_RUNNING)
                        kill(tr[i].pid, stop_signal);
                forwarded = 1;
            }
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (tr[i].state == TRIAL_RUNNING && tr[i].pid == pid) {
                active--;
                settle(db, l->name, &tr[i], status);
                fprintf(stderr, "trial %zu: run %lld %s in %.0f s\n", i + 1,
                        (long long)tr[i].run_id, invar_run_status_str(tr[i].end),
                        now_s() - tr[i].started);
                break;
            }
    }
    size_t count[TRIAL_FAILED + 1] = {0};
    for (size_t i = 0; i < n; i++)
        count[tr[i].state]++;
    fprintf(stderr,
            "sweep %s: %zu trials in %.0f s: %zu finished now, %zu finished before, %zu "
            "diverged, %zu failed, %zu running elsewhere, %zu not started\n",
            l->name, n, now_s() - t0, count[TRIAL_FINISHED], count[TRIAL_DONE_BEFORE],
            count[TRIAL_DIVERGED], count[TRIAL_FAILED], count[TRIAL_ELSEWHERE],
            count[TRIAL_PENDING]);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (stop_signal)
        return 128 + stop_signal;
    return rc || count[TRIAL_FAILED] ? 1 : 0;
}

int cmd_sweep(const struct cli_globals *g, int argc, char **argv)
{
    struct sweep_args a = {0};
    if (parse_args(&a, argc, argv))
        return 2;
    struct invar_registry *reg = cli_registry_open(g, 1);
    if (!reg)
        return 1;
    struct invar_experiment *base = NULL;
    struct invar_sweep_plan *plan = NULL;
    struct invar_store *db = NULL;
    struct trial *tr = NULL;
    size_t n = 0;
    int rc = 1;
    struct invar_error err = {{0}};
    static struct launcher l;
    if (invar_experiment_load(&base, a.exp, NULL, 0, reg, &err) != INVAR_OK ||
        invar_sweep_plan_create(&plan, invar_experiment_sweep(base), a.axes, a.n_axes, &err) !=
            INVAR_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    n = invar_sweep_plan_count(plan);
    tr = calloc(n, sizeof *tr);
    if (!tr) {
        cli_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        tr[i].t = invar_sweep_plan_trial(plan, i);
    if (validate(tr, n, &a, reg))
        goto out;
    l.g = g;
    l.a = &a;
    l.name = a.name ? a.name : invar_experiment_name(base);
    for (size_t i = 0, len = 0; i < invar_sweep_plan_n_axes(plan) && len < sizeof l.axes; i++)
        len += (size_t)snprintf(l.axes + len, sizeof l.axes - len, "%s%s", i ? "," : "",
                                invar_sweep_plan_axis(plan, i));
    if (!(db = cli_store_open(g)) || check_done(db, l.name, tr, n))
        goto out;
    if (a.dry_run) {
        dry_run(tr, n, l.name);
        rc = 0;
        goto out;
    }
    ssize_t len = readlink("/proc/self/exe", l.self, sizeof l.self - 1);
    if (len <= 0) {
        cli_error("/proc/self/exe: %s", strerror(errno));
        goto out;
    }
    l.self[len] = 0;
    if (log_dir(g, l.name, l.logs, sizeof l.logs))
        goto out;
    fprintf(stderr, "sweep %s: %zu trials, logs in %s/\n", l.name, n, l.logs);
    rc = run_trials(db, &l, tr, n);
out:
    for (size_t i = 0; tr && i < n; i++) {
        free(tr[i].experiment);
        free(tr[i].canonical);
        free(tr[i].hash);
    }
    free(tr);
    invar_store_close(db);
    invar_sweep_plan_destroy(plan);
    invar_experiment_destroy(base);
    invar_registry_destroy(reg);
    return rc;
}
