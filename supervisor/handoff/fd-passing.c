/*
 * Node-API addon that passes open file descriptors between unrelated processes over a Unix-domain
 * stream socket with SCM_RIGHTS, and creates the listening TCP sockets that are passed. Node.js can
 * send handles only to its own children over an IPC channel, so a supervisor in another container
 * of the pod needs this.
 *
 * Only Node-API is used (no V8 or libuv headers), so one binary loads in every Node.js release
 * that supports Node-API version 8, among them Node.js 20 (the tests) and 24 (the runtime).
 * The TypeScript wrapper, fd-passing.ts, validates the arguments, and this file checks only what
 * it needs to stay memory-safe.
 *
 * Errors are thrown as Error objects with the message "<function>: <syscall> <subject>: <CODE>
 * (<description>)" and the properties `code`, `errno` (negative, as in Node.js's own system
 * errors), `syscall` and, for socket paths, `path`.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>

/* Linux accepts at most this many descriptors in one SCM_RIGHTS message (SCM_MAX_FD in
 * include/net/scm.h, which user-space headers do not export). */
#define MAX_FDS_PER_MESSAGE 253

/* receiveFds rejects a payload longer than this, so a misbehaving peer cannot make it allocate
 * without bound. The payload is a small JSON description of the descriptors. */
#define MAX_PAYLOAD_BYTES (1024 * 1024)

#define INITIAL_PAYLOAD_CAPACITY 4096

/* Throws the pending Node-API error (if any) and returns NULL from the calling function. */
#define CHECK_NAPI(env, call)                                                   \
  do {                                                                          \
    if ((call) != napi_ok) {                                                    \
      throw_napi_failure(env, #call);                                           \
      return NULL;                                                              \
    }                                                                           \
  } while (0)

static void throw_napi_failure(napi_env env, const char *call) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    const napi_extended_error_info *info = NULL;
    napi_get_last_error_info(env, &info);
    char message[512];
    snprintf(message, sizeof message, "fd-passing: %s failed: %s", call,
             info != NULL && info->error_message != NULL ? info->error_message : "unknown Node-API error");
    napi_throw_error(env, NULL, message);
  }
}

static void set_string_property(napi_env env, napi_value object, const char *name, const char *value) {
  napi_value string;
  if (napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &string) == napi_ok) {
    napi_set_named_property(env, object, name, string);
  }
}

/*
 * Throws an Error for a failed system call. `code` overrides the errno name (ETIMEDOUT for a
 * receive timeout, which the kernel reports as EAGAIN) and `detail` the strerror text; both may be
 * NULL. `path` is set as the error's `path` property when it is not NULL.
 */
static void throw_system_error(napi_env env, const char *function, const char *syscall, const char *subject, int error_number,
                               const char *code, const char *detail, const char *path) {
  const char *name = code != NULL ? code : strerrorname_np(error_number);
  char unknown_name[32];
  if (name == NULL) {
    snprintf(unknown_name, sizeof unknown_name, "E%d", error_number);
    name = unknown_name;
  }

  char message[1024];
  snprintf(message, sizeof message, "%s: %s %s: %s (%s)", function, syscall, subject, name,
           detail != NULL ? detail : strerror(error_number));

  napi_value code_value, message_value, error, errno_value;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_value) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value) != napi_ok ||
      napi_create_error(env, code_value, message_value, &error) != napi_ok) {
    napi_throw_error(env, name, message);
    return;
  }
  if (napi_create_int32(env, -error_number, &errno_value) == napi_ok) {
    napi_set_named_property(env, error, "errno", errno_value);
  }
  set_string_property(env, error, "syscall", syscall);
  if (path != NULL) {
    set_string_property(env, error, "path", path);
  }
  napi_throw(env, error);
}

/* Throws an Error with a `code` property for a failure that has no errno. */
static void throw_coded_error(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
}

static int64_t monotonic_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Sets SO_RCVTIMEO or SO_SNDTIMEO. A zero timeval means "wait forever", so at least 1 ms is set. */
static int set_socket_timeout(int fd, int option, int64_t milliseconds) {
  if (milliseconds < 1) {
    milliseconds = 1;
  }
  struct timeval timeout = {.tv_sec = milliseconds / 1000, .tv_usec = (milliseconds % 1000) * 1000};
  return setsockopt(fd, SOL_SOCKET, option, &timeout, sizeof timeout);
}

static void close_all(const int *fds, size_t count) {
  for (size_t i = 0; i < count; i++) {
    close(fds[i]);
  }
}

/* Reads a string argument into a malloc'ed buffer, or throws and returns NULL. */
static char *get_string(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    throw_napi_failure(env, "napi_get_value_string_utf8");
    return NULL;
  }
  char *text = malloc(length + 1);
  if (text == NULL) {
    napi_throw_error(env, "ENOMEM", "fd-passing: out of memory");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, value, text, length + 1, &length) != napi_ok) {
    free(text);
    throw_napi_failure(env, "napi_get_value_string_utf8");
    return NULL;
  }
  return text;
}

/*
 * createListener(host: string, port: number, backlog: number): number
 *
 * Creates a TCP socket for a numeric IPv4 or IPv6 address, sets SO_REUSEADDR, binds and listens,
 * and returns the descriptor. The socket is blocking and close-on-exec: the process that owns it
 * never accepts on it, an app that receives it in spawn's stdio gets a copy without close-on-exec
 * (dup2 clears the flag), and other children do not inherit it.
 */
static napi_value create_listener(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t port = 0, backlog = 0;
  CHECK_NAPI(env, napi_get_value_int32(env, argv[1], &port));
  CHECK_NAPI(env, napi_get_value_int32(env, argv[2], &backlog));
  char *host = get_string(env, argv[0]);
  if (host == NULL) {
    return NULL;
  }

  char subject[INET6_ADDRSTRLEN + 64];
  snprintf(subject, sizeof subject, strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d", host, port);
  char service[16];
  snprintf(service, sizeof service, "%d", port);

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *address = NULL;
  int status = getaddrinfo(host, service, &hints, &address);
  free(host);
  if (status != 0) {
    char message[256];
    snprintf(message, sizeof message, "createListener: invalid address %s: %s; expected a numeric IPv4 or IPv6 address",
             subject, gai_strerror(status));
    throw_coded_error(env, "ERR_INVALID_ARG_VALUE", message);
    return NULL;
  }

  int fd = socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int error_number = errno;
    freeaddrinfo(address);
    throw_system_error(env, "createListener", "socket", subject, error_number, NULL, NULL, NULL);
    return NULL;
  }
  int on = 1;
  const char *failed = NULL;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) {
    failed = "setsockopt(SO_REUSEADDR)";
  } else if (bind(fd, address->ai_addr, address->ai_addrlen) < 0) {
    failed = "bind";
  } else if (listen(fd, backlog) < 0) {
    failed = "listen";
  }
  freeaddrinfo(address);
  if (failed != NULL) {
    int error_number = errno;
    close(fd);
    throw_system_error(env, "createListener", failed, subject, error_number, NULL, NULL, NULL);
    return NULL;
  }

  napi_value result;
  CHECK_NAPI(env, napi_create_int32(env, fd, &result));
  return result;
}

/*
 * Waits until `fd` is writable or `deadline` passes. Returns 0, or -1 with errno set (ETIMEDOUT on
 * timeout).
 */
static int wait_writable(int fd, int64_t deadline) {
  for (;;) {
    int64_t remaining = deadline - monotonic_ms();
    if (remaining <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct pollfd entry = {.fd = fd, .events = POLLOUT};
    int ready = poll(&entry, 1, remaining > INT32_MAX ? INT32_MAX : (int)remaining);
    if (ready > 0) {
      return 0;
    }
    if (ready < 0 && errno != EINTR) {
      return -1;
    }
  }
}

/*
 * Sends `length` bytes, the first sendmsg carrying `control` (if not NULL). A stream socket may
 * take only part of the data per call, so the rest follows in more calls. A non-blocking socket
 * that is full is polled until `deadline`. Returns the name of the failed call, or NULL.
 */
static const char *send_all(int fd, const char *data, size_t length, void *control, size_t control_length, int64_t deadline) {
  size_t sent = 0;
  while (sent < length) {
    struct iovec vector = {.iov_base = (void *)(data + sent), .iov_len = length - sent};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1};
    if (sent == 0 && control != NULL) {
      message.msg_control = control;
      message.msg_controllen = control_length;
    }
    ssize_t count = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (count >= 0) {
      sent += (size_t)count;
      continue;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (wait_writable(fd, deadline) < 0) {
        return "poll";
      }
      continue;
    }
    return "sendmsg";
  }
  return NULL;
}

/*
 * sendFds(socketFd: number, fds: number[], payload: Buffer, timeoutMs: number): void
 *
 * Sends the descriptors in one SCM_RIGHTS control message attached to the first bytes of the
 * payload. The caller closes the connection afterwards, because receiveFds reads until the end of
 * the stream.
 */
static napi_value send_fds(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t socket_fd = 0, timeout_ms = 0;
  CHECK_NAPI(env, napi_get_value_int32(env, argv[0], &socket_fd));
  CHECK_NAPI(env, napi_get_value_int32(env, argv[3], &timeout_ms));
  uint32_t count = 0;
  CHECK_NAPI(env, napi_get_array_length(env, argv[1], &count));
  void *payload = NULL;
  size_t payload_length = 0;
  CHECK_NAPI(env, napi_get_buffer_info(env, argv[2], &payload, &payload_length));

  if (count == 0 || count > MAX_FDS_PER_MESSAGE) {
    char message[128];
    snprintf(message, sizeof message, "sendFds: %u descriptors; expected 1 to %d", count, MAX_FDS_PER_MESSAGE);
    throw_coded_error(env, "ERR_INVALID_ARG_VALUE", message);
    return NULL;
  }
  if (payload_length == 0) {
    throw_coded_error(env, "ERR_INVALID_ARG_VALUE", "sendFds: the payload is empty; SCM_RIGHTS needs at least one data byte");
    return NULL;
  }

  union {
    struct cmsghdr align;
    char buffer[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_MESSAGE)];
  } control;
  memset(&control, 0, sizeof control);
  struct cmsghdr *header = (struct cmsghdr *)control.buffer;
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * count);
  int *slots = (int *)CMSG_DATA(header);
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    int32_t fd = 0;
    CHECK_NAPI(env, napi_get_element(env, argv[1], i, &element));
    CHECK_NAPI(env, napi_get_value_int32(env, element, &fd));
    memcpy(&slots[i], &fd, sizeof fd);
  }

  char subject[32];
  snprintf(subject, sizeof subject, "fd %d", socket_fd);
  const char *failed = send_all(socket_fd, payload, payload_length, control.buffer, CMSG_SPACE(sizeof(int) * count),
                                monotonic_ms() + timeout_ms);
  if (failed != NULL) {
    int error_number = errno;
    char detail[64];
    snprintf(detail, sizeof detail, "the peer did not read within %d ms", timeout_ms);
    throw_system_error(env, "sendFds", failed, subject, error_number, NULL, error_number == ETIMEDOUT ? detail : NULL, NULL);
    return NULL;
  }
  return NULL;
}

/* A growing array of received descriptors. */
struct fd_list {
  int *items;
  size_t count;
  size_t capacity;
};

/* Appends the SCM_RIGHTS descriptors of a received message. Returns -1 when out of memory, after
 * closing the descriptors that could not be stored. */
static int collect_fds(struct fd_list *list, struct msghdr *message) {
  for (struct cmsghdr *header = CMSG_FIRSTHDR(message); header != NULL; header = CMSG_NXTHDR(message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char *data = CMSG_DATA(header);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, data + i * sizeof(int), sizeof fd);
      if (list->count == list->capacity) {
        size_t capacity = list->capacity == 0 ? 16 : list->capacity * 2;
        int *items = realloc(list->items, capacity * sizeof(int));
        if (items == NULL) {
          for (size_t j = i; j < count; j++) {
            memcpy(&fd, data + j * sizeof(int), sizeof fd);
            close(fd);
          }
          return -1;
        }
        list->items = items;
        list->capacity = capacity;
      }
      list->items[list->count++] = fd;
    }
  }
  return 0;
}

/* State of one receiveFds call, released by finish_receive. */
struct receive {
  const char *path;
  int socket_fd;
  char *payload;
  size_t length;
  size_t capacity;
  struct fd_list fds;
};

static void finish_receive(struct receive *state, bool keep_fds) {
  if (state->socket_fd >= 0) {
    close(state->socket_fd);
  }
  if (!keep_fds) {
    close_all(state->fds.items, state->fds.count);
  }
  free(state->fds.items);
  free(state->payload);
}

/* Connects to the path within the deadline. SO_SNDTIMEO bounds a connect that waits for room in a
 * full listen backlog. Returns the failed call's name, or NULL. */
static const char *connect_unix(struct receive *state, int64_t deadline) {
  state->socket_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (state->socket_fd < 0) {
    return "socket";
  }
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  memcpy(address.sun_path, state->path, strlen(state->path));
  for (;;) {
    if (set_socket_timeout(state->socket_fd, SO_SNDTIMEO, deadline - monotonic_ms()) < 0) {
      return "setsockopt(SO_SNDTIMEO)";
    }
    if (connect(state->socket_fd, (struct sockaddr *)&address, sizeof address) == 0) {
      return NULL;
    }
    if (errno == EINTR && monotonic_ms() < deadline) {
      continue;
    }
    if (errno == EAGAIN) {
      errno = ETIMEDOUT;
    }
    return "connect";
  }
}

/* Reads until the peer closes the connection, collecting the payload and every descriptor.
 * Returns the failed call's name, or NULL. Failures without an errno set errno to EPROTO or
 * EMSGSIZE. */
static const char *read_message(struct receive *state, int64_t deadline) {
  union {
    struct cmsghdr align;
    char buffer[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_MESSAGE)];
  } control;

  for (;;) {
    int64_t remaining = deadline - monotonic_ms();
    if (remaining <= 0) {
      errno = ETIMEDOUT;
      return "recvmsg";
    }
    if (set_socket_timeout(state->socket_fd, SO_RCVTIMEO, remaining) < 0) {
      return "setsockopt(SO_RCVTIMEO)";
    }

    if (state->length == state->capacity) {
      if (state->capacity >= MAX_PAYLOAD_BYTES) {
        errno = EMSGSIZE;
        return "recvmsg";
      }
      size_t capacity = state->capacity == 0 ? INITIAL_PAYLOAD_CAPACITY : state->capacity * 2;
      char *payload = realloc(state->payload, capacity);
      if (payload == NULL) {
        errno = ENOMEM;
        return "realloc";
      }
      state->payload = payload;
      state->capacity = capacity;
    }

    struct iovec vector = {.iov_base = state->payload + state->length, .iov_len = state->capacity - state->length};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer};
    // MSG_CMSG_CLOEXEC sets close-on-exec on the received descriptors atomically.
    ssize_t count = recvmsg(state->socket_fd, &message, MSG_CMSG_CLOEXEC);
    if (count < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        errno = ETIMEDOUT;
      }
      return "recvmsg";
    }
    if (collect_fds(&state->fds, &message) < 0) {
      errno = ENOMEM;
      return "realloc";
    }
    // The kernel sets MSG_CTRUNC when the control buffer was too small or when it could not
    // install every descriptor (RLIMIT_NOFILE reached), so some descriptors were lost.
    if (message.msg_flags & MSG_CTRUNC) {
      errno = EPROTO;
      return "recvmsg(MSG_CTRUNC)";
    }
    if (count == 0) {
      return NULL;
    }
    state->length += (size_t)count;
  }
}

static napi_value build_receive_result(napi_env env, struct receive *state) {
  napi_value result, fds, payload;
  CHECK_NAPI(env, napi_create_object(env, &result));
  CHECK_NAPI(env, napi_create_array_with_length(env, state->fds.count, &fds));
  for (size_t i = 0; i < state->fds.count; i++) {
    napi_value fd;
    CHECK_NAPI(env, napi_create_int32(env, state->fds.items[i], &fd));
    CHECK_NAPI(env, napi_set_element(env, fds, (uint32_t)i, fd));
  }
  CHECK_NAPI(env, napi_create_buffer_copy(env, state->length, state->payload, NULL, &payload));
  CHECK_NAPI(env, napi_set_named_property(env, result, "fds", fds));
  CHECK_NAPI(env, napi_set_named_property(env, result, "payload", payload));
  return result;
}

/*
 * receiveFds(socketPath: string, timeoutMs: number): { fds: number[]; payload: Buffer }
 *
 * Connects, reads the payload and the descriptors until the peer closes the connection, and
 * closes it. The whole call, connect included, ends within timeoutMs. The received descriptors
 * are close-on-exec. On any error every received descriptor is closed.
 */
static napi_value receive_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t timeout_ms = 0;
  CHECK_NAPI(env, napi_get_value_int32(env, argv[1], &timeout_ms));
  char *path = get_string(env, argv[0]);
  if (path == NULL) {
    return NULL;
  }
  size_t path_length = strlen(path);
  if (path_length == 0 || path_length >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
    throw_system_error(env, "receiveFds", "connect", path, ENAMETOOLONG, NULL,
                       path_length == 0 ? "the socket path is empty" : "a socket path has at most 107 bytes", path);
    free(path);
    return NULL;
  }

  struct receive state = {.path = path, .socket_fd = -1};
  int64_t deadline = monotonic_ms() + timeout_ms;
  const char *failed = connect_unix(&state, deadline);
  if (failed == NULL) {
    failed = read_message(&state, deadline);
  }
  if (failed != NULL) {
    int error_number = errno;
    char detail[64];
    snprintf(detail, sizeof detail, "timed out after %d ms", timeout_ms);
    const char *description = error_number == ETIMEDOUT                          ? detail
                              : strcmp(failed, "recvmsg(MSG_CTRUNC)") == 0        ? "control data truncated, so descriptors were lost; check RLIMIT_NOFILE"
                              : error_number == EMSGSIZE                          ? "payload over 1 MiB"
                                                                                  : NULL;
    finish_receive(&state, false);
    throw_system_error(env, "receiveFds", failed, path, error_number, NULL, description, path);
    free(path);
    return NULL;
  }

  if (state.fds.count == 0) {
    // The payload may explain why the peer sent nothing, so it is attached to the error.
    char message[1024];
    snprintf(message, sizeof message, "receiveFds: %s: the peer closed the connection without sending file descriptors (%zu payload bytes)",
             path, state.length);
    napi_value code, text, error, payload;
    CHECK_NAPI(env, napi_create_string_utf8(env, "ERR_NO_FDS", NAPI_AUTO_LENGTH, &code));
    CHECK_NAPI(env, napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text));
    CHECK_NAPI(env, napi_create_error(env, code, text, &error));
    CHECK_NAPI(env, napi_create_buffer_copy(env, state.length, state.payload, NULL, &payload));
    CHECK_NAPI(env, napi_set_named_property(env, error, "payload", payload));
    set_string_property(env, error, "path", path);
    finish_receive(&state, false);
    free(path);
    napi_throw(env, error);
    return NULL;
  }

  napi_value result = build_receive_result(env, &state);
  finish_receive(&state, result != NULL);
  free(path);
  return result;
}

/* closeFd(fd: number): void. EINTR still closes the descriptor on Linux, so it is not an error. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = 0;
  CHECK_NAPI(env, napi_get_value_int32(env, argv[0], &fd));
  if (close(fd) < 0 && errno != EINTR) {
    char subject[32];
    snprintf(subject, sizeof subject, "fd %d", fd);
    throw_system_error(env, "closeFd", "close", subject, errno, NULL, NULL, NULL);
  }
  return NULL;
}

/* isListeningSocket(fd: number): boolean, from SO_ACCEPTCONN. A descriptor that is not a socket
 * returns false; an invalid one throws EBADF. */
static napi_value is_listening_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = 0;
  CHECK_NAPI(env, napi_get_value_int32(env, argv[0], &fd));
  int accepting = 0;
  socklen_t length = sizeof accepting;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) < 0) {
    if (errno != ENOTSOCK) {
      char subject[32];
      snprintf(subject, sizeof subject, "fd %d", fd);
      throw_system_error(env, "isListeningSocket", "getsockopt(SO_ACCEPTCONN)", subject, errno, NULL, NULL, NULL);
      return NULL;
    }
    accepting = 0;
  }
  napi_value result;
  CHECK_NAPI(env, napi_get_boolean(env, accepting != 0, &result));
  return result;
}

/*
 * socketAddress(fd: number): { family: 'IPv4' | 'IPv6', address, port } | { family: 'unix', path }
 *
 * Returns the local address from getsockname. An abstract Unix socket's path starts with "@".
 */
static napi_value socket_address(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = 0;
  CHECK_NAPI(env, napi_get_value_int32(env, argv[0], &fd));

  char subject[32];
  snprintf(subject, sizeof subject, "fd %d", fd);
  struct sockaddr_storage storage;
  socklen_t length = sizeof storage;
  if (getsockname(fd, (struct sockaddr *)&storage, &length) < 0) {
    throw_system_error(env, "socketAddress", "getsockname", subject, errno, NULL, NULL, NULL);
    return NULL;
  }

  napi_value result, port;
  CHECK_NAPI(env, napi_create_object(env, &result));
  char text[INET6_ADDRSTRLEN];
  if (storage.ss_family == AF_INET) {
    struct sockaddr_in *inet = (struct sockaddr_in *)&storage;
    inet_ntop(AF_INET, &inet->sin_addr, text, sizeof text);
    set_string_property(env, result, "family", "IPv4");
    set_string_property(env, result, "address", text);
    CHECK_NAPI(env, napi_create_int32(env, ntohs(inet->sin_port), &port));
    CHECK_NAPI(env, napi_set_named_property(env, result, "port", port));
  } else if (storage.ss_family == AF_INET6) {
    struct sockaddr_in6 *inet6 = (struct sockaddr_in6 *)&storage;
    inet_ntop(AF_INET6, &inet6->sin6_addr, text, sizeof text);
    set_string_property(env, result, "family", "IPv6");
    set_string_property(env, result, "address", text);
    CHECK_NAPI(env, napi_create_int32(env, ntohs(inet6->sin6_port), &port));
    CHECK_NAPI(env, napi_set_named_property(env, result, "port", port));
  } else if (storage.ss_family == AF_UNIX) {
    struct sockaddr_un *unix_address = (struct sockaddr_un *)&storage;
    size_t path_length = length > offsetof(struct sockaddr_un, sun_path) ? length - offsetof(struct sockaddr_un, sun_path) : 0;
    char path[sizeof unix_address->sun_path + 1];
    memcpy(path, unix_address->sun_path, path_length);
    path[path_length] = '\0';
    if (path_length > 0 && path[0] == '\0') {
      path[0] = '@';
    }
    set_string_property(env, result, "family", "unix");
    set_string_property(env, result, "path", path);
  } else {
    throw_system_error(env, "socketAddress", "getsockname", subject, EAFNOSUPPORT, NULL, "not an IPv4, IPv6 or Unix socket", NULL);
    return NULL;
  }
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor functions[] = {
      {"createListener", NULL, create_listener, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendFds", NULL, send_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"receiveFds", NULL, receive_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isListeningSocket", NULL, is_listening_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketAddress", NULL, socket_address, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions) != napi_ok) {
    return NULL;
  }
  return exports;
}
