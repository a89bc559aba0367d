import { EventEmitter } from 'node:events';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../log.js';
import { deadSupervisorRecord, PeerWatcher } from './liveness.js';
import { HANDOFF_DIR, POD_SPEC_FILE, stateDir } from './pod.js';
import { readRecord, type ContainerRecord } from './record.js';

export type Records = ReadonlyMap<string, ContainerRecord>;

/** Interval of the polling fallback, used when inotify is unavailable or out of watches. */
const POLL_INTERVAL_MS = 100;

export interface RecordStoreOptions {
  /** This supervisor's own container, whose liveness socket is not watched. */
  self?: string;
}

/**
 * The latest record of every container of the pod, kept current by watching the state directory.
 * The watcher starts with a scan, so records written before this supervisor started are seen too.
 * A peer whose supervisor died without writing `exited` gets an `exited` record made up here, once
 * the PeerWatcher of liveness.ts reports the death.
 */
export class RecordStore extends EventEmitter {
  readonly records = new Map<string, ContainerRecord>();
  private watcher: FSWatcher | undefined;
  private readonly loads = new Map<string, { done: Promise<void>; again: boolean }>();
  private readonly peers: PeerWatcher;
  /** Records made up for dead supervisors, by container name, so that a later read of the stale file does not revive them. */
  private readonly deadRecords = new Map<string, ContainerRecord>();

  private constructor(
    private readonly directory: string,
    private readonly log: Logger,
    self: string | undefined,
  ) {
    super();
    this.peers = new PeerWatcher(directory, self, log, (name, generation) => this.onPeerDeath(name, generation));
    this.on('change', () => void this.peers.update(this.records.values()));
  }

  /**
   * Opens the store and resolves after the initial scan, once every live peer's liveness socket has
   * been tried, so a peer that is already dead is seen as `exited` from the start.
   */
  static async open(sharedDir: string, log: Logger, options: RecordStoreOptions = {}): Promise<RecordStore> {
    const store = new RecordStore(stateDir(sharedDir), log, options.self);
    await store.startWatcher(false);
    await store.peers.update(store.records.values());
    return store;
  }

  /** Resolves with the first value `check` returns other than undefined, checking on every change. */
  until<T>(check: (records: Records) => T | undefined, signal?: AbortSignal): Promise<T> {
    return new Promise((resolve, reject) => {
      const evaluate = (): void => {
        const value = check(this.records);
        if (value !== undefined) {
          cleanup();
          resolve(value);
        }
      };
      const abort = (): void => {
        cleanup();
        reject(signal?.reason);
      };
      const cleanup = (): void => {
        this.off('change', evaluate);
        signal?.removeEventListener('abort', abort);
      };

      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      this.on('change', evaluate);
      signal?.addEventListener('abort', abort);
      evaluate();
    });
  }

  /** Stops watching the directory and closes the connections to the peers' liveness sockets. */
  async close(): Promise<void> {
    this.peers.close();
    await this.watcher?.close();
  }

  private async startWatcher(usePolling: boolean): Promise<void> {
    const watcher = watch(this.directory, {
      depth: 0,
      ignoreInitial: false,
      usePolling,
      interval: POLL_INTERVAL_MS,
      ignored: (file) => isIgnored(file),
    });
    this.watcher = watcher;

    // chokidar drops a 'change' that follows another within 50 ms and sends no trailing one, so
    // a record rewritten quickly could be missed. Its raw inotify events are never throttled.
    watcher.on('add', (file) => this.scheduleLoad(file));
    watcher.on('change', (file) => this.scheduleLoad(file));
    watcher.on('raw', (_event, file, details) => {
      const watchedPath = (details as { watchedPath?: string } | undefined)?.watchedPath;
      if (typeof file !== 'string' || watchedPath === undefined) {
        return;
      }
      const full = watchedPath === this.directory ? path.join(this.directory, file) : watchedPath;
      if (!isIgnored(full)) {
        this.scheduleLoad(full);
      }
    });
    // An error before 'ready' (inotify out of instances) is handled after it, because closing the
    // watcher earlier would keep 'ready' from ever coming.
    let ready = false;
    let earlyError: NodeJS.ErrnoException | undefined;
    watcher.on('error', (error) => {
      if (ready) {
        void this.onWatchError(error as NodeJS.ErrnoException, usePolling);
      } else {
        earlyError ??= error as NodeJS.ErrnoException;
      }
    });
    await new Promise<void>((resolve) => watcher.once('ready', resolve));
    ready = true;
    await Promise.all([...this.loads.values()].map((load) => load.done));
    if (earlyError !== undefined) {
      await this.onWatchError(earlyError, usePolling);
    }
  }

  /**
   * Reads a file again after a change. Reads of one path run one at a time, so an older read never
   * overwrites a newer record, and changes during a read coalesce into one more read.
   */
  private scheduleLoad(file: string): Promise<void> {
    const running = this.loads.get(file);
    if (running !== undefined) {
      running.again = true;
      return running.done;
    }

    const entry = { done: Promise.resolve(), again: false };
    entry.done = (async () => {
      do {
        entry.again = false;
        await this.load(file);
      } while (entry.again);
      this.loads.delete(file);
    })();
    this.loads.set(file, entry);
    return entry.done;
  }

  /**
   * Handles a peer whose liveness socket closed or refused a connection. The record is read again
   * first, because the peer may have written `exited` before it closed the socket, or a restarted
   * container may have written a new generation. Otherwise the supervisor died, and the store
   * publishes an `exited` record for it.
   */
  private async onPeerDeath(name: string, generation: number): Promise<void> {
    await this.scheduleLoad(path.join(this.directory, `${name}.json`));
    const record = this.records.get(name);
    if (record === undefined || record.generation !== generation || record.phase === 'exited') {
      return;
    }

    const dead = deadSupervisorRecord(record);
    this.deadRecords.set(name, dead);
    this.records.set(name, dead);
    this.log.warn(
      { event: 'peer-died', peer: name, generation, supervisorPid: record.supervisorPid, phase: record.phase, exitCode: dead.exitCode },
      `the supervisor of ${name} (generation ${generation}) died in phase ${record.phase} without writing a record, so ${name} counts as exited with code ${dead.exitCode}`,
    );
    this.emit('change');
  }

  private async onWatchError(error: NodeJS.ErrnoException, polling: boolean): Promise<void> {
    if (polling || (error.code !== 'ENOSPC' && error.code !== 'EMFILE')) {
      this.log.error({ event: 'watch-failed', err: error }, 'watching the state directory failed');
      return;
    }

    this.log.warn({ event: 'watch-polling', err: error, intervalMs: POLL_INTERVAL_MS }, `inotify is unavailable (${error.code}); polling the state directory every ${POLL_INTERVAL_MS} ms instead`);
    await this.watcher?.close();
    await this.startWatcher(true);
  }

  private async load(file: string): Promise<void> {

    const record = await readRecord(file);
    if (record === undefined) {
      this.log.debug({ event: 'record-ignored', file }, 'ignored a file that is not a tandem record');
      return;
    }
    const dead = this.deadRecords.get(record.name);
    const revivesDead = dead !== undefined && dead.generation === record.generation && record.phase !== 'exited';
    this.records.set(record.name, revivesDead ? dead : record);
    this.emit('change');
  }
}

/** Temporary files of atomic writes start with a dot, and the pod spec is not a record. */
function isIgnored(file: string): boolean {
  const name = path.basename(file);
  return name.startsWith('.') || name === POD_SPEC_FILE || name === HANDOFF_DIR || (!name.endsWith('.json') && name.includes('.'));
}
