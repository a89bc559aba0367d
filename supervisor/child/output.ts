import type { Readable, Writable } from 'node:stream';
import type { CriLogWriter, StreamName } from '../logs/cri-writer.js';

/**
 * Passes every byte of the command's output to the supervisor's own stdout or stderr, unchanged
 * and in order, and hands a copy to the CRI log writer when there is one. When the container's
 * reader is slow, reading pauses, so the command blocks on its pipe as it would without tandem.
 */
export function relayOutput(source: Readable, stream: StreamName, target: Writable, copy: CriLogWriter | undefined): Promise<void> {
  return new Promise((resolve) => {
    // A reader that went away never sends 'drain', so its error or close resumes reading for good.
    let closed = false;
    const resume = (): void => {
      source.resume();
    };
    const close = (): void => {
      closed = true;
      resume();
    };
    target.once('error', close);
    target.once('close', close);
    source.on('data', (chunk: Buffer) => {
      copy?.write(stream, chunk);
      if (closed || target.errored !== null || target.writableEnded) {
        return;
      }
      if (!target.write(chunk)) {
        source.pause();
        target.once('drain', resume);
      }
    });
    source.once('end', resolve);
    source.once('close', resolve);
    source.once('error', () => resolve());
  });
}

/** Resolves once everything written to stdout and stderr has been handed to the kernel. */
export async function flushStdio(): Promise<void> {
  await Promise.all([process.stdout, process.stderr].map((target) => new Promise<void>((resolve) => target.write('', () => resolve()))));
}

/**
 * Keeps the supervisor alive when the reader of its stdout or stderr goes away (EPIPE): the command
 * keeps running and the log copy keeps its output. The first error of each stream is logged.
 */
export function tolerateClosedStdio(onError: (stream: StreamName, error: Error) => void): void {
  process.stdout.once('error', (error) => onError('stdout', error));
  process.stderr.once('error', (error) => onError('stderr', error));
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
}
