/* Runs the built `invar` binary from a Criterion suite: each test gets a temp folder with its
 * own database, and a command's stdout and stderr are read back into out_text / err_text.
 *
 *     TestSuite(cli, .init = proc_setup, .fini = proc_teardown);
 *     Test(cli, version) { cr_assert_eq(INVAR("--version"), 0); puts(out_text); }
 */
#ifndef INVAR_TESTS_INVAR_PROCESS_H
#define INVAR_TESTS_INVAR_PROCESS_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char tmp[256];
static char out_path[300], err_path[300], db_path[300];
static char out_text[1 << 16], err_text[1 << 16];

static const char *invar_bin(void)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/tools/invar/invar", getenv("INVAR_BUILD_ROOT"));
    return path;
}

static void slurp(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = 0;
    fclose(f);
}

/* Starts `invar --db DB args...` with stdout and stderr going to files in tmp. */
static pid_t invar_start(const char *const *args)
{
    const char *argv[64] = {invar_bin(), "--db", db_path};
    int n = 3;
    for (; *args; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", argv[0], strerror(rc));
    return pid;
}

/* Waits for pid; returns its exit status (128 + signal when a signal ended it). */
static int invar_wait(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    slurp(out_path, out_text, sizeof out_text);
    slurp(err_path, err_text, sizeof err_text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int invar(const char *const *args)
{
    return invar_wait(invar_start(args));
}

#define INVAR(...) invar((const char *const[]){__VA_ARGS__, NULL})

static int proc_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void proc_setup(void)
{
    snprintf(tmp, sizeof tmp, "%s/invar-test-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp);
    snprintf(db_path, sizeof db_path, "%s/results.db", tmp);
}

static void proc_teardown(void)
{
    nftw(tmp, proc_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
