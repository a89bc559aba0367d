/*
 * tandem launcher: the static entry point of a tandem runtime.
 *
 * A runtime is a directory ROOT with this layout:
 *   ROOT/bin/tandem                    this program, linked statically
 *   ROOT/bin/ps                        a hard link to or copy of this program
 *   ROOT/lib/ld-linux-x86-64.so.2      the dynamic loader that Node.js and ps were linked against
 *   ROOT/lib/lib*.so.N                 the shared libraries that Node.js and ps need
 *   ROOT/libexec/node                  Node.js
 *   ROOT/libexec/ps                    procps ps, which the supervisor's tree-kill runs to find descendants
 *   ROOT/libexec/tini                  tini, linked statically, which reaps zombies under the supervisor
 *   ROOT/app/cli.js                    tandem's bundled command line
 *
 * App images may have no glibc and no shell, so the launcher does not rely on anything outside ROOT.
 * It finds ROOT as dirname(dirname(/proc/self/exe)), falling back to realpath(argv[0]) when /proc
 * is not mounted. The program to run is chosen by the basename of argv[0], like a multi-call binary:
 *
 *   ps                   ROOT/lib/ld-linux-x86-64.so.2 --inhibit-cache --library-path ROOT/lib
 *                            --argv0 ps ROOT/libexec/ps ARGS...
 *   tandem supervise     ROOT/libexec/tini -s -- ROOT/lib/ld-linux-x86-64.so.2 --inhibit-cache
 *                            --library-path ROOT/lib ROOT/libexec/node --no-warnings
 *                            --max-semi-space-size=1 ROOT/app/cli.js supervise ARGS...
 *   tandem (otherwise)   the same without "ROOT/libexec/tini -s --" and "--max-semi-space-size=1"
 *
 * with ARGS passed unchanged. Starting Node.js and ps through the loader with --library-path keeps
 * the runtime's libraries out of the environment, so programs that tandem starts use their own
 * image's libraries. --inhibit-cache keeps the image's /etc/ld.so.cache from pointing the loader at
 * a different libc. --argv0 (glibc 2.33 and later) makes ps see "ps" as its name.
 *
 * tini runs as the parent of the supervisor's Node.js because Node.js cannot call waitpid(-1)
 * without racing libuv, which waits for the children that Node.js started. tini reaps every other
 * process that ends up as its child. -s registers it as a child subreaper (PR_SET_CHILD_SUBREAPER),
 * so orphans of the supervised command are re-parented to tini and reaped even when tini is not
 * PID 1, as in a pod with a shared process namespace. tini forwards the signals it receives to
 * Node.js only: -g, which would also send them to the supervised command, must stay off so that
 * the supervisor alone decides when the command stops. tini 0.19.0 forwards every signal but
 * SIGCHLD and those it cannot or does not catch. SIGKILL, SIGSTOP and fault signals such as SIGSEGV
 * and SIGABRT act on tini alone, so when tini is not PID 1 they can end it and leave Node.js running.
 *
 * Before the exec, TANDEM_REAPER_PID is set to the launcher's PID, which tini keeps.
 * TANDEM_NO_REAPER=1 (or true, yes) is an escape hatch that starts the supervisor without tini, for
 * example where tini fails to register as a subreaper. Then nothing in the container reaps orphaned
 * processes unless PID 1 does.
 *
 * Inside tandem, process.execPath is the loader (Node.js reads /proc/self/exe), so code that starts
 * tandem again must run ROOT/bin/tandem, never process.execPath.
 *
 * NOTE: LD_PRELOAD from the app's environment still applies to tandem's Node.js and to ps, because
 * the loader reads it. Preloading a library built against another libc can make them fail to start.
 *
 * Exit codes of the launcher itself (after a successful exec, the exit code is the program's):
 *   2    invoked under a name other than "tandem" or "ps", or TANDEM_NO_REAPER has an invalid value
 *   126  the loader or tini exists but execve(2) failed (permission, wrong architecture), or memory
 *        ran out
 *   127  the runtime root cannot be determined, or a runtime file is missing
 * Under tini (tini 0.19.0 as Debian's tini package ships it), `tandem supervise` exits with the
 * code of Node.js, or 128+N when signal N killed Node.js. tini itself exits 1 when it cannot set
 * itself up (for example when PR_SET_CHILD_SUBREAPER fails), and 126 or 127 when it cannot execute
 * the loader.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
  EXIT_USAGE = 2,
  EXIT_CANNOT_EXECUTE = 126,
  EXIT_NOT_FOUND = 127,
};

static const char *basename_of(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash == NULL ? path : slash + 1;
}

/* Cuts the last component off an absolute path in place: "/a/b" becomes "/a", "/a" becomes "/". */
static void strip_last_component(char *path) {
  char *slash = strrchr(path, '/');
  if (slash == NULL) {
    return;
  }
  if (slash == path) {
    slash[1] = '\0';
  } else {
    *slash = '\0';
  }
}

/* Stores the absolute path of this executable in exe (PATH_MAX bytes), or returns -1. */
static int find_executable(const char *argv0, char exe[PATH_MAX]) {
  ssize_t length = readlink("/proc/self/exe", exe, PATH_MAX - 1);
  if (length > 0) {
    exe[length] = '\0';
    return 0;
  }

  /* Without /proc, argv[0] locates the executable when the caller ran it by a path. */
  if (strchr(argv0, '/') != NULL && realpath(argv0, exe) != NULL) {
    return 0;
  }
  return -1;
}

static char *join_path(const char *root, const char *relative) {
  char *path = NULL;
  const char *separator = strcmp(root, "/") == 0 ? "" : "/";
  if (asprintf(&path, "%s%s%s", root, separator, relative) < 0) {
    fprintf(stderr, "tandem: out of memory while building the path of %s\n", relative);
    exit(EXIT_CANNOT_EXECUTE);
  }
  return path;
}

static void require_file(const char *path, const char *root) {
  if (access(path, F_OK) == 0) {
    return;
  }
  fprintf(stderr,
          "tandem: runtime file %s is missing (%s). The runtime at %s is incomplete; "
          "install it again with `tandem install %s`.\n",
          path, strerror(errno), root, root);
  exit(EXIT_NOT_FOUND);
}

static void set_variable(const char *name, const char *value) {
  if (setenv(name, value, 1) != 0) {
    fprintf(stderr, "tandem: failed to set %s: %s\n", name, strerror(errno));
    exit(EXIT_CANNOT_EXECUTE);
  }
}

/*
 * Moves the app's value of variable `name` to `saved_name` and unsets `name`, so the program that
 * the launcher starts does not read it, and the supervisor can restore it for its command. When
 * `name` is unset, `saved_name` is unset as well, so a stale value from an outer tandem can never
 * be restored. An empty value moves as an empty value.
 */
static void set_aside(const char *name, const char *saved_name) {
  const char *app_value = getenv(name);
  if (app_value == NULL) {
    unsetenv(saved_name);
    return;
  }
  set_variable(saved_name, app_value);
  unsetenv(name);
}

/*
 * Reads TANDEM_NO_REAPER with the words that tandem's boolean options accept. Unset and empty mean
 * false. Any other value is rejected, so a typo never turns the reaper off or on unnoticed.
 */
static bool reaper_disabled(void) {
  const char *value = getenv("TANDEM_NO_REAPER");
  if (value == NULL || value[0] == '\0') {
    return false;
  }
  static const char *const true_words[] = {"1", "true", "yes"};
  static const char *const false_words[] = {"0", "false", "no"};
  for (size_t i = 0; i < sizeof true_words / sizeof true_words[0]; i++) {
    if (strcasecmp(value, true_words[i]) == 0) {
      return true;
    }
    if (strcasecmp(value, false_words[i]) == 0) {
      return false;
    }
  }
  fprintf(stderr,
          "tandem: TANDEM_NO_REAPER=\"%s\" is invalid: expected 1, true or yes to start the supervisor "
          "without tini, or 0, false, no or unset to start it under tini.\n",
          value);
  exit(EXIT_USAGE);
}

/* Runs ROOT/libexec/ps through the runtime's loader with the caller's arguments. */
static int exec_ps(int argc, char **argv, const char *root) {
  char *loader = join_path(root, "lib/ld-linux-x86-64.so.2");
  char *library_path = join_path(root, "lib");
  char *ps = join_path(root, "libexec/ps");
  require_file(loader, root);
  require_file(ps, root);

  /* 7 fixed arguments before the caller's, then the caller's argv[1..argc-1], then NULL. */
  enum { FIXED_ARGUMENTS = 7 };
  char **arguments = calloc((size_t)argc + FIXED_ARGUMENTS + 1, sizeof(char *));
  if (arguments == NULL) {
    fprintf(stderr, "tandem: out of memory for %d arguments\n", argc);
    return EXIT_CANNOT_EXECUTE;
  }
  int count = 0;
  arguments[count++] = loader;
  arguments[count++] = "--inhibit-cache";
  arguments[count++] = "--library-path";
  arguments[count++] = library_path;
  arguments[count++] = "--argv0";
  arguments[count++] = "ps";
  arguments[count++] = ps;
  for (int i = 1; i < argc; i++) {
    arguments[count++] = argv[i];
  }
  arguments[count] = NULL;

  execv(loader, arguments);
  int error = errno;
  fprintf(stderr, "tandem: failed to execute the loader %s for ps: %s\n", loader, strerror(error));
  return error == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
}

/* Runs tandem's Node.js with the caller's arguments, under tini for `tandem supervise`. */
static int exec_tandem(int argc, char **argv, const char *root) {
  char *loader = join_path(root, "lib/ld-linux-x86-64.so.2");
  char *library_path = join_path(root, "lib");
  char *node = join_path(root, "libexec/node");
  char *cli = join_path(root, "app/cli.js");
  require_file(loader, root);
  require_file(node, root);
  require_file(cli, root);

  /*
   * Options meant for the app's own Node.js (a --require hook, a heap limit) must never change
   * tandem's Node.js. The supervisor sets NODE_OPTIONS from TANDEM_APP_NODE_OPTIONS again for the
   * command it starts.
   */
  set_aside("NODE_OPTIONS", "TANDEM_APP_NODE_OPTIONS");
  /* The app's compile cache settings would point tandem's Node.js away from the runtime's own cache. */
  set_aside("NODE_COMPILE_CACHE", "TANDEM_APP_NODE_COMPILE_CACHE");
  set_aside("NODE_COMPILE_CACHE_PORTABLE", "TANDEM_APP_NODE_COMPILE_CACHE_PORTABLE");
  set_aside("NODE_DISABLE_COMPILE_CACHE", "TANDEM_APP_NODE_DISABLE_COMPILE_CACHE");

  bool supervise = argc > 1 && strcmp(argv[1], "supervise") == 0;
  bool under_reaper = supervise && !reaper_disabled();
  if (supervise) {
    /*
     * tini reads these from its environment. TINI_KILL_PROCESS_GROUP acts like -g, which would send
     * the pod's stop signal straight to the supervised command, and TINI_VERBOSITY above 1 prints
     * tini's messages on the container's stdout. They are meant for a tini that the app runs itself,
     * so the supervisor restores them for the command.
     */
    set_aside("TINI_KILL_PROCESS_GROUP", "TANDEM_APP_TINI_KILL_PROCESS_GROUP");
    set_aside("TINI_VERBOSITY", "TANDEM_APP_TINI_VERBOSITY");
  }

  /* TANDEM_REAPER_PID is set exactly when tini is the parent of the Node.js that starts here. */
  char *tini = NULL;
  if (under_reaper) {
    tini = join_path(root, "libexec/tini");
    require_file(tini, root);
    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    set_variable("TANDEM_REAPER_PID", pid);
  } else {
    unsetenv("TANDEM_REAPER_PID");
  }

  /* Up to 11 fixed arguments before the caller's, then the caller's argv[1..argc-1], then NULL. */
  enum { FIXED_ARGUMENTS = 11 };
  char **arguments = calloc((size_t)argc + FIXED_ARGUMENTS + 1, sizeof(char *));
  if (arguments == NULL) {
    fprintf(stderr, "tandem: out of memory for %d arguments\n", argc);
    return EXIT_CANNOT_EXECUTE;
  }
  int count = 0;
  if (under_reaper) {
    arguments[count++] = tini;
    arguments[count++] = "-s";
    arguments[count++] = "--";
  }
  arguments[count++] = loader;
  arguments[count++] = "--inhibit-cache";
  arguments[count++] = "--library-path";
  arguments[count++] = library_path;
  arguments[count++] = node;
  arguments[count++] = "--no-warnings";
  if (supervise) {
    /*
     * A young generation of at most 1 MiB per semi-space keeps about 3.5 MiB less private memory
     * in each idle supervisor. V8's lite mode saves 2 MiB more, but it turns off the optimizing
     * compilers and made the log copy five times slower (docs/benchmarks.md gives the numbers).
     */
    arguments[count++] = "--max-semi-space-size=1";
  }
  arguments[count++] = cli;
  for (int i = 1; i < argc; i++) {
    arguments[count++] = argv[i];
  }
  arguments[count] = NULL;

  const char *program = under_reaper ? tini : loader;
  execv(program, arguments);
  int error = errno;
  fprintf(stderr, "tandem: failed to execute %s: %s\n", program, strerror(error));
  return error == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
}

/*
 * `tandem exec-listen-pid -- COMMAND ARGS...`: sets LISTEN_PID to this process's PID and execs the
 * command, which keeps the PID. systemd socket activation names in LISTEN_PID the process meant to
 * use the inherited sockets, and only a process between fork and exec can know that PID, so the
 * supervisor starts socket-activated commands through this. Exits 127 or 126 as a shell does when
 * the exec fails.
 */
static int exec_listen_pid(int argc, char **argv) {
  if (argc < 4 || strcmp(argv[2], "--") != 0) {
    fprintf(stderr, "tandem: usage: tandem exec-listen-pid -- COMMAND [ARGS...]\n");
    return EXIT_USAGE;
  }
  char pid[24];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  set_variable("LISTEN_PID", pid);
  execvp(argv[3], &argv[3]);
  int error = errno;
  fprintf(stderr, "tandem: failed to execute %s: %s\n", argv[3], strerror(error));
  return error == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
}

int main(int argc, char **argv) {
  const char *name = argc > 0 ? basename_of(argv[0]) : "";
  bool is_ps = strcmp(name, "ps") == 0;
  if (!is_ps && strcmp(name, "tandem") != 0) {
    fprintf(stderr,
            "tandem: invoked as \"%s\", expected \"tandem\" or \"ps\". The launcher selects the "
            "program by the name it is run under; run ROOT/bin/tandem, ROOT/bin/ps or a link with "
            "one of those names.\n",
            name);
    return EXIT_USAGE;
  }

  char root[PATH_MAX];
  if (find_executable(argv[0], root) != 0) {
    fprintf(stderr,
            "tandem: cannot determine the runtime directory: /proc/self/exe is unreadable and "
            "argv[0] \"%s\" is not a path to this program. Mount /proc or run ROOT/bin/%s by its "
            "path.\n",
            argv[0], name);
    return EXIT_NOT_FOUND;
  }
  strip_last_component(root); /* ROOT/bin/tandem -> ROOT/bin */
  strip_last_component(root); /* ROOT/bin -> ROOT */

  if (!is_ps && argc > 1 && strcmp(argv[1], "exec-listen-pid") == 0) {
    return exec_listen_pid(argc, argv);
  }
  return is_ps ? exec_ps(argc, argv, root) : exec_tandem(argc, argv, root);
}
