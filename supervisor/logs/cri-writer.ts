import { createWriteStream, mkdirSync, renameSync, rmSync, statSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { rfc3339NanoNow } from './timestamp.js';

export type StreamName = 'stdout' | 'stderr';

/** Maximum line content per CRI record; longer lines are split into partial (P) records, as kubelet does. */
export const MAX_RECORD_BYTES = 16 * 1024;

/** Time after a write error before the writer opens the file again. */
const RETRY_AFTER_ERROR_MS = 5000;

const NEWLINE = 0x0a;
const NEWLINE_BUFFER = Buffer.from('\n');

export interface CriWriterOptions {
  /** Bytes that may wait for the disk before new records are dropped instead of queued. */
  maxQueuedBytes: number;
  /** Size at which the file is rotated. */
  maxFileBytes: number;
  /** Number of files kept, the current one included: `N.log`, `N.log.1`, … */
  maxFiles: number;
  /** Called on the first drop after records were written, with the reason. */
  onDrop?: (reason: string) => void;
}

/**
 * Copies output into a file in the CRI log format (`<RFC3339Nano> <stream> <F|P> <content>`). The
 * copy never slows or stops the command: when the disk falls behind or fails, records are dropped
 * and counted, and writing resumes once the disk accepts data again.
 */
export class CriLogWriter {
  readonly file: string;
  droppedRecords = 0;
  private output: WriteStream;
  private fileBytes: number;
  private readonly pending: Record<StreamName, Buffer[]> = { stdout: [], stderr: [] };
  private readonly pendingBytes: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  private failedAt: number | undefined;
  private dropping = false;
  /** Records built from the current chunk, written together by commit(). */
  private batch: Buffer[] = [];
  private batchRecords = 0;
  private batchBytes = 0;
  private timestamp = '';

  constructor(
    file: string,
    private readonly options: CriWriterOptions,
  ) {
    this.file = file;
    mkdirSync(path.dirname(file), { recursive: true });
    this.fileBytes = sizeOf(file);
    this.output = this.open();
  }

  /**
   * Adds a chunk of the command's output and writes every record it completes in one write. All
   * records of a chunk share one timestamp, the time the chunk was read.
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

  /** Writes what is left of unterminated lines and closes the file. */
  async close(): Promise<void> {
    this.timestamp = rfc3339NanoNow();
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.pendingBytes[stream] > 0) {
        this.flushLine(stream, 'F');
      }
    }
    this.commit();
    await new Promise<void>((resolve) => this.output.end(resolve));
  }

  private open(): WriteStream {
    const output = createWriteStream(this.file, { flags: 'a' });
    output.on('error', (error) => {
      this.failedAt = Date.now();
      this.dropping = true;
      this.options.onDrop?.(`writing failed: ${error.message}`);
    });
    return output;
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
    const content = this.pending[stream];
    const contentBytes = this.pendingBytes[stream];
    this.pending[stream] = [];
    this.pendingBytes[stream] = 0;

    const prefix = Buffer.from(`${this.timestamp} ${stream} ${tag} `);
    const recordBytes = prefix.length + contentBytes + 1;
    const sizeAfter = this.fileBytes + this.batchBytes + recordBytes;
    if (sizeAfter > this.options.maxFileBytes && sizeAfter > recordBytes) {
      this.commit();
      this.rotateSafely();
    }
    this.batch.push(prefix, ...content, NEWLINE_BUFFER);
    this.batchRecords += 1;
    this.batchBytes += recordBytes;
  }

  /** Writes the batch, or drops it when the disk failed recently or is too far behind. */
  private commit(): void {
    if (this.batchRecords === 0) {
      return;
    }
    const records = this.batchRecords;
    const data = Buffer.concat(this.batch);
    this.batch = [];
    this.batchRecords = 0;
    this.batchBytes = 0;

    if (this.failedAt !== undefined) {
      if (Date.now() - this.failedAt < RETRY_AFTER_ERROR_MS) {
        this.drop(records, 'the log disk failed');
        return;
      }
      this.failedAt = undefined;
      this.output = this.open();
    }
    if (this.output.writableLength > this.options.maxQueuedBytes) {
      this.drop(records, `more than ${this.options.maxQueuedBytes} bytes wait for the log disk`);
      return;
    }
    this.output.write(data);
    this.fileBytes += data.length;
    this.dropping = false;
  }

  private rotateSafely(): void {
    try {
      this.rotate();
    } catch (error) {
      this.failedAt = Date.now();
      this.options.onDrop?.(`rotating ${this.file} failed: ${(error as Error).message}`);
    }
  }

  private drop(records: number, reason: string): void {
    this.droppedRecords += records;
    if (!this.dropping) {
      this.dropping = true;
      this.options.onDrop?.(reason);
    }
  }

  /**
   * Renames `N.log` to `N.log.1` (shifting older files up and removing the oldest) and starts a new
   * file. Records still queued for the old file land in `N.log.1`, since the open descriptor follows the rename.
   */
  private rotate(): void {
    this.output.end();
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
    this.output = this.open();
  }
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
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
