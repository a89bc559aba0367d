/*
 * tandem launcher: the static entry point of a tandem runtime.
 *
 * A runtime is a directory ROOT with this layout:
 *   ROOT/bin/tandem                    this program, linked statically
 *   ROOT/lib/ld-linux-x86-64.so.2      the dynamic loader that Node.js was linked against
 *   ROOT/lib/lib*.so.N                  the shared libraries that Node.js needs
 *   ROOT/libexec/node                  Node.js
 *   ROOT/app/cli.js                    tandem's bundled command line
 *
 * App images may have no glibc and no shell, so the launcher does not rely on anything outside ROOT.
 * It finds ROOT as dirname(dirname(/proc/self/exe)), falling back to realpath(argv[0]) when /proc
 * is not mounted, and then runs
 *   ROOT/lib/ld-linux-x86-64.so.2 --inhibit-cache --library-path ROOT/lib
 *       ROOT/libexec/node --no-warnings ROOT/app/cli.js ARGS...
 * with ARGS passed unchanged. Starting Node.js through the loader with --library-path keeps the
 * runtime's libraries out of the environment, so programs that tandem starts use their own image's
 * libraries. --inhibit-cache keeps the image's /etc/ld.so.cache from pointing the loader at a
 * different libc.
 *
 * The program to run is chosen by the basename of argv[0], like a multi-call binary. The only name
 * is "tandem".
 *
 * Inside tandem, process.execPath is the loader (Node.js reads /proc/self/exe), so code that starts
 * tandem again must run ROOT/bin/tandem, never process.execPath.
 *
 * NOTE: LD_PRELOAD from the app's environment still applies to tandem's Node.js, because the loader
 * reads it. Preloading a library built against another libc can make tandem fail to start.
 *
 * Exit codes of the launcher itself (after a successful exec, the exit code is tandem's):
 *   2    invoked under a name other than "tandem"
 *   126  the loader exists but execve(2) failed (permission, wrong architecture), or memory ran out
 *   127  the runtime root cannot be determined, or a runtime file is missing
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/*
 * Moves the app's NODE_OPTIONS to TANDEM_APP_NODE_OPTIONS and unsets NODE_OPTIONS, so that options
 * meant for the app's own Node.js (a --require hook, a heap limit) never change tandem's Node.js.
 * The supervisor sets NODE_OPTIONS from TANDEM_APP_NODE_OPTIONS again for the command it starts.
 * When NODE_OPTIONS is unset, TANDEM_APP_NODE_OPTIONS is unset as well, so a stale value from an
 * outer tandem can never be restored. An empty NODE_OPTIONS moves as an empty value.
 */
static void set_aside_node_options(void) {
  const char *app_options = getenv("NODE_OPTIONS");
  if (app_options == NULL) {
    unsetenv("TANDEM_APP_NODE_OPTIONS");
    return;
  }
  if (setenv("TANDEM_APP_NODE_OPTIONS", app_options, 1) != 0) {
    fprintf(stderr, "tandem: failed to set TANDEM_APP_NODE_OPTIONS: %s\n", strerror(errno));
    exit(EXIT_CANNOT_EXECUTE);
  }
  unsetenv("NODE_OPTIONS");
}

int main(int argc, char **argv) {
  const char *name = argc > 0 ? basename_of(argv[0]) : "";
  if (strcmp(name, "tandem") != 0) {
    fprintf(stderr,
            "tandem: invoked as \"%s\", expected \"tandem\". The launcher selects the program by "
            "the name it is run under; run ROOT/bin/tandem or a link named tandem.\n",
            name);
    return EXIT_USAGE;
  }

  char root[PATH_MAX];
  if (find_executable(argv[0], root) != 0) {
    fprintf(stderr,
            "tandem: cannot determine the runtime directory: /proc/self/exe is unreadable and "
            "argv[0] \"%s\" is not a path to this program. Mount /proc or run tandem by its path.\n",
            argv[0]);
    return EXIT_NOT_FOUND;
  }
  strip_last_component(root); /* ROOT/bin/tandem -> ROOT/bin */
  strip_last_component(root); /* ROOT/bin -> ROOT */

  char *loader = join_path(root, "lib/ld-linux-x86-64.so.2");
  char *library_path = join_path(root, "lib");
  char *node = join_path(root, "libexec/node");
  char *cli = join_path(root, "app/cli.js");
  require_file(loader, root);
  require_file(node, root);
  require_file(cli, root);

  set_aside_node_options();

  /* 7 fixed arguments before the user's, then the user's argv[1..argc-1], then NULL. */
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
  arguments[count++] = node;
  arguments[count++] = "--no-warnings";
  arguments[count++] = cli;
  for (int i = 1; i < argc; i++) {
    arguments[count++] = argv[i];
  }
  arguments[count] = NULL;

  execv(loader, arguments);
  int error = errno;
  fprintf(stderr, "tandem: failed to execute the loader %s: %s\n", loader, strerror(error));
  return error == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE;
}
