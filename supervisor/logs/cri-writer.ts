import { closeSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { rfc3339NanoNow } from './timestamp.js';

export type StreamName = 'stdout' | 'stderr';

/** Maximum line content per CRI record; longer lines are split into partial (P) records, as kubelet does. */
export const MAX_RECORD_BYTES = 16 * 1024;

/** Time after a write error before the writer tries the file again. */
const RETRY_AFTER_ERROR_MS = 5000;

const NEWLINE = 0x0a;
const NEWLINE_BUFFER = Buffer.from('\n');

export interface CriWriterOptions {
  /** Bytes that may wait for the disk before new records are dropped instead of queued. */
  maxQueuedBytes: number;
  /** Size at which the file is rotated; a single longer record gets a file of its own. */
  maxFileBytes: number;
  /** Number of files kept, the current one included: `N.log`, `N.log.1`, … */
  maxFiles: number;
  /** Called on the first drop after records were written, with the reason. */
  onDrop?: (reason: string) => void;
}

/**
 * Copies output into a file in the CRI log format (`<RFC3339Nano> <stream> <F|P> <content>`). The
 * copy never slows or stops the command: records wait in a bounded queue, one write at a time, and
 * when the disk falls behind or fails, records are dropped and counted. Writing resumes once the
 * disk accepts data again. Rotation happens between writes, so records stay in order across files.
 */
export class CriLogWriter {
  readonly file: string;
  droppedRecords = 0;
  private readonly pending: Record<StreamName, Buffer[]> = { stdout: [], stderr: [] };
  private readonly pendingBytes: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  /** Records of the current chunk, queued together by commit(). */
  private batch: Buffer[] = [];
  private timestamp = '';
  /** Records waiting for the disk, from `head` on; taken records are cut off in bulk, not one by one. */
  private queue: Buffer[] = [];
  private head = 0;
  private queuedBytes = 0;
  private handle: FileHandle | undefined;
  private fileBytes = 0;
  private draining: Promise<void> | undefined;
  private failedAt: number | undefined;
  private dropping = false;

  constructor(
    file: string,
    private readonly options: CriWriterOptions,
  ) {
    this.file = file;
    // The file exists from the start, as kubelet's does, so a log shipper can open it before the first line.
    try {
      mkdirSync(path.dirname(file), { recursive: true });
      closeSync(openSync(file, 'a'));
    } catch (error) {
      this.failedAt = Date.now();
      this.dropping = true;
      this.options.onDrop?.(`creating ${file} failed: ${(error as Error).message}`);
    }
  }

  /**
   * Adds a chunk of the command's output and queues every record it completes. All records of a
   * chunk share one timestamp, the time the chunk was read.
   */
  write(stream: StreamName, chunk: Buffer): void {
    this.timestamp = rfc3339NanoNow();
    let start = 0;
    for (let index = chunk.indexOf(NEWLINE); index !== -1; index = chunk.indexOf(NEWLINE, start)) {
      this.append(stream, chunk.subarray(start, index));
      this.flushLine(stream, 'F');
      start = index + 1;
    }
    if (start < chunk.length) {
      this.append(stream, chunk.subarray(start));
    }
    this.commit();
  }

  /** Writes what is left of unterminated lines, waits for the queue to reach the disk, and closes the file. */
  async close(): Promise<void> {
    this.timestamp = rfc3339NanoNow();
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.pendingBytes[stream] > 0) {
        this.flushLine(stream, 'F');
      }
    }
    this.commit();
    while (this.draining !== undefined) {
      await this.draining;
    }
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }

  private append(stream: StreamName, part: Buffer): void {
    let rest = part;
    while (this.pendingBytes[stream] + rest.length > MAX_RECORD_BYTES) {
      const room = MAX_RECORD_BYTES - this.pendingBytes[stream];
      this.pending[stream].push(rest.subarray(0, room));
      this.pendingBytes[stream] += room;
      this.flushLine(stream, 'P');
      rest = rest.subarray(room);
    }
    if (rest.length > 0) {
      this.pending[stream].push(rest);
      this.pendingBytes[stream] += rest.length;
    }
  }

  private flushLine(stream: StreamName, tag: 'F' | 'P'): void {
    const prefix = Buffer.from(`${this.timestamp} ${stream} ${tag} `);
    this.batch.push(Buffer.concat([prefix, ...this.pending[stream], NEWLINE_BUFFER]));
    this.pending[stream] = [];
    this.pendingBytes[stream] = 0;
  }

  /** Queues the records of the current chunk, or drops them when the disk failed recently or is too far behind. */
  private commit(): void {
    const records = this.batch;
    this.batch = [];
    if (records.length === 0) {
      return;
    }

    const bytes = records.reduce((sum, record) => sum + record.length, 0);
    if (this.failedAt !== undefined && Date.now() - this.failedAt < RETRY_AFTER_ERROR_MS) {
      this.drop(records.length, 'the log disk failed');
      return;
    }
    if (this.queuedBytes + bytes > this.options.maxQueuedBytes) {
      this.drop(records.length, `more than ${this.options.maxQueuedBytes} bytes wait for the log disk`);
      return;
    }
    this.failedAt = undefined;
    for (const record of records) {
      this.queue.push(record);
    }
    this.queuedBytes += bytes;
    this.startDraining();
  }

  /** Starts the write loop unless it runs; records queued while it was finishing start it again. */
  private startDraining(): void {
    if (this.draining !== undefined) {
      return;
    }
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      if (this.head < this.queue.length && this.failedAt === undefined) {
        this.startDraining();
      }
    });
  }

  /** Writes queued records one batch at a time, rotating the file between batches. */
  private async drain(): Promise<void> {
    while (this.head < this.queue.length) {
      try {
        await this.writeNextBatch();
      } catch (error) {
        this.fail(error as Error);
        return;
      }
    }
  }

  private async writeNextBatch(): Promise<void> {
    if (this.handle === undefined) {
      this.handle = await open(this.file, 'a');
      this.fileBytes = (await this.handle.stat()).size;
    }

    const start = this.head;
    let bytes = 0;
    let full = false;
    while (this.head < this.queue.length) {
      const record = this.queue[this.head]!;
      if (this.fileBytes + bytes + record.length > this.options.maxFileBytes && this.fileBytes + bytes > 0) {
        full = true;
        break;
      }
      bytes += record.length;
      this.head += 1;
    }
    const batch = this.queue.slice(start, this.head);
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }

    if (batch.length > 0) {
      await this.handle.write(Buffer.concat(batch, bytes));
      this.fileBytes += bytes;
      this.queuedBytes -= bytes;
      this.dropping = false;
    }
    if (full) {
      await this.rotate();
    }
  }

  /** Renames `N.log` to `N.log.1`, shifting older files up and removing the oldest, and starts a new file. */
  private async rotate(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
    rmSync(`${this.file}.${this.options.maxFiles - 1}`, { force: true });
    for (let index = this.options.maxFiles - 2; index >= 1; index -= 1) {
      renameIfExists(`${this.file}.${index}`, `${this.file}.${index + 1}`);
    }
    if (this.options.maxFiles > 1) {
      renameIfExists(this.file, `${this.file}.1`);
    } else {
      rmSync(this.file, { force: true });
    }
    this.fileBytes = 0;
  }

  /** Drops the queue after a write error; the next chunk after the retry delay opens the file again. */
  private fail(error: Error): void {
    this.failedAt = Date.now();
    this.drop(this.queue.length - this.head, `writing failed: ${error.message}`);
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
    void this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }

  private drop(records: number, reason: string): void {
    this.droppedRecords += records;
    if (!this.dropping) {
      this.dropping = true;
      this.options.onDrop?.(reason);
    }
  }
}

function renameIfExists(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw error;
    }
  }
}

/** Returns the size of a file, or 0 when it does not exist. */
export function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
