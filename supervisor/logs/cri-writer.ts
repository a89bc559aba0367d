import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { rfc3339NanoNow } from './timestamp.js';

export type StreamName = 'stdout' | 'stderr';

/** Longest line content per CRI record; longer lines are split into partial (P) records, as kubelet does. */
export const MAX_RECORD_BYTES = 16 * 1024;

const NEWLINE = 0x0a;

export interface CriWriterOptions {
  /** Bytes that may wait for the disk before new records are dropped instead of queued. */
  maxQueuedBytes: number;
  onDrop?: (droppedRecords: number, reason: string) => void;
}

/**
 * Copies output into a file in the CRI log format (`<RFC3339Nano> <stream> <F|P> <content>`). The
 * copy never slows the command: when the disk falls behind or fails, records are dropped and counted.
 */
export class CriLogWriter {
  readonly file: string;
  droppedRecords = 0;
  private readonly output: WriteStream;
  private readonly pending: Record<StreamName, Buffer[]> = { stdout: [], stderr: [] };
  private readonly pendingBytes: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  private failure: string | undefined;

  constructor(file: string, private readonly options: CriWriterOptions) {
    this.file = file;
    mkdirSync(path.dirname(file), { recursive: true });
    this.output = createWriteStream(file, { flags: 'a' });
    this.output.on('error', (error) => {
      this.failure = error.message;
      this.options.onDrop?.(this.droppedRecords, error.message);
    });
  }

  /** Adds a chunk of the command's output, writing every line it completes. */
  write(stream: StreamName, chunk: Buffer): void {
    let start = 0;
    for (let index = chunk.indexOf(NEWLINE); index !== -1; index = chunk.indexOf(NEWLINE, start)) {
      this.append(stream, chunk.subarray(start, index));
      this.flushLine(stream, 'F');
      start = index + 1;
    }
    if (start < chunk.length) {
      this.append(stream, chunk.subarray(start));
    }
  }

  /** Writes what is left of unterminated lines and closes the file. */
  async close(): Promise<void> {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.pendingBytes[stream] > 0) {
        this.flushLine(stream, 'F');
      }
    }
    await new Promise<void>((resolve) => this.output.end(resolve));
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
    const content = Buffer.concat(this.pending[stream]);
    this.pending[stream] = [];
    this.pendingBytes[stream] = 0;

    if (this.failure !== undefined || this.output.writableLength > this.options.maxQueuedBytes) {
      this.droppedRecords += 1;
      if (this.droppedRecords === 1 && this.failure === undefined) {
        this.options.onDrop?.(this.droppedRecords, 'the log file is not keeping up');
      }
      return;
    }
    this.output.write(Buffer.concat([Buffer.from(`${rfc3339NanoNow()} ${stream} ${tag} `), content, Buffer.from('\n')]));
  }
}
