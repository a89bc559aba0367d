import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { descendantsOf } from '../child/processes.js';

/**
 * Tells from /proc whether a command's processes serve a listening socket, without sending it any
 * traffic: traffic on a port that two versions share may reach the old one.
 * Reading another process's fd table and fdinfo needs the same rights as ptrace in read mode,
 * which a supervisor has over its own descendants.
 */

const SOCKET_LINK = /^socket:\[(\d+)\]$/;
/** Syscall numbers of accept and accept4 on x86_64 and aarch64, as /proc/PID/syscall shows them. */
const ACCEPT_SYSCALLS = process.arch === 'arm64' ? new Set([202, 242]) : new Set([43, 288]);
/** State of a listening TCP socket in /proc/net/tcp. */
const TCP_LISTEN = '0A';

/** Returns the socket inode behind a file descriptor of a process, or undefined. */
export function socketInode(pid: number | 'self', fd: number): number | undefined {
  try {
    const match = SOCKET_LINK.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Maps each open descriptor of a process to its link target (`socket:[123]`, `anon_inode:[eventpoll]`, a path). */
function descriptorsOf(pid: number): Map<number, string> {
  const descriptors = new Map<number, string>();
  let entries: string[];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return descriptors;
  }
  for (const entry of entries) {
    try {
      descriptors.set(Number(entry), readlinkSync(`/proc/${pid}/fd/${entry}`));
    } catch {
      // The descriptor was closed meanwhile.
    }
  }
  return descriptors;
}

/** Socket inodes that one process watches through its epoll sets, from the `tfd:` lines of their fdinfo. */
function polledInodes(pid: number, descriptors: ReadonlyMap<number, string>): Set<number> {
  const inodes = new Set<number>();
  for (const [fd, target] of descriptors) {
    if (target !== 'anon_inode:[eventpoll]') {
      continue;
    }
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    for (const match of info.matchAll(/^tfd:\s+(\d+)\s/gm)) {
      const inode = SOCKET_LINK.exec(descriptors.get(Number(match[1])) ?? '');
      if (inode) {
        inodes.add(Number(inode[1]));
      }
    }
  }
  return inodes;
}

/** Socket inodes that the threads of one process are blocked on in accept(2). */
function acceptingInodes(pid: number, descriptors: ReadonlyMap<number, string>): Set<number> {
  const inodes = new Set<number>();
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return inodes;
  }
  for (const task of tasks) {
    let fields: string[];
    try {
      fields = readFileSync(`/proc/${pid}/task/${task}/syscall`, 'utf8').trim().split(' ');
    } catch {
      continue;
    }
    if (ACCEPT_SYSCALLS.has(Number(fields[0])) && fields[1] !== undefined) {
      const inode = SOCKET_LINK.exec(descriptors.get(Number(fields[1])) ?? '');
      if (inode) {
        inodes.add(Number(inode[1]));
      }
    }
  }
  return inodes;
}

/**
 * Reports whether the process tree under `rootPid` accepts connections on every listening socket
 * in `inodes`: some process of the tree polls it with epoll or is blocked in accept on it. A
 * process that merely inherited the socket does neither.
 */
export function acceptsOn(rootPid: number, inodes: ReadonlySet<number>): boolean {
  const remaining = new Set(inodes);
  for (const pid of [rootPid, ...descendantsOf(rootPid)]) {
    const descriptors = descriptorsOf(pid);
    for (const inode of [...polledInodes(pid, descriptors), ...acceptingInodes(pid, descriptors)]) {
      remaining.delete(inode);
    }
    if (remaining.size === 0) {
      return true;
    }
  }
  return remaining.size === 0;
}

/** Inodes of the TCP sockets listening on a port in this network namespace, IPv4 and IPv6. */
function listeningInodes(port: number): Set<number> {
  const inodes = new Set<number>();
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // Fields: sl, local address, remote address, state, queues, timer, retransmits, uid, timeout, inode.
      if (fields.length > 9 && fields[3] === TCP_LISTEN && fields[1]!.endsWith(`:${portHex}`)) {
        inodes.add(Number(fields[9]));
      }
    }
  }
  return inodes;
}

/**
 * Reports whether a process of the tree under `rootPid` has a socket of its own that listens on
 * `port`, as a sidecar that binds with SO_REUSEPORT does once it can take connections.
 */
export function listensOn(rootPid: number, port: number): boolean {
  const listening = listeningInodes(port);
  if (listening.size === 0) {
    return false;
  }
  for (const pid of [rootPid, ...descendantsOf(rootPid)]) {
    for (const target of descriptorsOf(pid).values()) {
      const inode = SOCKET_LINK.exec(target);
      if (inode && listening.has(Number(inode[1]))) {
        return true;
      }
    }
  }
  return false;
}

/** Time between two looks at /proc while a hot-upgrade slot's command starts. */
const SERVING_CHECK_INTERVAL_MS = 20;

/** Sockets and ports a command must serve before it counts as ready: inherited sockets it accepts on, ports it binds itself. */
export interface ServingCheck {
  inodes: ReadonlySet<number>;
  ports: readonly number[];
}

/**
 * Waits until the command under `pid` accepts on every inherited socket and listens on every port
 * of `check` (true), or until it exits (false). Returns 'unknown' when its /proc entries cannot be
 * read, and the caller then skips the check with a warning.
 */
export async function waitUntilServing(check: ServingCheck, pid: number, exited: Promise<unknown>): Promise<boolean | 'unknown'> {
  if (check.inodes.size === 0 && check.ports.length === 0) {
    return true;
  }
  try {
    readdirSync(`/proc/${pid}/fd`);
  } catch {
    return 'unknown';
  }
  let commandExited = false;
  void exited.then(() => {
    commandExited = true;
  });
  while (!commandExited) {
    if (acceptsOn(pid, check.inodes) && check.ports.every((port) => listensOn(pid, port))) {
      return !commandExited;
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, SERVING_CHECK_INTERVAL_MS))]);
  }
  return false;
}
