/*
 * idle: the whole userland of tandem's test images without a shell (images/distroless) and the
 * musl-linked program of images/musl. It prints one line per event to stdout and never reads input.
 *
 *   idle                       wait until SIGTERM or SIGINT arrives, then exit 0
 *   idle --ignore-term         print and ignore every SIGTERM and SIGINT, so only SIGKILL ends it
 *   idle --exit CODE [--after MS]
 *                              exit with CODE (0 to 255) after MS milliseconds (default 0); a
 *                              SIGTERM or SIGINT before then ends it early with exit 0
 *
 * Invalid arguments exit 2 with a message on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 2 };

static long parse_number(const char *text, const char *option, long max) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0 || value > max) {
    dprintf(2, "idle: invalid value for %s: \"%s\" (expected an integer from 0 to %ld)\n", option, text, max);
    exit(EXIT_USAGE);
  }
  return value;
}

int main(int argc, char **argv) {
  int ignore_term = 0;
  long exit_code = -1;
  long after_ms = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--ignore-term") == 0) {
      ignore_term = 1;
    } else if (strcmp(argv[i], "--exit") == 0 && i + 1 < argc) {
      exit_code = parse_number(argv[++i], "--exit", 255);
    } else if (strcmp(argv[i], "--after") == 0 && i + 1 < argc) {
      after_ms = parse_number(argv[++i], "--after", 86400000L);
    } else {
      dprintf(2, "idle: invalid argument \"%s\". Usage: idle [--ignore-term] [--exit CODE [--after MS]]\n", argv[i]);
      return EXIT_USAGE;
    }
  }

  /* The signals are blocked and taken with sigtimedwait, so no handler races the main loop. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, NULL);
  dprintf(1, "idle: started as pid %d, uid %d\n", (int)getpid(), (int)getuid());

  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += after_ms / 1000;
  deadline.tv_nsec += (after_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1000000000L;
  }

  for (;;) {
    struct timespec timeout = {3600, 0};
    if (exit_code >= 0) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long long remaining_ns = (long long)(deadline.tv_sec - now.tv_sec) * 1000000000LL + (deadline.tv_nsec - now.tv_nsec);
      if (remaining_ns <= 0) {
        dprintf(1, "idle: exiting with code %ld\n", exit_code);
        return (int)exit_code;
      }
      timeout.tv_sec = remaining_ns / 1000000000LL;
      timeout.tv_nsec = remaining_ns % 1000000000LL;
    }

    int signal_number = sigtimedwait(&stop_signals, NULL, &timeout);
    if (signal_number < 0) {
      continue; /* EAGAIN at the timeout, or EINTR */
    }
    const char *name = signal_number == SIGTERM ? "SIGTERM" : "SIGINT";
    if (ignore_term) {
      dprintf(1, "idle: ignoring %s\n", name);
      continue;
    }
    dprintf(1, "idle: received %s, exiting 0\n", name);
    return 0;
  }
}
