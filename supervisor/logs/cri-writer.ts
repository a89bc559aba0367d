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

/**
 * Records in one buffer: a single record, or every whole line of a chunk in a row. `ends` has the
 * end offset of each record when there are several, so that rotation can split between records.
 * One buffer per chunk keeps the garbage collector's work independent of the number of lines.
 */
interface Entry {
  data: Buffer;
  records: number;
  ends?: Uint32Array;
}

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
  private batch: Entry[] = [];
  private timestamp = '';
  /** Record prefixes (`<time> <stream> <tag> `) of the current chunk, encoded once per chunk. */
  private prefixes = new Map<string, Buffer>();
  /** Records waiting for the disk, from `head` on; taken entries are cut off in bulk, not one by one. */
  private queue: Entry[] = [];
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
    this.setTimestamp(rfc3339NanoNow());
    // Whole lines that fit in one record are gathered as [start, end) pairs and copied together.
    const lines: number[] = [];
    let start = 0;
    for (let index = chunk.indexOf(NEWLINE); index !== -1; index = chunk.indexOf(NEWLINE, start)) {
      if (this.pendingBytes[stream] === 0 && index - start <= MAX_RECORD_BYTES) {
        lines.push(start, index);
      } else {
        this.addLines(stream, chunk, lines);
        this.append(stream, chunk.subarray(start, index));
        this.flushLine(stream, 'F');
      }
      start = index + 1;
    }
    this.addLines(stream, chunk, lines);
    if (start < chunk.length) {
      this.append(stream, chunk.subarray(start));
    }
    this.commit();
  }

  /** Adds the lines `[start, end)` of `chunk` listed in `lines` as F records in one entry, and empties `lines`. */
  private addLines(stream: StreamName, chunk: Buffer, lines: number[]): void {
    if (lines.length === 0) {
      return;
    }
    const prefix = this.prefix(stream, 'F');
    const count = lines.length / 2;
    let size = 0;
    for (let index = 0; index < lines.length; index += 2) {
      size += prefix.length + lines[index + 1]! - lines[index]! + 1;
    }
    const data = Buffer.allocUnsafe(size);
    const ends = new Uint32Array(count);
    let position = 0;
    for (let index = 0; index < lines.length; index += 2) {
      position += prefix.copy(data, position);
      position += chunk.copy(data, position, lines[index], lines[index + 1]);
      data[position] = NEWLINE;
      position += 1;
      ends[index / 2] = position;
    }
    this.batch.push({ data, records: count, ends });
    lines.length = 0;
  }

  /** Writes what is left of unterminated lines, waits for the queue to reach the disk, and closes the file. */
  async close(): Promise<void> {
    this.setTimestamp(rfc3339NanoNow());
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
    const prefix = this.prefix(stream, tag);
    this.batch.push({ data: Buffer.concat([prefix, ...this.pending[stream], NEWLINE_BUFFER]), records: 1 });
    this.pending[stream] = [];
    this.pendingBytes[stream] = 0;
  }

  private setTimestamp(timestamp: string): void {
    this.timestamp = timestamp;
    this.prefixes.clear();
  }

  /** Returns the record prefix `<time> <stream> <tag> ` of the current chunk. */
  private prefix(stream: StreamName, tag: 'F' | 'P'): Buffer {
    const key = `${stream} ${tag}`;
    let prefix = this.prefixes.get(key);
    if (prefix === undefined) {
      prefix = Buffer.from(`${this.timestamp} ${key} `, 'latin1');
      this.prefixes.set(key, prefix);
    }
    return prefix;
  }

  /** Queues the records of the current chunk, or drops them when the disk failed recently or is too far behind. */
  private commit(): void {
    const entries = this.batch;
    this.batch = [];
    if (entries.length === 0) {
      return;
    }

    let bytes = 0;
    let records = 0;
    for (const entry of entries) {
      bytes += entry.data.length;
      records += entry.records;
    }
    if (this.failedAt !== undefined && Date.now() - this.failedAt < RETRY_AFTER_ERROR_MS) {
      this.drop(records, 'the log disk failed');
      return;
    }
    if (this.queuedBytes + bytes > this.options.maxQueuedBytes) {
      this.drop(records, `more than ${this.options.maxQueuedBytes} bytes wait for the log disk`);
      return;
    }
    this.failedAt = undefined;
    for (const entry of entries) {
      this.queue.push(entry);
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

    const batch: Buffer[] = [];
    let bytes = 0;
    let full = false;
    while (this.head < this.queue.length) {
      const entry = this.queue[this.head]!;
      const room = this.options.maxFileBytes - this.fileBytes - bytes;
      if (entry.data.length > room) {
        // The records that fit go into this file; the rest waits for the next one. A file gets at
        // least one record, so a record longer than the limit gets a file of its own.
        const fitting = splitEntry(entry, room, this.fileBytes + bytes === 0);
        if (fitting !== undefined) {
          batch.push(fitting);
          bytes += fitting.length;
        }
        full = true;
        if (entry.data.length === 0) {
          this.head += 1;
        }
        break;
      }
      batch.push(entry.data);
      bytes += entry.data.length;
      this.head += 1;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }

    if (batch.length > 0) {
      await this.handle.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes));
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
    let records = 0;
    for (let index = this.head; index < this.queue.length; index += 1) {
      records += this.queue[index]!.records;
    }
    this.drop(records, `writing failed: ${error.message}`);
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

/**
 * Takes the leading records of `entry` that fit in `room` bytes, at least one when
 * `takeAtLeastOne` is set (the file is empty), and leaves the rest in `entry`. Returns undefined
 * when no record is taken.
 */
function splitEntry(entry: Entry, room: number, takeAtLeastOne: boolean): Buffer | undefined {
  const { data, ends } = entry;
  let count = 0;
  if (ends === undefined) {
    count = data.length <= room ? 1 : 0;
  } else {
    while (count < ends.length && ends[count]! <= room) {
      count += 1;
    }
  }
  if (count === 0 && takeAtLeastOne) {
    count = 1;
  }
  if (count === 0) {
    return undefined;
  }
  const cut = ends === undefined ? data.length : ends[count - 1]!;
  const fitting = data.subarray(0, cut);
  entry.data = data.subarray(cut);
  entry.records -= count;
  entry.ends = ends === undefined || count === ends.length ? undefined : ends.subarray(count).map((end) => end - cut);
  return fitting;
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
