/* The `invar` command, run as a separate process: exit codes, messages on stderr, listings on
 * stdout, and what a run leaves in the results database (read back through the store API). */
#define _XOPEN_SOURCE 700 // nftw
#include <criterion/criterion.h>
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

#include "invar/kmeans.h"
#include "invar/store.h"
#include "invar_process.h"

/* ---- running the binary ------------------------------------------------------------------- */

static const char *fixture(const char *name)
{
    static char path[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(path[slot], sizeof path[slot], "%s/cli/%s", getenv("INVAR_TEST_DATA"), name);
    return path[slot];
}

/* Every message is one line starting "invar: ". */
static void assert_one_line_message(void)
{
    cr_assert(strncmp(err_text, "invar: ", 7) == 0, "stderr: %s", err_text);
    cr_assert_eq(strchr(err_text, '\n'), err_text + strlen(err_text) - 1, "stderr: %s", err_text);
}

static const char *param(const struct invar_store_param_list *l, const char *key)
{
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->items[i].key, key))
            return l->items[i].value;
    return NULL;
}

static double final_metric(const struct invar_store_metric_list *l, const char *key)
{
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->items[i].key, key))
            return l->items[i].value;
    return NAN;
}

TestSuite(cli, .init = proc_setup, .fini = proc_teardown);

/* ---- global options and dispatch ---------------------------------------------------------- */

Test(cli, version)
{
    cr_assert_eq(INVAR("--version"), 0);
    char want[64];
    snprintf(want, sizeof want, "invar %s\n", invar_version());
    cr_assert_str_eq(out_text, want);
}

Test(cli, help_lists_commands_and_every_command_has_help)
{
    cr_assert_eq(INVAR("--help"), 0);
    static const char *const cmds[] = {"run", "eval", "embed", "preview", "plugins", "new"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char line[32];
        snprintf(line, sizeof line, "\n  %s ", cmds[i]);
        cr_assert_not_null(strstr(out_text, line), "no %s in: %s", cmds[i], out_text);
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        cr_assert_eq(INVAR(cmds[i], "--help"), 0, "%s --help: %s", cmds[i], err_text);
        char want[32];
        snprintf(want, sizeof want, "usage: invar %s", cmds[i]);
        cr_assert(strncmp(out_text, want, strlen(want)) == 0, "%s", out_text);
    }
}

Test(cli, unknown_command_suggests_the_nearest)
{
    cr_assert_eq(INVAR("rnu"), 2);
    cr_assert_str_eq(err_text, "invar: unknown command `rnu`, did you mean `run`? "
                               "(see `invar --help`)\n");
    cr_assert_eq(INVAR("frobnicate"), 2);
    cr_assert_str_eq(err_text, "invar: unknown command `frobnicate` (see `invar --help`)\n");
    cr_assert_eq(out_text[0], 0);
    cr_assert_eq(INVAR("plugins", "descrbe", "moco"), 2);
    cr_assert_not_null(strstr(err_text, "did you mean `describe`?"), "%s", err_text);
}

/* ---- plugins ------------------------------------------------------------------------------ */

Test(cli, plugins_lists_the_build_trees_plugins)
{
    cr_assert_eq(INVAR("plugins"), 0, "%s", err_text);
    cr_assert(strncmp(out_text, "kind", 4) == 0);
    static const char *const want[][2] = {{"dataset", "idx"},    {"augment", "hflip"},
                                          {"encoder", "mlp"},    {"encoder", "convnet"},
                                          {"objective", "moco"}, {"objective", "instdisc"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char row[128];
        snprintf(row, sizeof row, "\n%-10s %-16s 1.0.0", want[i][0], want[i][1]);
        cr_assert_not_null(strstr(out_text, row), "no row `%s` in:\n%s", row, out_text);
        snprintf(row, sizeof row, "/%s.so\n", want[i][1]);
        cr_assert_not_null(strstr(out_text, row), "no file %s in:\n%s", row, out_text);
    }
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "%s -> %s", from, to);
    char buf[1 << 14];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

Test(cli, plugins_warns_about_refusals_and_marks_shadowed_plugins)
{
    /* --plugin-path comes first: its hflip shadows the build tree's, and a file that is no
     * shared object is refused with a warning naming it while everything else still loads. */
    char dir[400], path[500], from[1024];
    snprintf(dir, sizeof dir, "%s/mine", tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/hflip.so", dir);
    snprintf(from, sizeof from, "%s/plugins/augment/hflip.so", getenv("INVAR_BUILD_ROOT"));
    copy_file(from, path);
    snprintf(path, sizeof path, "%s/broken.so", dir);
    FILE *f = fopen(path, "w");
    fputs("not an ELF file\n", f);
    fclose(f);
    cr_assert_eq(INVAR("--plugin-path", dir, "plugins"), 0, "%s", err_text);
    char want[2048];
    cr_assert(strncmp(err_text, "invar: warning: ", 16) == 0, "%s", err_text);
    cr_assert_not_null(strstr(err_text, path), "%s", err_text);
    cr_assert_eq(strchr(err_text, '\n'), err_text + strlen(err_text) - 1, "%s", err_text);
    snprintf(want, sizeof want, "hflip            1.0.0     %s/hflip.so\n", dir);
    cr_assert_not_null(strstr(out_text, want), "%s", out_text);
    snprintf(want, sizeof want, "%s (shadowed by %s/hflip.so)\n", from, dir);
    cr_assert_not_null(strstr(out_text, want), "%s", out_text);
    cr_assert_not_null(strstr(out_text, "objective  moco"), "%s", out_text);
}

Test(cli, describe_prints_every_parameter)
{
    cr_assert_eq(INVAR("plugins", "describe", "moco"), 0, "%s", err_text);
    cr_assert_not_null(strstr(out_text, "objective moco 1.0.0"), "%s", out_text);
    static const char *const rows[][3] = {
        {"queue", "int", "4096"}, {"momentum", "float", "0.999"}, {"temperature", "float", "0.07"}};
    for (size_t i = 0; i < 3; i++) {
        char key[64];
        snprintf(key, sizeof key, "\n%s ", rows[i][0]);
        const char *at = strstr(out_text, key);
        cr_assert_not_null(at, "%s missing", rows[i][0]);
        at++;
        const char *eol = strchr(at, '\n');
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(eol - at), at);
        cr_assert_not_null(strstr(line, rows[i][1]), "%s", line);
        cr_assert_not_null(strstr(line, rows[i][2]), "%s", line);
    }
    cr_assert_eq(INVAR("plugins", "describe", "mocco"), 1);
    cr_assert_str_eq(err_text, "invar: no plugin `mocco`, did you mean `moco`?\n");
}

/* ---- run ---------------------------------------------------------------------------------- */

Test(cli, bad_experiment_names_file_line_column)
{
    const char *bad = fixture("bad.yaml");
    cr_assert_eq(INVAR("run", bad), 1);
    assert_one_line_message();
    char want[1200];
    snprintf(want, sizeof want, "invar: %s:3:20: train.batch_sise: unknown key", bad);
    cr_assert(strncmp(err_text, want, strlen(want)) == 0, "%s", err_text);
    cr_assert_not_null(strstr(err_text, "did you mean `batch_size`?"), "%s", err_text);
    cr_assert_neq(access(db_path, F_OK), 0, "a bad experiment created %s", db_path);
    /* A bad override names the command line instead. */
    cr_assert_eq(INVAR("run", fixture("tiny.yaml"), "train.epochs=zero"), 1);
    assert_one_line_message();
    cr_assert_not_null(strstr(err_text, "train.epochs"), "%s", err_text);
}

static int64_t run_id_from_stdout(void)
{
    char *end;
    long long id = strtoll(out_text, &end, 10);
    cr_assert(id > 0 && *end == '\n' && end[1] == 0, "stdout: `%s`", out_text);
    return id;
}

/* The npy header as written by `embed`: magic, version 1.0, dict, 64-byte alignment. */
static void check_npy(const char *path, const char *descr, const char *shape, size_t elems)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    unsigned char pre[10];
    cr_assert_eq(fread(pre, 1, 10, f), 10u);
    cr_assert(memcmp(pre, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    cr_assert_eq((10 + hlen) % 64, 0u);
    char head[512] = {0};
    cr_assert_eq(fread(head, 1, hlen, f), hlen);
    char want[256];
    snprintf(want, sizeof want, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
             shape);
    cr_assert(strncmp(head, want, strlen(want)) == 0, "%s", head);
    cr_assert_eq(head[hlen - 1], '\n');
    fseek(f, 0, SEEK_END);
    cr_assert_eq((size_t)ftell(f), 10 + hlen + 4 * elems);
    fclose(f);
}

Test(cli, tiny_run_logs_params_and_metrics_then_eval_and_embed_reuse_it, .timeout = 300)
{
    cr_assert_eq(INVAR("run", fixture("tiny.yaml"), "objective.momentum=0.9"), 0, "%s", err_text);
    int64_t id = run_id_from_stdout();
    cr_assert_not_null(strstr(err_text, "finished: knn top-1"), "%s", err_text);

    struct invar_store *db;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_store_open(&db, db_path, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_run run = {0};
    cr_assert_eq(invar_store_get_run(db, id, &run, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(run.status, INVAR_RUN_FINISHED, "%s", run.error ? run.error : "");
    cr_assert_str_eq(run.experiment, "tiny");
    cr_assert_eq(run.seed, 1);
    cr_assert_eq(strlen(run.config_hash), 64u);
    cr_assert_not_null(strstr(run.command, "objective.momentum=0.9"));
    cr_assert_not_null(run.checkpoint);
    cr_assert_eq(access(run.checkpoint, R_OK), 0, "%s", run.checkpoint);

    struct invar_store_param_list ps = {0};
    cr_assert_eq(invar_store_read_params(db, id, &ps, &err), INVAR_OK, "%s", err.msg);
    cr_assert_str_eq(param(&ps, "objective.momentum"), "0.9"); /* the override */
    cr_assert_str_eq(param(&ps, "objective.queue"), "256");
    cr_assert_str_eq(param(&ps, "data.limit"), "512");
    cr_assert_str_eq(param(&ps, "encoder.plugin"), "mlp");
    cr_assert_str_eq(param(&ps, "eval.knn.k"), "20");
    cr_assert_str_eq(param(&ps, "eval.knn.t"), "0.1");
    cr_assert_not_null(param(&ps, "eval.features"));
    invar_store_param_list_deinit(&ps);

    struct invar_store_metric_list ms = {0};
    cr_assert_eq(invar_store_read_final_metrics(db, id, &ms, &err), INVAR_OK, "%s", err.msg);
    double loss = final_metric(&ms, "loss"), knn = final_metric(&ms, "knn_top1");
    double knn5 = final_metric(&ms, "knn_top5"), lin = final_metric(&ms, "linear_top1");
    /* MoCo's loss starts near log(1 + K) = log(257) = 5.55 and falls; kNN on 512 training
     * images beats chance (10 %) by far; top-5 is at least top-1. */
    cr_assert(isfinite(loss) && loss > 0 && loss < log(257.0) + 0.5, "loss %g", loss);
    cr_assert(knn > 30 && knn <= 100, "knn %g", knn);
    cr_assert(knn5 >= knn && knn5 <= 100, "knn5 %g", knn5);
    cr_assert(lin > 10 && lin <= 100, "linear %g", lin);
    cr_assert(isfinite(final_metric(&ms, "img_per_s")));
    cr_assert(isfinite(final_metric(&ms, "lr")));
    invar_store_metric_list_deinit(&ms);

    /* eval restores the checkpoint's encoder: the same protocol gives the same numbers. */
    char ref[32];
    snprintf(ref, sizeof ref, "%lld", (long long)id);
    cr_assert_eq(INVAR("eval", ref, "--knn"), 0, "%s", err_text);
    char want[128];
    snprintf(want, sizeof want, "knn_top1 %.2f knn_top5 %.2f\n", knn, knn5);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in `%s`", want, out_text);

    /* embed: the whole test split, 32 features (the mlp's dim), labels beside it. */
    char npy[400], labels[400];
    snprintf(npy, sizeof npy, "%s/emb.npy", tmp);
    snprintf(labels, sizeof labels, "%s/emb.labels.npy", tmp);
    cr_assert_eq(INVAR("embed", "latest", "--out", npy), 0, "%s", err_text);
    check_npy(npy, "<f4", "(10000, 32)", 10000 * 32);
    check_npy(labels, "<i4", "(10000,)", 10000);
    FILE *f = fopen(labels, "rb");
    fseek(f, -40000, SEEK_END);
    static int32_t y[10000];
    cr_assert_eq(fread(y, 4, 10000, f), 10000u);
    fclose(f);
    int counts[10] = {0};
    for (int i = 0; i < 10000; i++) {
        cr_assert(y[i] >= 0 && y[i] < 10);
        counts[y[i]]++;
    }
    for (int c = 0; c < 10; c++) /* Fashion-MNIST's test split is balanced */
        cr_assert_eq(counts[c], 1000);
    f = fopen(npy, "rb");
    fseek(f, -40000 * 32, SEEK_END);
    static float x[10000 * 32];
    cr_assert_eq(fread(x, 4, 10000 * 32, f), 10000u * 32);
    fclose(f);
    double norm = 0;
    for (int i = 0; i < 10000 * 32; i++) {
        cr_assert(isfinite(x[i]));
        norm += (double)x[i] * x[i];
    }
    cr_assert(norm > 0);

    invar_store_run_deinit(&run);
    invar_store_close(db);
}

/* Polls the database (every 20 ms, up to a minute) until the latest run has logged at least
 * want epoch losses; returns how many it has, and its id in *id. */
static size_t wait_for_epochs(size_t want, int64_t *id, struct invar_error *err)
{
    size_t logged = 0;
    for (int tries = 0; tries < 3000 && logged < want; tries++) {
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
        struct invar_store *db;
        if (invar_store_open(&db, db_path, err) != INVAR_OK)
            continue;
        struct invar_store_metric_list ms = {0};
        if (invar_store_latest_run(db, id, err) == INVAR_OK &&
            invar_store_read_metrics(db, *id, "loss", &ms, err) == INVAR_OK)
            logged = ms.count;
        invar_store_metric_list_deinit(&ms);
        invar_store_close(db);
    }
    return logged;
}

Test(cli, sigterm_marks_the_run_killed_and_keeps_its_metrics, .timeout = 300)
{
    pid_t pid = invar_start((const char *const[]){"run", fixture("tiny.yaml"), "train.epochs=200",
                                                  "data.limit=2048", NULL});
    /* Wait until the run has logged its first epoch, then interrupt it. */
    struct invar_error err = {{0}};
    int64_t id = 0;
    size_t logged = wait_for_epochs(1, &id, &err);
    cr_assert(logged > 0, "no epoch was logged: %s", err.msg);
    kill(pid, SIGTERM);
    cr_assert_eq(invar_wait(pid), 128 + SIGTERM, "%s", err_text);
    cr_assert_not_null(strstr(err_text, "killed by signal 15"), "%s", err_text);

    struct invar_store *db;
    cr_assert_eq(invar_store_open(&db, db_path, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_run run = {0};
    cr_assert_eq(invar_store_get_run(db, id, &run, &err), INVAR_OK);
    cr_assert_eq(run.status, INVAR_RUN_KILLED);
    cr_assert_eq(run.signal, SIGTERM);
    cr_assert_not_null(run.finished_at);
    struct invar_store_metric_list ms = {0};
    cr_assert_eq(invar_store_read_metrics(db, id, "loss", &ms, &err), INVAR_OK);
    cr_assert_geq(ms.count, logged);
    cr_assert_lt(ms.count, 200u);
    invar_store_metric_list_deinit(&ms);
    invar_store_run_deinit(&run);
    invar_store_close(db);
}

Test(cli, resume_continues_a_killed_run_to_the_end, .timeout = 300)
{
    pid_t pid = invar_start((const char *const[]){"run", fixture("tiny.yaml"), "train.epochs=30",
                                                  "data.limit=1024", "train.checkpoint_every=1",
                                                  "eval.linear.epochs=0", NULL});
    struct invar_error err = {{0}};
    int64_t id = 0;
    cr_assert_geq(wait_for_epochs(2, &id, &err), 2u, "two epochs were not logged: %s", err.msg);
    kill(pid, SIGINT);
    cr_assert_eq(invar_wait(pid), 128 + SIGINT, "%s", err_text);

    char ref[32];
    snprintf(ref, sizeof ref, "%lld", (long long)id);
    cr_assert_eq(INVAR("run", "--resume", ref), 0, "%s", err_text);
    cr_assert_eq(run_id_from_stdout(), id);
    struct invar_store *db;
    cr_assert_eq(invar_store_open(&db, db_path, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_run run = {0};
    cr_assert_eq(invar_store_get_run(db, id, &run, &err), INVAR_OK);
    cr_assert_eq(run.status, INVAR_RUN_FINISHED, "%s", run.error ? run.error : "");
    cr_assert_eq(run.signal, 0);
    /* One loss per epoch, each epoch exactly once: the resumed part starts where the last
     * checkpoint left off, and the interrupted epoch was never logged. */
    struct invar_store_metric_list ms = {0};
    cr_assert_eq(invar_store_read_metrics(db, id, "loss", &ms, &err), INVAR_OK);
    cr_assert_eq(ms.count, 30u);
    for (size_t i = 0; i < ms.count; i++)
        cr_assert_eq(ms.items[i].epoch, (int64_t)i);
    invar_store_metric_list_deinit(&ms);
    cr_assert_eq(invar_store_read_metrics(db, id, "knn_top1", &ms, &err), INVAR_OK);
    cr_assert_eq(ms.count, 1u);
    invar_store_metric_list_deinit(&ms);
    invar_store_run_deinit(&run);
    invar_store_close(db);
    /* A finished run cannot be resumed. */
    cr_assert_eq(INVAR("run", "--resume", ref), 1);
    cr_assert_not_null(strstr(err_text, "not killed or failed"), "%s", err_text);
}

/* ---- preview and new ---------------------------------------------------------------------- */

Test(cli, preview_writes_a_png_grid)
{
    char png[400];
    snprintf(png, sizeof png, "%s/grid.png", tmp);
    cr_assert_eq(INVAR("preview", fixture("tiny.yaml"), "--out", png, "-n", "3"), 0, "%s",
                 err_text);
    FILE *f = fopen(png, "rb");
    cr_assert_not_null(f);
    unsigned char h[24];
    cr_assert_eq(fread(h, 1, 24, f), 24u);
    fclose(f);
    cr_assert(memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0);
    uint32_t w = (uint32_t)h[16] << 24 | h[17] << 16 | h[18] << 8 | h[19];
    uint32_t ht = (uint32_t)h[20] << 24 | h[21] << 16 | h[22] << 8 | h[23];
    /* 28x28 cells (padded crops keep the size): original + 2 views, 3 rows, 1-px gaps. */
    cr_assert_eq(w, 3 * 28 + 4);
    cr_assert_eq(ht, 3 * 28 + 4);
}

Test(cli, new_scaffolds_source_build_and_test)
{
    char dir[400], path[500], text[1 << 15];
    snprintf(dir, sizeof dir, "%s/brighten", tmp);
    cr_assert_eq(INVAR("new", "augment", "brighten", "--dir", dir), 0, "%s", err_text);
    snprintf(path, sizeof path, "%s/brighten.c", dir);
    slurp(path, text, sizeof text);
    cr_assert_not_null(strstr(text, "INVAR_PLUGIN_DEFINE(invar_augment, \"brighten\""));
    cr_assert_null(strstr(text, "@NAME@"));
    snprintf(path, sizeof path, "%s/meson.build", dir);
    slurp(path, text, sizeof text);
    cr_assert_not_null(strstr(text, "dependency('invar')"));
    cr_assert_not_null(strstr(text, "get_variable(pkgconfig : 'pluginsdir')"));
    snprintf(path, sizeof path, "%s/test_brighten.c", dir);
    slurp(path, text, sizeof text);
    cr_assert_not_null(strstr(text, "#include \"brighten.c\""));
    /* Never overwrites, and refuses bad kinds and names. */
    cr_assert_eq(INVAR("new", "augment", "brighten", "--dir", dir), 1);
    cr_assert_eq(INVAR("new", "augmentation", "x"), 2);
    cr_assert_eq(INVAR("new", "encoder", "Bad-Name"), 2);
}

/* ---- eval --cluster ----------------------------------------------------------------------- */

/* A tiny run on the synthetic dataset: 4 classes, a balanced test split of 256 samples
 * (sample i has label i mod 4), so clustering scores can be worked out by hand. */
static int64_t train_synthetic_run(char *ref, size_t n)
{
    cr_assert_eq(INVAR("run", fixture("tiny.yaml"), "data.plugin=synthetic", "data.classes=4",
                       "data.train_count=512", "data.test_count=256", "eval.linear.epochs=0"),
                 0, "%s", err_text);
    int64_t id = run_id_from_stdout();
    snprintf(ref, n, "%lld", (long long)id);
    return id;
}

/* The numbers after "cluster_acc " and "cluster_nmi " on stdout, as printed. */
static void printed_cluster(char *acc, char *nmi)
{
    const char *a = strstr(out_text, " cluster_acc "), *m = strstr(out_text, " cluster_nmi ");
    cr_assert(a && m, "stdout: %s", out_text);
    cr_assert_eq(sscanf(a, " cluster_acc %31s", acc), 1);
    cr_assert_eq(sscanf(m, " cluster_nmi %31s", nmi), 1);
}

static struct invar_store_metric_list metric_series(int64_t id, const char *key)
{
    struct invar_store *db;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_store_open(&db, db_path, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_metric_list ms = {0};
    cr_assert_eq(invar_store_read_metrics(db, id, key, &ms, &err), INVAR_OK, "%s", err.msg);
    invar_store_close(db);
    return ms;
}

/* The latest value logged for key (the run's final evaluation, or a later eval's). */
static double last_value(int64_t id, const char *key)
{
    struct invar_store_metric_list ms = metric_series(id, key);
    cr_assert(ms.count > 0, "no %s", key);
    double v = ms.items[ms.count - 1].value;
    invar_store_metric_list_deinit(&ms);
    return v;
}

static const char *stored_param(int64_t id, const char *key, char *out, size_t n)
{
    struct invar_store *db;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_store_open(&db, db_path, &err), INVAR_OK, "%s", err.msg);
    struct invar_store_param_list ps = {0};
    cr_assert_eq(invar_store_read_params(db, id, &ps, &err), INVAR_OK, "%s", err.msg);
    const char *v = param(&ps, key);
    snprintf(out, n, "%s", v ? v : "(none)");
    invar_store_param_list_deinit(&ps);
    invar_store_close(db);
    return out;
}

/* A run of convnet.yaml (backbone 32 features, head 16); feats is its eval.knn.features. */
static int64_t train_convnet_run(const char *feats, char *ref, size_t n)
{
    char kf[64];
    snprintf(kf, sizeof kf, "eval.knn.features=%s", feats);
    cr_assert_eq(INVAR("run", fixture("convnet.yaml"), kf), 0, "%s", err_text);
    int64_t id = run_id_from_stdout();
    snprintf(ref, n, "%lld", (long long)id);
    return id;
}

/* --features overrides what kNN classifies, and the params follow; the figure is the one a run
 * configured with those features computes itself (training does not depend on the choice). */
Test(cli, eval_features_classify_the_backbone_or_the_head, .timeout = 300)
{
    char head_ref[32], bb_ref[32], v[64];
    int64_t head_id = train_convnet_run("head", head_ref, sizeof head_ref);
    int64_t bb_id = train_convnet_run("backbone", bb_ref, sizeof bb_ref);
    const double knn_head = last_value(head_id, "knn_top1"), knn_bb = last_value(bb_id, "knn_top1");
    cr_assert_str_eq(stored_param(head_id, "eval.knn.features", v, sizeof v), "head");

    cr_assert_eq(INVAR("eval", head_ref, "--knn", "--features", "backbone"), 0, "%s", err_text);
    char want[64];
    snprintf(want, sizeof want, " knn_top1 %.2f ", knn_bb);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in `%s`", want, out_text);
    cr_assert_eq(last_value(head_id, "knn_top1"), knn_bb, "stored %g, the backbone run %g",
                 last_value(head_id, "knn_top1"), knn_bb);
    cr_assert_str_eq(stored_param(head_id, "eval.knn.features", v, sizeof v), "backbone");
    cr_assert_eq(INVAR("eval", bb_ref, "--knn", "--features", "head"), 0, "%s", err_text);
    snprintf(want, sizeof want, " knn_top1 %.2f ", knn_head);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in `%s`", want, out_text);
    cr_assert_str_eq(stored_param(bb_id, "eval.knn.features", v, sizeof v), "head");
    /* the probe did not run: its row still says what the run's own probe used (backbone, the
     * default), not the "head" this call classified */
    cr_assert_str_eq(stored_param(bb_id, "eval.linear.features", v, sizeof v), "backbone");

    /* embed and --cluster: the backbone's 32 features, or the head's 16 */
    char npy[400];
    snprintf(npy, sizeof npy, "%s/bb.npy", tmp);
    cr_assert_eq(INVAR("embed", head_ref, "--out", npy, "--features", "backbone"), 0, "%s",
                 err_text);
    check_npy(npy, "<f4", "(128, 32)", 128 * 32);
    cr_assert_eq(INVAR("embed", head_ref, "--out", npy), 0, "%s", err_text);
    check_npy(npy, "<f4", "(128, 16)", 128 * 16);
    cr_assert_eq(INVAR("eval", head_ref, "--cluster", "--features", "backbone"), 0, "%s",
                 err_text);
    cr_assert_not_null(strstr(err_text, " x 32 L2-normalised"), "%s", err_text);
    cr_assert_not_null(strstr(stored_param(head_id, "eval.cluster.features", v, sizeof v),
                              "backbone"),
                       "%s", v);
    cr_assert_eq(INVAR("eval", head_ref, "--cluster"), 0, "%s", err_text);
    cr_assert_not_null(strstr(err_text, " x 16 L2-normalised"), "%s", err_text);

    /* bad values are refused before anything is opened */
    cr_assert_eq(INVAR("eval", head_ref, "--knn", "--features", "neck"), 2);
    assert_one_line_message();
    cr_assert_str_eq(err_text, "invar: eval: --features neck: head (the encoder's output) or "
                               "backbone (the representation under its head)\n");
    cr_assert_eq(INVAR("embed", head_ref, "--out", npy, "--features"), 2);
    cr_assert_str_eq(err_text, "invar: embed: --features needs head or backbone\n");
}

Test(cli, eval_cluster_stores_metrics_and_protocol_reproducibly, .timeout = 300)
{
    char ref[32];
    int64_t id = train_synthetic_run(ref, sizeof ref);

    /* The default (no flag) is still kNN and the linear probe, without clustering. */
    cr_assert_eq(INVAR("eval", ref), 0, "%s", err_text);
    cr_assert_not_null(strstr(out_text, " knn_top1 "), "%s", out_text);
    cr_assert_not_null(strstr(out_text, " linear_top1 "), "%s", out_text);
    cr_assert_null(strstr(out_text, "cluster"), "%s", out_text);
    struct invar_store_metric_list acc = metric_series(id, "cluster_acc");
    cr_assert_eq(acc.count, 0u);
    invar_store_metric_list_deinit(&acc);

    cr_assert_eq(INVAR("eval", ref, "--cluster"), 0, "%s", err_text);
    cr_assert(strncmp(out_text, "run ", 4) == 0, "%s", out_text);
    cr_assert_null(strstr(out_text, "knn_top1"), "--cluster alone ran kNN: %s", out_text);
    char acc_txt[32], nmi_txt[32];
    printed_cluster(acc_txt, nmi_txt);

    /* Stored as printed, at the step and epoch of the run's final kNN evaluation. */
    acc = metric_series(id, "cluster_acc");
    struct invar_store_metric_list nmi = metric_series(id, "cluster_nmi");
    struct invar_store_metric_list knn = metric_series(id, "knn_top1");
    cr_assert_eq(acc.count, 1u);
    cr_assert_eq(nmi.count, 1u);
    double a = acc.items[0].value, m = nmi.items[0].value;
    char want[32];
    snprintf(want, sizeof want, "%.2f", a);
    cr_assert_str_eq(acc_txt, want);
    snprintf(want, sizeof want, "%.4f", m);
    cr_assert_str_eq(nmi_txt, want);
    cr_assert_eq(acc.items[0].step, knn.items[0].step);
    cr_assert_eq(acc.items[0].epoch, knn.items[0].epoch);
    cr_assert_eq(acc.items[0].epoch, 0);
    cr_assert_eq(nmi.items[0].step, knn.items[0].step);
    /* Ranges: a one-to-one matching of 4 clusters to 4 balanced classes gets at least the
     * average over all matchings, 1/4; and the accuracy is a whole number of the 256 rows. */
    cr_assert(a >= 25.0 - 1e-9 && a <= 100.0, "cluster_acc %g", a);
    double rows = a / 100.0 * 256;
    cr_assert_float_eq(rows, round(rows), 1e-9, "cluster_acc %g is no count of 256", a);
    cr_assert(m >= 0.0 && m <= 1.0, "cluster_nmi %g", m);

    /* The protocol beside the results. */
    char v[128];
    cr_assert_str_eq(stored_param(id, "eval.cluster.k", v, sizeof v), "4");
    cr_assert_str_eq(stored_param(id, "eval.cluster.split", v, sizeof v), "test");
    cr_assert_str_eq(stored_param(id, "eval.cluster.restarts", v, sizeof v), "10");
    cr_assert_str_eq(stored_param(id, "eval.cluster.iters", v, sizeof v), "100");
    cr_assert_str_eq(stored_param(id, "eval.cluster.seed", v, sizeof v), "1");
    cr_assert_str_eq(stored_param(id, "eval.cluster.l2_normalize", v, sizeof v), "1");
    cr_assert_str_eq(stored_param(id, "eval.cluster.pca_whiten", v, sizeof v), "0");

    /* Together with kNN in one call; the clustering figures are the same to the bit. */
    cr_assert_eq(INVAR("eval", ref, "--knn", "--cluster"), 0, "%s", err_text);
    snprintf(want, sizeof want, " knn_top1 %.2f ", knn.items[0].value);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in %s", want, out_text);
    printed_cluster(acc_txt, nmi_txt);
    invar_store_metric_list_deinit(&acc);
    invar_store_metric_list_deinit(&nmi);
    acc = metric_series(id, "cluster_acc");
    nmi = metric_series(id, "cluster_nmi");
    cr_assert_eq(acc.count, 2u);
    cr_assert_eq(nmi.count, 2u);
    cr_assert(memcmp(&acc.items[0].value, &acc.items[1].value, sizeof(double)) == 0,
              "cluster_acc %.17g then %.17g", acc.items[0].value, acc.items[1].value);
    cr_assert(memcmp(&nmi.items[0].value, &nmi.items[1].value, sizeof(double)) == 0,
              "cluster_nmi %.17g then %.17g", nmi.items[0].value, nmi.items[1].value);
    snprintf(want, sizeof want, "%.2f", a);
    cr_assert_str_eq(acc_txt, want);
    invar_store_metric_list_deinit(&acc);
    invar_store_metric_list_deinit(&nmi);
    invar_store_metric_list_deinit(&knn);
}

/* The data of an .npy file written by `embed` (count elements of 4 bytes). */
static void read_npy(const char *path, void *data, size_t count)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    unsigned char pre[10];
    cr_assert_eq(fread(pre, 1, 10, f), 10u);
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    cr_assert_eq(fseek(f, (long)(10 + hlen), SEEK_SET), 0);
    cr_assert_eq(fread(data, 4, count, f), count);
    fclose(f);
}

/* `invar eval` printed " NAME VALUE" (two decimals) followed by after. */
static void assert_printed(const char *name, double value, const char *after)
{
    char want[96];
    snprintf(want, sizeof want, " %s %.2f%s", name, value, after);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in `%s`", want, out_text);
}

/* eval.knn.* and eval.linear.* on the command line re-evaluate with other settings: the figures
 * are those of a run configured with them (training does not read them), the params follow,
 * and the settings training used are refused. */
Test(cli, eval_settings_override_the_runs_own, .timeout = 300)
{
    char ref[32], v[64];
    cr_assert_eq(INVAR("run", fixture("convnet.yaml")), 0, "%s", err_text);
    int64_t id = run_id_from_stdout();
    snprintf(ref, sizeof ref, "%lld", (long long)id);
    cr_assert_eq(INVAR("run", fixture("convnet.yaml"), "eval.knn.k=5", "eval.knn.t=0.5",
                       "eval.linear.epochs=3", "eval.linear.lr=0.02"),
                 0, "%s", err_text);
    int64_t other = run_id_from_stdout();
    const double knn = last_value(id, "knn_top1"), knn5 = last_value(other, "knn_top1");
    const double lin = last_value(other, "linear_top1");
    cr_assert_neq(knn, knn5, "k 20 and k 5 score alike: %g", knn);

    cr_assert_eq(INVAR("eval", ref, "--knn", "eval.knn.k=5", "eval.knn.t=0.5"), 0, "%s", err_text);
    assert_printed("knn_top1", knn5, " ");
    cr_assert_eq(last_value(id, "knn_top1"), knn5);
    cr_assert_str_eq(stored_param(id, "eval.knn.k", v, sizeof v), "5");
    cr_assert_str_eq(stored_param(id, "eval.knn.t", v, sizeof v), "0.5");
    cr_assert_str_eq(stored_param(id, "eval.linear.epochs", v, sizeof v), "0");

    /* the probe's settings with --linear (which runs kNN too); 0.020 is stored as resolved */
    cr_assert_eq(INVAR("eval", ref, "--linear", "eval.linear.epochs=3", "eval.linear.lr=0.020",
                       "eval.knn.k=20"),
                 0, "%s", err_text);
    assert_printed("knn_top1", knn, " ");
    assert_printed("linear_top1", lin, "\n");
    cr_assert_eq(last_value(id, "linear_top1"), lin);
    cr_assert_str_eq(stored_param(id, "eval.linear.epochs", v, sizeof v), "3");
    cr_assert_str_eq(stored_param(id, "eval.linear.lr", v, sizeof v), "0.02");
    cr_assert_str_eq(stored_param(id, "eval.knn.k", v, sizeof v), "20");
    /* the t of the evaluation before is not this one's: the row goes back to the run's */
    cr_assert_str_eq(stored_param(id, "eval.knn.t", v, sizeof v), "0.1");

    /* refused with one line, before anything is evaluated */
    cr_assert_eq(INVAR("eval", ref, "--knn", "data.limit=64"), 2);
    assert_one_line_message();
    cr_assert_str_eq(err_text, "invar: eval: `data.limit=64`: only eval.knn.* and eval.linear.* "
                               "settings can change after training (the checkpoint was trained "
                               "with the others)\n");
    cr_assert_eq(INVAR("eval", ref, "--knn", "eval.knn.every=1"), 2);
    assert_one_line_message();
    cr_assert_eq(INVAR("eval", ref, "--knn", "eval.linear.lr=0.5"), 2);
    cr_assert_str_eq(err_text, "invar: eval: `eval.linear.lr=0.5` sets the probe: add --linear\n");
    cr_assert_eq(INVAR("eval", ref, "--cluster", "eval.knn.k=5"), 2);
    cr_assert_str_eq(err_text, "invar: eval: `eval.knn.k=5` sets kNN: add --knn\n");
    cr_assert_eq(INVAR("eval", ref, "--knn", "--size", "12", "eval.knn.size=10"), 2);
    cr_assert_str_eq(err_text,
                     "invar: eval: `eval.knn.size=10` and --size both set it: give one\n");
    cr_assert_eq(INVAR("eval", ref, "--linear", "eval.linear.epochs=0"), 1);
    assert_one_line_message();
    /* the config's own checks name the key */
    cr_assert_eq(INVAR("eval", ref, "--knn", "eval.knn.k=many"), 1);
    assert_one_line_message();
    cr_assert_not_null(strstr(err_text, "eval.knn.k"), "%s", err_text);
    cr_assert_eq(INVAR("eval", ref, "--knn", "eval.knn.kk=5"), 1);
    assert_one_line_message();
    cr_assert_not_null(strstr(err_text, "eval.knn.kk"), "%s", err_text);
    /* nothing of the refused calls reached the params */
    cr_assert_str_eq(stored_param(id, "eval.knn.k", v, sizeof v), "20");
    cr_assert_str_eq(stored_param(id, "eval.linear.lr", v, sizeof v), "0.02");
}

/* --size resizes the images kNN, the probe, --cluster and embed see, and the params follow; the
 * figure is the one a run configured with eval.knn.size computes itself. */
Test(cli, eval_size_resizes_the_images_the_protocols_embed, .timeout = 300)
{
    enum { N = 128, DIM = 16 }; /* convnet.yaml's test split and head */
    char ref[32], sized_ref[32], v[64], want[64];
    cr_assert_eq(INVAR("run", fixture("convnet.yaml")), 0, "%s", err_text);
    int64_t id = run_id_from_stdout();
    snprintf(ref, sizeof ref, "%lld", (long long)id);
    cr_assert_eq(INVAR("run", fixture("convnet.yaml"), "eval.knn.size=12"), 0, "%s", err_text);
    int64_t sized = run_id_from_stdout();
    snprintf(sized_ref, sizeof sized_ref, "%lld", (long long)sized);
    const double knn = last_value(id, "knn_top1"), knn12 = last_value(sized, "knn_top1");
    cr_assert_neq(knn, knn12, "the 8 x 8 images and their 12 x 12 copies score alike: %g", knn);
    cr_assert_str_eq(stored_param(sized, "eval.knn.size", v, sizeof v), "12");
    cr_assert_str_eq(stored_param(sized, "eval.linear.size", v, sizeof v), "0");

    cr_assert_eq(INVAR("eval", ref, "--knn", "--size", "12"), 0, "%s", err_text);
    snprintf(want, sizeof want, " knn_top1 %.2f ", knn12);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in `%s`", want, out_text);
    cr_assert_eq(last_value(id, "knn_top1"), knn12);
    cr_assert_str_eq(stored_param(id, "eval.knn.size", v, sizeof v), "12");
    cr_assert_str_eq(stored_param(id, "eval.linear.size", v, sizeof v), "0");
    /* the images' own size is the images as stored */
    cr_assert_eq(INVAR("eval", sized_ref, "--knn", "--size", "8"), 0, "%s", err_text);
    snprintf(want, sizeof want, " knn_top1 %.2f ", knn);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in `%s`", want, out_text);
    cr_assert_str_eq(stored_param(sized, "eval.knn.size", v, sizeof v), "8");
    /* without --size, the run's own size again, and its row */
    cr_assert_eq(INVAR("eval", ref, "--knn"), 0, "%s", err_text);
    snprintf(want, sizeof want, " knn_top1 %.2f ", knn);
    cr_assert_not_null(strstr(out_text, want), "`%s` not in `%s`", want, out_text);
    cr_assert_str_eq(stored_param(id, "eval.knn.size", v, sizeof v), "0");

    /* embed: the same rows and features, other values at 12; the same bits at 8 */
    static float plain[N * DIM], big[N * DIM], same[N * DIM];
    char npy[400];
    snprintf(npy, sizeof npy, "%s/sized.npy", tmp);
    cr_assert_eq(INVAR("embed", ref, "--out", npy), 0, "%s", err_text);
    read_npy(npy, plain, N * DIM);
    cr_assert_eq(INVAR("embed", ref, "--out", npy, "--size", "12"), 0, "%s", err_text);
    check_npy(npy, "<f4", "(128, 16)", N * DIM);
    read_npy(npy, big, N * DIM);
    cr_assert_neq(memcmp(plain, big, sizeof plain), 0);
    cr_assert_eq(INVAR("embed", ref, "--out", npy, "--size", "8"), 0, "%s", err_text);
    read_npy(npy, same, N * DIM);
    cr_assert_eq(memcmp(plain, same, sizeof plain), 0);

    /* --cluster takes the images as stored unless told, and says which */
    cr_assert_eq(INVAR("eval", ref, "--cluster", "--size", "12"), 0, "%s", err_text);
    cr_assert_str_eq(stored_param(id, "eval.cluster.size", v, sizeof v), "12");
    cr_assert_eq(INVAR("eval", ref, "--cluster"), 0, "%s", err_text);
    cr_assert_str_eq(stored_param(id, "eval.cluster.size", v, sizeof v), "0");

    /* bad values, and --invariance alone, are refused with one line */
    cr_assert_eq(INVAR("eval", ref, "--knn", "--size", "0"), 2);
    assert_one_line_message();
    cr_assert_str_eq(err_text, "invar: eval: --size 0: the side the images are resized to must "
                               "be an integer from 1 to 4096\n");
    cr_assert_eq(INVAR("embed", ref, "--out", npy, "--size", "12px"), 2);
    assert_one_line_message();
    cr_assert_eq(INVAR("eval", ref, "--size"), 2);
    assert_one_line_message();
    cr_assert_eq(INVAR("eval", ref, "--invariance", "--size", "12"), 2);
    cr_assert_str_eq(err_text, "invar: eval: --size applies to --knn, --linear and --cluster, "
                               "not --invariance\n");
    /* an encoder whose weights follow the input size is refused before it trains, and a
     * convnet refuses images too small for its poolings */
    cr_assert_eq(INVAR("run", fixture("tiny.yaml"), "eval.linear.size=6"), 1);
    cr_assert_not_null(strstr(err_text, "eval.linear.size: encoder mlp was built for 1x28x28 "
                                        "views and its weights depend on the input size: it "
                                        "cannot embed images of 1x6x6 (set eval.linear.size to "
                                        "28)\n"),
                       "%s", err_text);
    cr_assert_eq(INVAR("embed", ref, "--out", npy, "--size", "2"), 1);
    cr_assert_not_null(strstr(err_text, "size: the images at 1x2x2: encoder convnet: convnet: "
                                        "input 2x2 is too small"),
                       "%s", err_text);
}

Test(cli, eval_cluster_figures_by_hand_and_from_the_embedding, .timeout = 300)
{
    enum { N = 256, K = 4, DIM = 32 }; /* the synthetic test split, the mlp's dim */
    char ref[32];
    int64_t id = train_synthetic_run(ref, sizeof ref);
    struct invar_error err = {{0}};

    /* One cluster: the matching scores one class, 64 of 256 rows, and the partition says
     * nothing about the labels, NMI 0. */
    cr_assert_eq(INVAR("eval", ref, "--cluster", "--k", "1"), 0, "%s", err_text);
    char acc_txt[32], nmi_txt[32], v[64];
    printed_cluster(acc_txt, nmi_txt);
    cr_assert_str_eq(acc_txt, "25.00");
    cr_assert_str_eq(nmi_txt, "0.0000");
    cr_assert_str_eq(stored_param(id, "eval.cluster.k", v, sizeof v), "1");
    struct invar_store_metric_list acc = metric_series(id, "cluster_acc");
    struct invar_store_metric_list nmi = metric_series(id, "cluster_nmi");
    cr_assert_float_eq(acc.items[acc.count - 1].value, 25.0, 1e-9);
    cr_assert_float_eq(nmi.items[nmi.count - 1].value, 0.0, 1e-12);
    invar_store_metric_list_deinit(&acc);
    invar_store_metric_list_deinit(&nmi);

    /* One cluster per sample (k-means++ never picks a point twice, so every point is its own
     * centroid): only 4 clusters can be matched, accuracy 4/256; I = H(labels) = ln 4 and
     * H(clusters) = ln 256, so NMI = 2 ln 4 / (ln 4 + ln 256) = 4/10. */
    cr_assert_eq(INVAR("eval", ref, "--cluster", "--k", "256"), 0, "%s", err_text);
    printed_cluster(acc_txt, nmi_txt);
    cr_assert_str_eq(acc_txt, "1.56");
    acc = metric_series(id, "cluster_acc");
    nmi = metric_series(id, "cluster_nmi");
    cr_assert_float_eq(acc.items[acc.count - 1].value, 100.0 * 4 / 256, 1e-9);
    cr_assert_float_eq(nmi.items[nmi.count - 1].value, 0.4, 1e-12);
    invar_store_metric_list_deinit(&acc);
    invar_store_metric_list_deinit(&nmi);

    /* The default k (the dataset's 4 classes), recomputed here from `embed`'s test features
     * by the documented protocol: L2-normalised rows, k-means++ and 100 Lloyd iterations with
     * seeds 1..10, the lowest inertia kept; accuracy by trying all 4! matchings and NMI from
     * the contingency table. */
    cr_assert_eq(INVAR("eval", ref, "--cluster"), 0, "%s", err_text);
    cr_assert_str_eq(stored_param(id, "eval.cluster.k", v, sizeof v), "4");
    double inertia_printed;
    const char *in = strstr(err_text, "(inertia ");
    cr_assert(in && sscanf(in, "(inertia %lg)", &inertia_printed) == 1, "%s", err_text);
    acc = metric_series(id, "cluster_acc");
    nmi = metric_series(id, "cluster_nmi");
    double a = acc.items[acc.count - 1].value, m = nmi.items[nmi.count - 1].value;
    invar_store_metric_list_deinit(&acc);
    invar_store_metric_list_deinit(&nmi);

    char npy[400], lab[400];
    snprintf(npy, sizeof npy, "%s/test.npy", tmp);
    snprintf(lab, sizeof lab, "%s/test.labels.npy", tmp);
    cr_assert_eq(INVAR("embed", ref, "--out", npy), 0, "%s", err_text);
    static float x[N * DIM], cent[K * DIM];
    int32_t y[N], assign[N], best[N];
    read_npy(npy, x, N * DIM);
    read_npy(lab, y, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(y[i], i % K);
        double s = 0;
        for (int j = 0; j < DIM; j++)
            s += (double)x[i * DIM + j] * x[i * DIM + j];
        cr_assert(s > 0);
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < DIM; j++)
            x[i * DIM + j] *= inv;
    }
    double best_inertia = INFINITY;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        double inertia;
        cr_assert_eq(invar_kmeans(x, N, DIM, K, 100, seed, cent, assign, &inertia, &err), INVAR_OK,
                     "%s", err.msg);
        if (inertia < best_inertia) {
            best_inertia = inertia;
            memcpy(best, assign, sizeof best);
        }
    }
    cr_assert_float_eq(inertia_printed, best_inertia, 1e-5 * best_inertia);
    double count[K][K] = {{0}}, rows[K] = {0}, cols[K] = {0};
    for (int i = 0; i < N; i++) {
        count[best[i]][y[i]] += 1;
        rows[best[i]] += 1;
        cols[y[i]] += 1;
    }
    double most = 0;
    for (int p = 0; p < K * K * K * K; p++) { /* every map cluster -> class; keep bijections */
        int to[K], used = 0;
        for (int c = 0, q = p; c < K; c++, q /= K)
            to[c] = q % K, used |= 1 << to[c];
        if (used != (1 << K) - 1)
            continue;
        double hit = 0;
        for (int c = 0; c < K; c++)
            hit += count[c][to[c]];
        most = hit > most ? hit : most;
    }
    double mi = 0, hc = 0, hy = 0;
    for (int c = 0; c < K; c++) {
        if (rows[c] > 0)
            hc -= rows[c] / N * log(rows[c] / N);
        hy -= cols[c] / N * log(cols[c] / N);
        for (int t = 0; t < K; t++)
            if (count[c][t] > 0)
                mi += count[c][t] / N * log(N * count[c][t] / (rows[c] * cols[t]));
    }
    cr_assert_float_eq(a, 100.0 * most / N, 1e-9);
    cr_assert_float_eq(m, mi / (0.5 * (hc + hy)), 1e-12);
}

Test(cli, eval_cluster_refuses_bad_arguments_with_clear_messages, .timeout = 300)
{
    /* Arguments are checked before any database is opened. */
    cr_assert_eq(INVAR("eval", "1", "--cluster", "--k", "0"), 2);
    assert_one_line_message();
    cr_assert_str_eq(err_text, "invar: eval: --k 0: the number of clusters must be an integer "
                               "from 1 to 4096\n");
    cr_assert_eq(INVAR("eval", "1", "--cluster", "--k", "3x"), 2);
    cr_assert_not_null(strstr(err_text, "--k 3x:"), "%s", err_text);
    cr_assert_eq(INVAR("eval", "1", "--cluster", "--k"), 2);
    cr_assert_str_eq(err_text, "invar: eval: --k needs a number of clusters\n");
    cr_assert_eq(INVAR("eval", "1", "--k", "5"), 2);
    cr_assert_str_eq(err_text,
                     "invar: eval: --k sets the number of clusters and needs --cluster\n");
    cr_assert_eq(INVAR("eval", "--cluster"), 2);
    cr_assert_not_null(strstr(err_text, "which run?"), "%s", err_text);

    char ref[32];
    int64_t id = train_synthetic_run(ref, sizeof ref);
    cr_assert_eq(INVAR("eval", "999", "--cluster"), 1);
    assert_one_line_message();
    cr_assert_not_null(strstr(err_text, "no run `999'"), "%s", err_text);
    /* More clusters than test samples. */
    cr_assert_eq(INVAR("eval", ref, "--cluster", "--k", "257"), 1);
    assert_one_line_message();
    cr_assert_str_eq(err_text, "invar: eval: --k 257 is more clusters than the 256 samples of "
                               "the test split\n");
    /* Nothing was stored by the refusals. */
    struct invar_store_metric_list acc = metric_series(id, "cluster_acc");
    cr_assert_eq(acc.count, 0u);
    invar_store_metric_list_deinit(&acc);
}

/* ---- eval --invariance -------------------------------------------------------------------- */

/* The value printed on the line "KEY VALUE" of stdout, as text. */
static void printed_line(const char *key, char *value, size_t n)
{
    char want[160];
    snprintf(want, sizeof want, "%s ", key);
    const char *at = strstr(out_text, want);
    /* At the start of a line, not inside a longer key (".1" of ".10"). */
    while (at && at != out_text && at[-1] != '\n')
        at = strstr(at + 1, want);
    cr_assert_not_null(at, "no line `%s` on stdout: %s", key, out_text);
    at += strlen(want);
    size_t len = strcspn(at, "\n");
    cr_assert(len < n);
    memcpy(value, at, len);
    value[len] = 0;
}

/* Two views with their own chains on the synthetic dataset: crop (the same step in both views,
 * counted once), hflip with p 0 (never applied: an identity), and two gaussian_noise steps of
 * different strength (named by order of appearance). */
static int64_t train_invariance_run(char *ref, size_t n)
{
    char path[400];
    snprintf(path, sizeof path, "%s/invariance.yaml", tmp);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("name: invariance\n"
          "seed: 1\n"
          "data: {plugin: synthetic, classes: 4, train_count: 512, test_count: 256}\n"
          "views:\n"
          "  - - {plugin: crop, padding: 2}\n"
          "    - {plugin: hflip, p: 0}\n"
          "    - {plugin: gaussian_noise, std: 0.05}\n"
          "  - - {plugin: crop, padding: 2}\n"
          "    - {plugin: gaussian_noise, std: 0.5}\n"
          "encoder: {plugin: mlp, hidden: 64, depth: 1, dim: 32}\n"
          "objective: {plugin: moco, queue: 256, momentum: 0.99, temperature: 0.2}\n"
          "optim: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5e-4, schedule: cosine}\n"
          "train: {epochs: 1, batch_size: 64, threads: 1}\n"
          "eval: {knn: {k: 20, t: 0.1}, linear: {epochs: 0}}\n",
          f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(INVAR("run", path), 0, "%s", err_text);
    int64_t id = run_id_from_stdout();
    snprintf(ref, n, "%lld", (long long)id);
    return id;
}

Test(cli, eval_invariance_stores_one_figure_per_step_reproducibly, .timeout = 300)
{
    static const char *const keys[] = {"invariance/crop", "invariance/hflip",
                                       "invariance/gaussian_noise.1", "invariance/gaussian_noise.2",
                                       "invariance/baseline"};
    enum { NK = sizeof keys / sizeof keys[0] };
    char ref[32], v[128], txt[32];
    int64_t id = train_invariance_run(ref, sizeof ref);
    struct invar_store_metric_list knn = metric_series(id, "knn_top1");
    cr_assert_eq(knn.count, 1u);
    int64_t step = knn.items[0].step, epoch = knn.items[0].epoch;
    invar_store_metric_list_deinit(&knn);

    cr_assert_eq(INVAR("eval", ref, "--invariance"), 0, "%s", err_text);
    cr_assert_null(strstr(out_text, "knn_top1"), "--invariance alone ran kNN: %s", out_text);
    cr_assert_null(strstr(out_text, "invariance/crop."), "one crop step, no suffix: %s", out_text);
    double first[NK];
    for (int k = 0; k < NK; k++) {
        struct invar_store_metric_list m = metric_series(id, keys[k]);
        cr_assert_eq(m.count, 1u, "%s: %zu rows", keys[k], m.count);
        double x = m.items[0].value;
        /* Beside the trainer's final evaluation. */
        cr_assert_eq(m.items[0].step, step);
        cr_assert_eq(m.items[0].epoch, epoch);
        invar_store_metric_list_deinit(&m);
        cr_assert(x >= -1.0 - 1e-9 && x <= 1.0 + 1e-9, "%s %.17g", keys[k], x);
        printed_line(keys[k], txt, sizeof txt);
        snprintf(v, sizeof v, "%.6f", x);
        cr_assert_str_eq(txt, v, "%s printed %s, stored %.17g", keys[k], txt, x);
        first[k] = x;
    }
    /* hflip with p 0 never flips: both images are the same, their features too. */
    cr_assert_float_eq(first[1], 1.0, 1e-6);
    /* The image itself is always closer to its slightly noisy copy than to a heavily noisy
     * one; an augmented copy is closer than a different image. */
    cr_assert_gt(first[2], first[3]);
    cr_assert_gt(first[2], first[4]);
    cr_assert_lt(first[0], 1.0 - 1e-6, "crop moved nothing: %.17g", first[0]);

    /* The protocol beside the figures. */
    cr_assert_str_eq(stored_param(id, "eval.invariance.split", v, sizeof v), "test");
    cr_assert_str_eq(stored_param(id, "eval.invariance.images", v, sizeof v), "256");
    cr_assert_str_eq(stored_param(id, "eval.invariance.seed", v, sizeof v), "1");
    cr_assert_str_eq(stored_param(id, "eval.invariance.baseline", v, sizeof v),
                     "image i against image (i + N/2) mod N");

    /* Again, together with kNN: the same figures to the bit, and kNN's as before. */
    cr_assert_eq(INVAR("eval", ref, "--invariance", "--knn"), 0, "%s", err_text);
    cr_assert_not_null(strstr(out_text, " knn_top1 "), "%s", out_text);
    for (int k = 0; k < NK; k++) {
        struct invar_store_metric_list m = metric_series(id, keys[k]);
        cr_assert_eq(m.count, 2u, "%s: %zu rows", keys[k], m.count);
        cr_assert_eq(m.items[1].value, first[k], "%s: %.17g then %.17g", keys[k], first[k],
                     m.items[1].value);
        invar_store_metric_list_deinit(&m);
    }
    knn = metric_series(id, "knn_top1");
    cr_assert_eq(knn.count, 2u);
    cr_assert_eq(knn.items[1].value, knn.items[0].value);
    invar_store_metric_list_deinit(&knn);
}

/* The baseline recomputed from `embed`'s test features: the encoder rebuilt for --invariance
 * embeds the originals as the trainer's evaluation does. */
Test(cli, eval_invariance_baseline_from_the_embedding, .timeout = 300)
{
    enum { N = 256, DIM = 32 };
    char ref[32];
    int64_t id = train_invariance_run(ref, sizeof ref);
    cr_assert_eq(INVAR("eval", ref, "--invariance"), 0, "%s", err_text);
    struct invar_store_metric_list b = metric_series(id, "invariance/baseline");
    cr_assert_eq(b.count, 1u);
    double baseline = b.items[0].value;
    invar_store_metric_list_deinit(&b);

    char npy[400];
    snprintf(npy, sizeof npy, "%s/test.npy", tmp);
    cr_assert_eq(INVAR("embed", ref, "--out", npy), 0, "%s", err_text);
    static float x[N * DIM];
    read_npy(npy, x, N * DIM);
    double norm[N], sum = 0;
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < DIM; j++)
            s += (double)x[i * DIM + j] * x[i * DIM + j];
        cr_assert(s > 0);
        norm[i] = sqrt(s);
    }
    for (int i = 0; i < N; i++) {
        int o = (i + N / 2) % N;
        double s = 0;
        for (int j = 0; j < DIM; j++)
            s += (double)x[i * DIM + j] * x[o * DIM + j];
        sum += s / (norm[i] * norm[o]);
    }
    cr_assert_float_eq(baseline, sum / N, 1e-5, "stored %.17g, from the embedding %.17g", baseline,
                       sum / N);
    /* Different images of a trained encoder are not all alike. */
    cr_assert_lt(baseline, 0.999);
}

Test(cli, eval_invariance_refuses_a_too_small_split, .timeout = 300)
{
    char ref[32];
    cr_assert_eq(INVAR("run", fixture("tiny.yaml"), "data.plugin=synthetic", "data.classes=4",
                       "data.train_count=512", "data.test_count=1", "eval.linear.epochs=0"),
                 0, "%s", err_text);
    int64_t id = run_id_from_stdout();
    snprintf(ref, sizeof ref, "%lld", (long long)id);
    cr_assert_eq(INVAR("eval", ref, "--invariance"), 1);
    assert_one_line_message();
    cr_assert_str_eq(err_text, "invar: eval: --invariance needs at least 2 images in the test "
                               "split, it has 1\n");
    struct invar_store_metric_list b = metric_series(id, "invariance/baseline");
    cr_assert_eq(b.count, 0u);
    invar_store_metric_list_deinit(&b);
}
