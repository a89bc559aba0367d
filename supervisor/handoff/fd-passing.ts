/**
 * Passes open listening sockets between unrelated processes (two supervisors in different
 * containers of a pod) over a Unix-domain socket, with SCM_RIGHTS. Node.js can send handles only
 * to its own children, so this wraps the Node-API addon compiled from fd-passing.c.
 *
 * The serving side listens with `net.createServer({ pauseOnConnect: true })` on a path and, for
 * each connection, calls sendFdsToSocket. Accepting through the event loop keeps the supervisor
 * responsive to signals and child exits while it waits for a peer. pauseOnConnect keeps libuv from
 * reading the connection, and nothing is written through libuv, so the one synchronous sendmsg of
 * the addon is the only traffic. The receiving side calls receiveFds, which blocks the event loop
 * for at most its timeout.
 *
 * Listening sockets come from createListener rather than net.Server, because a listening
 * net.Server accepts every connection itself, and the connections belong to the app that gets the
 * socket.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** File name of the compiled addon, next to this module in dist/ and in a runtime's `app/`. */
export const FD_PASSING_ADDON = 'fd-passing.node';

/** Node.js's default backlog for net.Server. */
export const DEFAULT_BACKLOG = 511;

/** Linux accepts at most 253 descriptors in one SCM_RIGHTS message (SCM_MAX_FD). */
export const MAX_FDS = 253;

/**
 * How long sendFds waits for room in the socket's send buffer. It waits only when the payload
 * exceeds the buffer (net.core.wmem_default, 208 KiB by default on Linux) and the peer does not
 * read.
 */
export const DEFAULT_SEND_TIMEOUT_MS = 1000;

/** The local address of a socket, from getsockname. An abstract Unix socket's path starts with "@". */
export type SocketAddress = { family: 'IPv4' | 'IPv6'; address: string; port: number } | { family: 'unix'; path: string };

/** Result of receiveFds: the descriptors in the order they were sent, and the payload. */
export interface ReceivedFds {
  fds: number[];
  payload: Buffer;
}

interface FdPassingAddon {
  createListener(host: string, port: number, backlog: number): number;
  sendFds(socketFd: number, fds: number[], payload: Buffer, timeoutMs: number): void;
  receiveFds(socketPath: string, timeoutMs: number): ReceivedFds;
  closeFd(fd: number): void;
  isListeningSocket(fd: number): boolean;
  socketAddress(fd: number): SocketAddress;
}

let addon: FdPassingAddon | undefined;

/**
 * Returns where the addon of a module file is: next to it in dist/ and in the runtime bundle, and
 * in dist/ when the module runs from its TypeScript source (as in the tests).
 */
export function addonPathOf(moduleFile: string): string {
  const directory = path.dirname(moduleFile);
  if (moduleFile.endsWith('.ts')) {
    return path.resolve(directory, '..', '..', 'dist', 'supervisor', 'handoff', FD_PASSING_ADDON);
  }
  return path.join(directory, FD_PASSING_ADDON);
}

/** Loads the addon on first use, so that importing this module costs nothing. */
function loadAddon(): FdPassingAddon {
  if (addon === undefined) {
    const file = addonPathOf(fileURLToPath(import.meta.url));
    if (!existsSync(file)) {
      throw new Error(`fd-passing addon not found at ${file}: run \`npm run build\`, which compiles supervisor/handoff/fd-passing.c with gcc.`);
    }
    addon = createRequire(import.meta.url)(file) as FdPassingAddon;
  }
  return addon;
}

function checkFd(functionName: string, name: string, fd: unknown): asserts fd is number {
  if (!Number.isInteger(fd) || (fd as number) < 0 || (fd as number) > 0x7fffffff) {
    throw new RangeError(`${functionName}: invalid ${name} ${String(fd)}; expected a non-negative integer file descriptor`);
  }
}

function checkTimeout(functionName: string, timeoutMs: unknown): asserts timeoutMs is number {
  if (!Number.isInteger(timeoutMs) || (timeoutMs as number) < 1 || (timeoutMs as number) > 0x7fffffff) {
    throw new RangeError(`${functionName}: invalid timeout ${String(timeoutMs)} ms; expected an integer from 1 to ${0x7fffffff}`);
  }
}

/**
 * Creates a TCP listening socket on a numeric IPv4 or IPv6 address (the address family follows
 * the host) with SO_REUSEADDR, and returns its descriptor. Port 0 picks a free port, which
 * socketAddress reads back. The socket is blocking and close-on-exec: a child that gets it in
 * spawn's `stdio` receives a copy without close-on-exec, and other children do not inherit it.
 * Close it with closeFd.
 */
export function createListener(host: string, port: number, backlog: number = DEFAULT_BACKLOG): number {
  if (typeof host !== 'string' || host === '') {
    throw new TypeError(`createListener: invalid host ${JSON.stringify(host)}; expected a numeric IPv4 or IPv6 address`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`createListener: invalid port ${String(port)}; expected an integer from 0 to 65535`);
  }
  if (!Number.isInteger(backlog) || backlog < 1 || backlog > 0x7fffffff) {
    throw new RangeError(`createListener: invalid backlog ${String(backlog)}; expected a positive integer`);
  }
  return loadAddon().createListener(host, port, backlog);
}

/**
 * Sends descriptors and a payload over a connected Unix stream socket in one SCM_RIGHTS message.
 * The receiver reads until the end of the stream, so the caller closes the connection afterwards
 * (sendFdsToSocket does both). Blocks for at most `timeoutMs` when the send buffer is full.
 */
export function sendFds(socketFd: number, fds: readonly number[], payload: Buffer | string, timeoutMs: number = DEFAULT_SEND_TIMEOUT_MS): void {
  checkFd('sendFds', 'socket fd', socketFd);
  if (!Array.isArray(fds) || fds.length === 0 || fds.length > MAX_FDS) {
    throw new RangeError(`sendFds: invalid fds ${JSON.stringify(fds)}; expected an array of 1 to ${MAX_FDS} file descriptors`);
  }
  for (const fd of fds) {
    checkFd('sendFds', 'fd', fd);
  }
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (!Buffer.isBuffer(bytes) || bytes.length === 0) {
    throw new TypeError('sendFds: invalid payload; expected a non-empty Buffer or string, because SCM_RIGHTS needs at least one data byte');
  }
  checkTimeout('sendFds', timeoutMs);
  loadAddon().sendFds(socketFd, [...fds], bytes, timeoutMs);
}

/**
 * Returns the descriptor of a connected net.Socket from `_handle.fd`, which Node.js does not
 * document. The tests check it for pipe connections on Node.js 20 and 24.
 */
export function socketFdOf(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error(`socketFdOf: the socket has no file descriptor (handle fd ${String(fd)}); expected an open, connected net.Socket`);
  }
  return fd;
}

/**
 * Sends descriptors and a payload on a connection that a net.Server accepted, then destroys the
 * connection so that the receiver reads the end of the stream. The socket is destroyed also when
 * sending fails, and the error is thrown.
 */
export function sendFdsToSocket(socket: Socket, fds: readonly number[], payload: Buffer | string, timeoutMs: number = DEFAULT_SEND_TIMEOUT_MS): void {
  try {
    sendFds(socketFdOf(socket), fds, payload, timeoutMs);
  } finally {
    socket.destroy();
  }
}

/**
 * Connects to a Unix socket path, receives the descriptors and the payload until the peer closes
 * the connection, and closes it. The whole call blocks for at most `timeoutMs`. The received
 * descriptors are close-on-exec, and pass to a child only through spawn's `stdio`.
 *
 * Errors name the path and the errno: `receiveFds: connect /x/y.sock: ENOENT (...)`, ETIMEDOUT
 * for the timeout, EPROTO when the kernel truncated the descriptors (MSG_CTRUNC, for example at
 * RLIMIT_NOFILE), and `code` ERR_NO_FDS with the received `payload` when the peer sent none. On
 * every error the descriptors already received are closed.
 */
export function receiveFds(socketPath: string, timeoutMs: number): ReceivedFds {
  if (typeof socketPath !== 'string' || socketPath === '') {
    throw new TypeError(`receiveFds: invalid socket path ${JSON.stringify(socketPath)}; expected a non-empty path`);
  }
  checkTimeout('receiveFds', timeoutMs);
  return loadAddon().receiveFds(socketPath, timeoutMs);
}

/** Closes a descriptor that createListener or receiveFds returned. */
export function closeFd(fd: number): void {
  checkFd('closeFd', 'fd', fd);
  loadAddon().closeFd(fd);
}

/** Tells whether a descriptor is a listening socket (SO_ACCEPTCONN); false for other files. */
export function isListeningSocket(fd: number): boolean {
  checkFd('isListeningSocket', 'fd', fd);
  return loadAddon().isListeningSocket(fd);
}

/** Returns a socket's local address, to check which listener a received descriptor is. */
export function socketAddress(fd: number): SocketAddress {
  checkFd('socketAddress', 'fd', fd);
  return loadAddon().socketAddress(fd);
}
