import { chmod, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import type { Logger } from '../log.js';
import { stateDir } from '../protocol/pod.js';
import { closeFd, createListener, receiveFds, sendFdsToSocket } from './fd-passing.js';
import { socketInode } from './serving.js';
import { describeListener, listenerName, type ListenSpec } from './listen-spec.js';

/** Time to receive the sockets from the other slot, which sends them at once while it runs. */
const RECEIVE_TIMEOUT_MS = 2000;
/** Time between two attempts to bind a port that is still in use. */
const BIND_RETRY_INTERVAL_MS = 100;

/** A port that another socket still listens on after the bind timeout. */
export class PortInUseError extends Error {}

/** Unix socket on which a slot's supervisor hands its listening sockets to the other slot. */
export function handoffSocketFile(sharedDir: string, name: string): string {
  return path.join(stateDir(sharedDir), `${name}.fds.sock`);
}

/** Description of the handed sockets, sent with them so the receiver can check it got what it asked for. */
interface HandoffPayload {
  names: string[];
}

/** The listening sockets of one slot: those it owns (in fd order from 3) and the ports its command binds itself. */
export class Listeners {
  private server: Server | undefined;

  private constructor(
    readonly owned: ReadonlyArray<{ spec: ListenSpec & { kind: 'tcp' }; fd: number }>,
    readonly reusedPorts: readonly number[],
  ) {}

  /**
   * Opens the owned sockets, or receives them from the other slot when `peerSocket` is given and
   * the peer sends them. A peer that sends none (it died, or never owned them) is logged, and the
   * sockets are opened here instead. A port still in use, for example by an old process that
   * ignores its stop signal, is retried until `bindTimeoutMs`.
   */
  static async open(specs: readonly ListenSpec[], peerSocket: string | undefined, bindTimeoutMs: number, log: Logger): Promise<Listeners> {
    const tcp = specs.filter((spec): spec is ListenSpec & { kind: 'tcp' } => spec.kind === 'tcp');
    const reusedPorts = specs.filter((spec) => spec.kind === 'reuseport').map((spec) => spec.port);
    if (tcp.length === 0) {
      return new Listeners([], reusedPorts);
    }

    // Sockets are matched by name, so a new version can add a listener or drop one of the old version's.
    const received = peerSocket === undefined ? new Map<string, number>() : receiveFrom(peerSocket, log);
    const owned: Array<{ spec: ListenSpec & { kind: 'tcp' }; fd: number }> = [];
    try {
      for (const spec of tcp) {
        const name = listenerName(spec);
        const samePort = [...received.keys()].find((other) => other !== name && other.endsWith(`-${spec.port}`));
        if (!received.has(name) && samePort !== undefined) {
          // The other slot's socket keeps the port bound, so another address on it can never be bound here.
          throw new Error(`${describeListener(spec)} cannot be opened while the other slot listens on port ${spec.port} as ${samePort}; keep the listener's address across versions`);
        }
        const fd = received.get(name) ?? (await bindWithRetry(spec, bindTimeoutMs, log));
        received.delete(name);
        owned.push({ spec, fd });
      }
    } catch (error) {
      for (const entry of owned) {
        closeFd(entry.fd);
      }
      throw error;
    } finally {
      for (const [name, fd] of received) {
        log.info({ event: 'listener-dropped', listener: name }, `closing ${name}, which the other slot listened on and this one does not`);
        closeFd(fd);
      }
    }
    return new Listeners(owned, reusedPorts);
  }

  get isEmpty(): boolean {
    return this.owned.length === 0 && this.reusedPorts.length === 0;
  }

  get fds(): number[] {
    return this.owned.map((entry) => entry.fd);
  }

  /** Socket inodes of the owned sockets, to find them among the command's descriptors. */
  inodes(): Set<number> {
    return new Set(this.owned.map((entry) => socketInode('self', entry.fd)).filter((inode): inode is number => inode !== undefined));
  }

  /** Variables of systemd socket activation for the command; LISTEN_PID is set by the launcher that execs it. */
  activationEnv(): Record<string, string> {
    if (this.owned.length === 0) {
      return {};
    }
    return { LISTEN_FDS: String(this.owned.length), LISTEN_FDNAMES: this.owned.map((entry) => listenerName(entry.spec)).join(':') };
  }

  /**
   * Starts serving the owned sockets to the other slot's supervisor on the Unix socket `socketFile`,
   * whose length the supervisor checked at start.
   */
  async serve(socketFile: string, log: Logger): Promise<void> {
    if (this.owned.length === 0) {
      return;
    }
    await unlink(socketFile).catch(() => undefined);
    const payload = Buffer.from(JSON.stringify({ names: this.owned.map((entry) => listenerName(entry.spec)) } satisfies HandoffPayload));
    // pauseOnConnect keeps libuv from reading the connection, so the addon's sendmsg is its only traffic.
    const server = createServer({ pauseOnConnect: true }, (connection) => {
      try {
        sendFdsToSocket(connection, this.fds, payload);
        log.info({ event: 'listeners-sent', listeners: this.owned.map((entry) => describeListener(entry.spec)) }, 'handed the listening sockets to the other slot');
      } catch (error) {
        log.error({ event: 'listeners-send-failed', err: error }, `handing the listening sockets over failed: ${(error as Error).message}`);
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketFile, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => log.error({ event: 'handoff-socket-failed', err: error }, `the hand-off socket ${socketFile} failed: ${error.message}`));
    this.server = server;
    // The other slot may run as another user, as its image's USER can differ, and must be able to connect.
    await chmod(socketFile, 0o666);
  }

  /** Stops serving the sockets to the other slot and closes this supervisor's copies. The command keeps its own. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    for (const entry of this.owned) {
      closeFd(entry.fd);
    }
    (this.owned as unknown[]).length = 0;
  }
}

/**
 * Receives the sockets from the other slot, by name. A slot that sends none (it died, or it owns
 * none) or a payload that does not name them gives an empty map, and the caller opens the sockets.
 */
function receiveFrom(socketFile: string, log: Logger): Map<string, number> {
  let received: { fds: number[]; payload: Buffer };
  try {
    received = receiveFds(socketFile, RECEIVE_TIMEOUT_MS);
  } catch (error) {
    log.warn({ event: 'listeners-not-received', err: error }, `the other slot did not hand over its listening sockets (${(error as Error).message}); opening them here`);
    return new Map();
  }

  let names: unknown;
  try {
    names = (JSON.parse(received.payload.toString('utf8')) as HandoffPayload).names;
  } catch {
    names = undefined;
  }
  if (!Array.isArray(names) || names.length !== received.fds.length || !names.every((name) => typeof name === 'string')) {
    for (const fd of received.fds) {
      closeFd(fd);
    }
    log.warn({ event: 'listeners-invalid', payload: received.payload.toString('utf8').slice(0, 200) }, 'the other slot sent sockets without a valid list of their names; opening them here');
    return new Map();
  }
  log.info({ event: 'listeners-received', listeners: names }, 'received the listening sockets from the other slot');
  return new Map((names as string[]).map((name, index) => [name, received.fds[index]!]));
}

async function bindWithRetry(spec: ListenSpec & { kind: 'tcp' }, timeoutMs: number, log: Logger): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return createListener(spec.host, spec.port);
    } catch (error) {
      const inUse = (error as NodeJS.ErrnoException).code === 'EADDRINUSE';
      if (!inUse) {
        throw new Error(`Cannot listen on ${describeListener(spec)}: ${(error as Error).message}.`);
      }
      if (Date.now() >= deadline) {
        throw new PortInUseError(`Cannot listen on ${describeListener(spec)}: the port was still in use after ${timeoutMs / 1000}s. Stop the process that listens on it, or choose another port.`);
      }
      if (attempt === 1) {
        log.warn({ event: 'listen-busy', listener: describeListener(spec), timeoutMs }, `${describeListener(spec)} is in use; retrying until it is free`);
      }
      await new Promise((resolve) => setTimeout(resolve, BIND_RETRY_INTERVAL_MS));
    }
  }
}
