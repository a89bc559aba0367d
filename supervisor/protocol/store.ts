import { EventEmitter } from 'node:events';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../log.js';
import { POD_SPEC_FILE, stateDir } from './pod.js';
import { readRecord, type ContainerRecord } from './record.js';

export type Records = ReadonlyMap<string, ContainerRecord>;

/** Interval of the polling fallback, used when inotify is unavailable or out of watches. */
const POLL_INTERVAL_MS = 100;

/**
 * The latest record of every container of the pod, kept current by watching the state directory.
 * The watcher starts with a scan, so records written before this supervisor started are seen too.
 */
export class RecordStore extends EventEmitter {
  readonly records = new Map<string, ContainerRecord>();
  private watcher: FSWatcher | undefined;
  private readonly loads = new Map<string, { done: Promise<void>; again: boolean }>();

  private constructor(
    private readonly directory: string,
    private readonly log: Logger,
  ) {
    super();
  }

  static async open(sharedDir: string, log: Logger): Promise<RecordStore> {
    const store = new RecordStore(stateDir(sharedDir), log);
    await store.startWatcher(false);
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

  async close(): Promise<void> {
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
    watcher.on('error', (error) => void this.onWatchError(error as NodeJS.ErrnoException, usePolling));
    await new Promise<void>((resolve) => watcher.once('ready', resolve));
    await Promise.all([...this.loads.values()].map((load) => load.done));
  }

  /**
   * Reads a file again after a change. Reads of one path run one at a time, so an older read never
   * overwrites a newer record, and changes during a read coalesce into one more read.
   */
  private scheduleLoad(file: string): void {
    const running = this.loads.get(file);
    if (running !== undefined) {
      running.again = true;
      return;
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
  }

  private async onWatchError(error: NodeJS.ErrnoException, polling: boolean): Promise<void> {
    if (polling || (error.code !== 'ENOSPC' && error.code !== 'EMFILE')) {
      this.log.error({ event: 'watch-failed', err: error }, 'watching the state directory failed');
      return;
    }

    this.log.warn({ event: 'watch-polling', err: error, intervalMs: POLL_INTERVAL_MS }, 'inotify is out of watches; polling the state directory instead');
    await this.watcher?.close();
    await this.startWatcher(true);
  }

  private async load(file: string): Promise<void> {

    const record = await readRecord(file);
    if (record === undefined) {
      this.log.debug({ event: 'record-ignored', file }, 'ignored a file that is not a tandem record');
      return;
    }
    this.records.set(record.name, record);
    this.emit('change');
  }
}

/** Temporary files of atomic writes start with a dot, and the pod spec is not a record. */
function isIgnored(file: string): boolean {
  const name = path.basename(file);
  return name.startsWith('.') || name === POD_SPEC_FILE || (!name.endsWith('.json') && name.includes('.'));
}
