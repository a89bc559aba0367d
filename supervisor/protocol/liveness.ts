import { chmod, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { signalExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { stateDir } from './pod.js';
import type { ContainerRecord } from './record.js';

/**
 * Each supervisor listens on a Unix socket `<shared>/state/<name>.sock`, and its peers keep a
 * connection to it. The kernel closes the listener and its connections when the process dies,
 * including by SIGKILL or the OOM killer, so the peers notice a death that left no `exited` record.
 */

/**
 * Maximum length of a socket path in bytes. sun_path is a 108-byte array on Linux, and the path must
 * fit with its terminating NUL. Node.js 20 silently truncates a longer path, and Node.js 24 rejects
 * it with EINVAL.
 */
export const MAX_SOCKET_PATH_BYTES = 107;

/** Time between connection attempts while a live peer has no socket yet. */
export const RETRY_INTERVAL_MS = 250;

/** Exit code given to a container whose supervisor died: 128+9, because SIGKILL is the likely cause. */
export const DEAD_SUPERVISOR_EXIT_CODE = signalExitCode('SIGKILL');

export const DEAD_SUPERVISOR_REASON = 'supervisor died without writing a record';

export function livenessSocketFile(sharedDir: string, name: string): string {
  return socketFileIn(stateDir(sharedDir), name);
}

function socketFileIn(directory: string, name: string): string {
  return path.join(directory, `${name}.sock`);
}

/** Builds the `exited` record used for a container whose supervisor died while in `record`'s phase. */
export function deadSupervisorRecord(record: ContainerRecord): ContainerRecord {
  // A sidecar restarted in place keeps the fields of its previous exit, which do not describe this death.
  const { rawExitCode: _rawExitCode, signal: _signal, ...live } = record;
  return {
    ...live,
    phase: 'exited',
    exitCode: DEAD_SUPERVISOR_EXIT_CODE,
    reason: DEAD_SUPERVISOR_REASON,
    times: { ...record.times, exited: new Date().toISOString() },
  };
}

/** Error for a socket path that does not fit in sun_path, which the user fixes in the configuration. */
export class SocketPathTooLongError extends Error {}

/**
 * The socket this supervisor listens on so that its peers can tell whether it is alive. It accepts
 * connections and ignores them, and neither the server nor the connections keep the process running.
 */
export class LivenessListener {
  private readonly connections = new Set<Socket>();

  private constructor(
    readonly file: string,
    private readonly server: Server,
  ) {}

  /**
   * Listens on `file`, replacing a socket file that a dead supervisor left behind. Throws when the
   * path is too long, or when another process still listens there.
   */
  static async listen(file: string, log: Logger): Promise<LivenessListener> {
    const bytes = Buffer.byteLength(file);
    if (bytes > MAX_SOCKET_PATH_BYTES) {
      throw new SocketPathTooLongError(
        `The liveness socket path ${file} is ${bytes} bytes long, but a Unix socket path may have at most ${MAX_SOCKET_PATH_BYTES} bytes. Mount the shared volume at a shorter path (--shared-dir) or give the container a shorter name.`,
      );
    }
    await removeStaleSocket(file);

    const server = createServer();
    const listener = new LivenessListener(file, server);
    server.on('connection', (socket) => listener.accept(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(file, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      throw new Error(`Cannot listen on the liveness socket ${file}: ${(error as Error).message}. The state directory must be writable by this container's user.`);
    }
    // accept(2) can fail later, for example with EMFILE. Without a handler, that error would end the process.
    server.on('error', (error) => log.warn({ event: 'liveness-accept-failed', file, err: error }, `accepting a connection on ${file} failed`));
    server.unref();

    try {
      // connect(2) on a Unix socket needs write permission, and the pod's supervisors may run as other users.
      await chmod(file, 0o666);
    } catch (error) {
      await listener.close();
      throw new Error(`Cannot set mode 0666 on the liveness socket ${file}: ${(error as Error).message}. Peers running as other users could not connect to it.`);
    }
    return listener;
  }

  /** Stops listening, closes the accepted connections and removes the socket file (Node.js unlinks it on close). */
  async close(): Promise<void> {
    for (const socket of this.connections) {
      socket.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    socket.unref();
    // Peers send nothing, and a peer that goes away resets its connection; neither is an error here.
    socket.resume();
    socket.on('error', () => undefined);
    this.connections.add(socket);
    socket.once('close', () => this.connections.delete(socket));
  }
}

/**
 * Removes a socket file that no process listens on, so that listen(2) does not fail with EADDRINUSE.
 * A file that accepts a connection belongs to a running supervisor and is kept.
 */
async function removeStaleSocket(file: string): Promise<void> {
  const outcome = await probeSocket(file);
  if (outcome === 'connected') {
    throw new Error(`Another process is listening on ${file}, so another supervisor of this container is probably running. Give each container of the pod its own --name.`);
  }
  if (outcome === 'ECONNREFUSED') {
    await unlink(file).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') {
        throw new Error(`Cannot remove the stale liveness socket ${file}: ${error.message}. Remove it, or run this container as the user that created it.`);
      }
    });
  }
}

/** Connects once and returns 'connected' or the error code, such as ENOENT or ECONNREFUSED. */
function probeSocket(file: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ path: file });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Callback for a peer whose listener is gone. It must read the record again before it trusts the death. */
export type PeerDeathHandler = (name: string, generation: number) => Promise<void>;

interface PeerWatch {
  name: string;
  generation: number;
  /**
   * `absent` waits for the socket to appear. `dead` means the death was reported, and the watch
   * stays until the record changes, because reconnecting would only report the same death again.
   */
  state: 'connecting' | 'connected' | 'absent' | 'dead';
  socket?: Socket;
  timer?: NodeJS.Timeout;
  /** Settles once the latest connection attempt's outcome is handled, including a reported death. */
  attempt: Promise<void>;
  stopped: boolean;
  /** Set after the first unexpected connect error is logged, so a retry loop logs it once. */
  warned: boolean;
}

/**
 * Keeps one connection to the socket of every peer whose record is not `exited`, and reports the
 * peer's death when that connection closes or when its socket file refuses connections. A peer
 * whose socket does not exist yet (ENOENT) is retried on each record change and every
 * RETRY_INTERVAL_MS. A peer that never creates a socket, such as one run by a tandem version
 * without liveness sockets, is therefore never reported dead.
 */
export class PeerWatcher {
  private readonly watches = new Map<string, PeerWatch>();
  private closed = false;

  constructor(
    private readonly directory: string,
    /** This supervisor's own container, which is never a peer. */
    private readonly self: string | undefined,
    private readonly log: Logger,
    private readonly onDeath: PeerDeathHandler,
  ) {}

  /**
   * Starts, replaces or ends watches to match the records. Resolves once the pending connection
   * attempt of every watched peer has been handled.
   */
  update(records: Iterable<ContainerRecord>): Promise<void> {
    if (this.closed) {
      return Promise.resolve();
    }

    const attempts: Promise<void>[] = [];
    for (const record of records) {
      if (record.name === this.self) {
        continue;
      }

      let watch = this.watches.get(record.name);
      if (watch !== undefined && (record.phase === 'exited' || watch.generation !== record.generation)) {
        this.stop(watch);
        watch = undefined;
      }
      if (record.phase === 'exited') {
        continue;
      }

      if (watch === undefined) {
        watch = { name: record.name, generation: record.generation, state: 'absent', attempt: Promise.resolve(), stopped: false, warned: false };
        this.watches.set(record.name, watch);
        this.connect(watch);
      } else if (watch.state === 'absent') {
        this.connect(watch);
      }
      attempts.push(watch.attempt);
    }
    return Promise.all(attempts).then(() => undefined);
  }

  /** Closes every connection and cancels every retry. */
  close(): void {
    this.closed = true;
    for (const watch of this.watches.values()) {
      this.stop(watch);
    }
  }

  private stop(watch: PeerWatch): void {
    watch.stopped = true;
    clearTimeout(watch.timer);
    watch.socket?.destroy();
    this.watches.delete(watch.name);
  }

  private connect(watch: PeerWatch): void {
    clearTimeout(watch.timer);
    watch.state = 'connecting';
    const file = socketFileIn(this.directory, watch.name);
    const socket = connect({ path: file });
    socket.unref();
    watch.socket = socket;

    watch.attempt = new Promise<void>((settle) => {
      let failure: NodeJS.ErrnoException | undefined;
      socket.once('connect', () => {
        if (!watch.stopped) {
          watch.state = 'connected';
        }
        settle();
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        failure = error;
      });
      socket.once('close', () => {
        if (watch.stopped) {
          settle();
          return;
        }

        const wasConnected = watch.state === 'connected';
        watch.socket = undefined;
        if (wasConnected || failure?.code === 'ECONNREFUSED') {
          // The peer's listener is gone because its supervisor exited or died. The record shows which.
          watch.state = 'dead';
          void this.onDeath(watch.name, watch.generation).finally(settle);
          return;
        }

        this.retryLater(watch, file, failure);
        settle();
      });
    });
  }

  private retryLater(watch: PeerWatch, file: string, failure: NodeJS.ErrnoException | undefined): void {
    watch.state = 'absent';
    // ENOENT is the normal wait for a peer that has not started listening yet, so only other errors are logged.
    if (failure !== undefined && failure.code !== 'ENOENT' && !watch.warned) {
      watch.warned = true;
      this.log.warn(
        { event: 'liveness-connect-failed', peer: watch.name, generation: watch.generation, file, err: failure },
        `connecting to the liveness socket ${file} of ${watch.name} failed; retrying every ${RETRY_INTERVAL_MS} ms`,
      );
    }
    if (!this.closed) {
      watch.timer = setTimeout(() => this.connect(watch), RETRY_INTERVAL_MS);
      watch.timer.unref();
    }
  }
}
