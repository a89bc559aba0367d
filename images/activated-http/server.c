/*
 * activated-http: a static HTTP/1.1 server that takes its listening socket by systemd socket
 * activation, the sidecar of tandem's hot-upgrade pod test. It serves on fd 3 when LISTEN_FDS is 1
 * or more and LISTEN_PID, when set, is its own PID.
 *
 *   GET /            responds with "version=$VERSION\n" at once
 *   GET /slow?ms=N   responds the same after N milliseconds (at most 10000)
 *
 * Connections are kept alive until the client closes them. On SIGTERM or SIGINT the server stops
 * accepting and closes its copy of fd 3, so connections still in the accept queue go to the process
 * that shares the socket. Each open connection then gets `Connection: close` with its next response,
 * and an idle one stays open until the client sends a request or closes it. The server exits 0 when
 * no connection is left, or when DRAIN_TIMEOUT_MS (default 8000) has passed since the signal.
 *
 * It logs one line per event on stdout. An invalid environment exits 3 with a message on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
  EXIT_BAD_ENVIRONMENT = 3,
  LISTEN_FD = 3,
  MAX_REQUEST_BYTES = 8192,
  MAX_RESPONSE_BYTES = 512,
  MAX_SLOW_MS = 10000,
  MAX_EVENTS = 64,
};

struct connection {
  int fd;
  struct connection *previous, *next;
  char input[MAX_REQUEST_BYTES];
  size_t input_length;
  /* Body bytes of the current request that are still to be read and discarded. */
  size_t body_remaining;
  char output[MAX_RESPONSE_BYTES];
  size_t output_length, output_sent;
  /* Monotonic time in milliseconds at which a slow response is due, or 0. */
  long long response_due_ms;
  int close_after_response;
  /* Set once the response that closes the connection is sent. The write side is then shut down
   * and the client's input is read until end of file, so that closing never sends a reset. */
  int closing;
};

static const char *version = "unknown";
static int epoll_fd = -1;
static struct connection *connections = NULL;
static int connection_count = 0;
static int draining = 0;
static long long drain_deadline_ms = 0;

static long long now_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static long parse_long(const char *text, long fallback) {
  if (text == NULL || *text == '\0') {
    return fallback;
  }
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  return errno == 0 && *end == '\0' && value >= 0 ? value : -1;
}

static void close_connection(struct connection *connection) {
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, connection->fd, NULL);
  close(connection->fd);
  if (connection->previous != NULL) {
    connection->previous->next = connection->next;
  } else {
    connections = connection->next;
  }
  if (connection->next != NULL) {
    connection->next->previous = connection->previous;
  }
  free(connection);
  connection_count--;
}

static void watch(struct connection *connection, unsigned events) {
  struct epoll_event event = {.events = events, .data.ptr = connection};
  epoll_ctl(epoll_fd, EPOLL_CTL_MOD, connection->fd, &event);
}

/* Sends what is left of the response. Returns 0 when the connection was closed. */
static int flush_output(struct connection *connection) {
  while (connection->output_sent < connection->output_length) {
    ssize_t sent = send(connection->fd, connection->output + connection->output_sent, connection->output_length - connection->output_sent, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) {
      continue;
    }
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      watch(connection, EPOLLIN | EPOLLOUT);
      return 1;
    }
    if (sent < 0) {
      close_connection(connection);
      return 0;
    }
    connection->output_sent += (size_t)sent;
  }
  connection->output_length = connection->output_sent = 0;
  watch(connection, EPOLLIN);
  if (connection->close_after_response) {
    shutdown(connection->fd, SHUT_WR);
    connection->closing = 1;
  }
  return 1;
}

static int respond(struct connection *connection, int status, const char *reason, const char *body) {
  if (draining) {
    connection->close_after_response = 1;
  }
  connection->output_length = (size_t)snprintf(connection->output, sizeof connection->output,
                                               "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nX-Version: %s\r\n%s\r\n%s",
                                               status, reason, strlen(body), version, connection->close_after_response ? "Connection: close\r\n" : "", body);
  connection->output_sent = 0;
  connection->response_due_ms = 0;
  return flush_output(connection);
}

/* Returns the value of a header in the request head, which ends at `end`, or NULL. */
static const char *header_value(const char *head, const char *end, const char *name, size_t *length) {
  size_t name_length = strlen(name);
  for (const char *line = strstr(head, "\r\n"); line != NULL && line + 2 < end; line = strstr(line + 2, "\r\n")) {
    const char *start = line + 2;
    if ((size_t)(end - start) > name_length && strncasecmp(start, name, name_length) == 0 && start[name_length] == ':') {
      const char *value = start + name_length + 1;
      while (*value == ' ' || *value == '\t') {
        value++;
      }
      const char *value_end = strstr(value, "\r\n");
      *length = (size_t)((value_end != NULL ? value_end : end) - value);
      return value;
    }
  }
  return NULL;
}

/*
 * Handles the complete requests in the input buffer in order, while no response is pending.
 * Returns 0 when the connection was closed.
 */
static int handle_requests(struct connection *connection) {
  while (!connection->closing && connection->response_due_ms == 0 && connection->output_length == 0) {
    if (connection->body_remaining > 0) {
      size_t skipped = connection->body_remaining < connection->input_length ? connection->body_remaining : connection->input_length;
      memmove(connection->input, connection->input + skipped, connection->input_length - skipped);
      connection->input_length -= skipped;
      connection->body_remaining -= skipped;
      if (connection->body_remaining > 0) {
        return 1;
      }
    }
    connection->input[connection->input_length] = '\0';
    char *head_end = strstr(connection->input, "\r\n\r\n");
    if (head_end == NULL) {
      if (connection->input_length >= MAX_REQUEST_BYTES - 1) {
        connection->close_after_response = 1;
        return respond(connection, 431, "Request Header Fields Too Large", "request head too large\n");
      }
      return 1;
    }
    head_end += 4;

    char method[16], target[1024], protocol[16];
    if (sscanf(connection->input, "%15s %1023s %15s", method, target, protocol) != 3) {
      connection->close_after_response = 1;
      return respond(connection, 400, "Bad Request", "invalid request line\n");
    }
    size_t length = 0;
    const char *value = header_value(connection->input, head_end, "Connection", &length);
    if (strcmp(protocol, "HTTP/1.1") != 0 || (value != NULL && length == 5 && strncasecmp(value, "close", 5) == 0)) {
      connection->close_after_response = 1;
    }
    if (header_value(connection->input, head_end, "Transfer-Encoding", &length) != NULL) {
      connection->close_after_response = 1;
      return respond(connection, 501, "Not Implemented", "chunked request bodies are not supported\n");
    }
    value = header_value(connection->input, head_end, "Content-Length", &length);
    long body_length = value != NULL ? strtol(value, NULL, 10) : 0;

    size_t head_length = (size_t)(head_end - connection->input);
    memmove(connection->input, head_end, connection->input_length - head_length);
    connection->input_length -= head_length;
    connection->body_remaining = body_length > 0 ? (size_t)body_length : 0;

    char body[128];
    snprintf(body, sizeof body, "version=%s\n", version);
    if (strncmp(target, "/slow?ms=", 9) == 0) {
      long delay_ms = parse_long(target + 9, 0);
      if (delay_ms < 0) {
        delay_ms = 0;
      } else if (delay_ms > MAX_SLOW_MS) {
        delay_ms = MAX_SLOW_MS;
      }
      connection->response_due_ms = now_ms() + delay_ms;
      return 1;
    }
    if (!respond(connection, 200, "OK", body)) {
      return 0;
    }
  }
  return 1;
}

/* Reads what the client sent. Returns 0 when the connection was closed. */
static int read_input(struct connection *connection) {
  for (;;) {
    char discard[4096];
    char *buffer = connection->closing ? discard : connection->input + connection->input_length;
    size_t room = connection->closing ? sizeof discard : MAX_REQUEST_BYTES - 1 - connection->input_length;
    if (room == 0) {
      /* The buffer is full of pipelined requests behind a pending response, so reading stops
       * until flush_output has sent that response and watches for input again. */
      watch(connection, connection->output_length > 0 ? EPOLLOUT : 0);
      return handle_requests(connection);
    }
    ssize_t received = recv(connection->fd, buffer, room, 0);
    if (received < 0 && errno == EINTR) {
      continue;
    }
    if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return connection->closing ? 1 : handle_requests(connection);
    }
    if (received <= 0) {
      /* End of file or an error: the client is done with this connection. */
      close_connection(connection);
      return 0;
    }
    if (!connection->closing) {
      connection->input_length += (size_t)received;
    }
  }
}

static void accept_connections(void) {
  for (;;) {
    int fd = accept4(LISTEN_FD, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      /* EAGAIN: another process sharing the socket took the connection, or none is left. */
      if (errno != EINTR && errno != ECONNABORTED) {
        return;
      }
      continue;
    }
    struct connection *connection = calloc(1, sizeof *connection);
    if (connection == NULL) {
      close(fd);
      continue;
    }
    connection->fd = fd;
    connection->next = connections;
    if (connections != NULL) {
      connections->previous = connection;
    }
    connections = connection;
    connection_count++;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = connection};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
  }
}

static void start_drain(int signal_number) {
  draining = 1;
  long timeout_ms = parse_long(getenv("DRAIN_TIMEOUT_MS"), 8000);
  drain_deadline_ms = now_ms() + (timeout_ms < 0 ? 8000 : timeout_ms);
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, LISTEN_FD, NULL);
  close(LISTEN_FD);
  dprintf(1, "activated-http: received %s; stopped accepting, draining %d connections\n", signal_number == SIGTERM ? "SIGTERM" : "SIGINT", connection_count);
}

/* Responds to the slow requests that are due. Returns the time in ms until the next one or the
 * drain deadline, or -1 when there is neither. */
static int respond_to_due_requests(void) {
  long long now = now_ms();
  long long next = -1;
  for (struct connection *connection = connections, *following; connection != NULL; connection = following) {
    following = connection->next;
    if (connection->response_due_ms == 0) {
      continue;
    }
    if (connection->response_due_ms <= now) {
      char body[128];
      snprintf(body, sizeof body, "version=%s\n", version);
      if (respond(connection, 200, "OK", body)) {
        handle_requests(connection);
      }
      continue;
    }
    if (next < 0 || connection->response_due_ms - now < next) {
      next = connection->response_due_ms - now;
    }
  }
  if (draining) {
    long long until_deadline = drain_deadline_ms - now;
    if (next < 0 || until_deadline < next) {
      next = until_deadline < 0 ? 0 : until_deadline;
    }
  }
  return (int)next;
}

static void check_environment(void) {
  long fds = parse_long(getenv("LISTEN_FDS"), 0);
  if (fds < 1) {
    dprintf(2, "activated-http: LISTEN_FDS is \"%s\"; expected 1 or more sockets from fd 3 (systemd socket activation)\n", getenv("LISTEN_FDS") ? getenv("LISTEN_FDS") : "");
    exit(EXIT_BAD_ENVIRONMENT);
  }
  const char *listen_pid = getenv("LISTEN_PID");
  if (listen_pid != NULL && parse_long(listen_pid, 0) != (long)getpid()) {
    dprintf(2, "activated-http: LISTEN_PID is %s, not this process (%d)\n", listen_pid, (int)getpid());
    exit(EXIT_BAD_ENVIRONMENT);
  }
  int accepting = 0;
  socklen_t size = sizeof accepting;
  if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &size) != 0 || !accepting) {
    dprintf(2, "activated-http: fd 3 is not a listening socket\n");
    exit(EXIT_BAD_ENVIRONMENT);
  }
}

int main(void) {
  if (getenv("VERSION") != NULL) {
    version = getenv("VERSION");
  }
  check_environment();

  /* Non-blocking, because the old and the new version poll the same socket during a hand-off and
   * only one of them gets each connection. */
  fcntl(LISTEN_FD, F_SETFL, fcntl(LISTEN_FD, F_GETFL) | O_NONBLOCK);
  fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC);

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, NULL);
  int signal_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);

  /* The listening socket is in an epoll set: tandem's supervisor reads that from /proc as the sign
   * that the command accepts connections, before it reports the slot ready. */
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event listen_event = {.events = EPOLLIN, .data.ptr = NULL};
  struct epoll_event signal_event = {.events = EPOLLIN, .data.ptr = &signal_fd};
  if (signal_fd < 0 || epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, LISTEN_FD, &listen_event) != 0 ||
      epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd, &signal_event) != 0) {
    dprintf(2, "activated-http: setting up epoll failed: %s\n", strerror(errno));
    return 1;
  }
  const char *names = getenv("LISTEN_FDNAMES");
  dprintf(1, "activated-http: serving version %s on fd 3 (%s) as pid %d, uid %d\n", version, names ? names : "unnamed", (int)getpid(), (int)getuid());

  for (;;) {
    int timeout_ms = respond_to_due_requests();
    if (draining && (connection_count == 0 || now_ms() >= drain_deadline_ms)) {
      dprintf(1, "activated-http: drained, %d connections left open; exiting 0\n", connection_count);
      return 0;
    }
    struct epoll_event events[MAX_EVENTS];
    int count = epoll_wait(epoll_fd, events, MAX_EVENTS, timeout_ms);
    for (int i = 0; i < count; i++) {
      void *source = events[i].data.ptr;
      if (source == NULL) {
        if (!draining) {
          accept_connections();
        }
      } else if (source == &signal_fd) {
        struct signalfd_siginfo info;
        while (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
          if (!draining) {
            start_drain((int)info.ssi_signo);
          }
        }
      } else {
        struct connection *connection = source;
        if ((events[i].events & EPOLLOUT) && (!flush_output(connection) || !handle_requests(connection))) {
          continue;
        }
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          read_input(connection);
        }
      }
    }
  }
}
