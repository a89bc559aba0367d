import type { Readable, Writable } from 'node:stream';
import type { CriLogWriter, StreamName } from '../logs/cri-writer.js';

/**
 * Passes every byte of the command's output to the supervisor's own stdout and stderr, unchanged
 * and in order, and hands a copy to the CRI log writer when there is one.
 */
export function relayOutput(source: Readable, stream: StreamName, target: Writable, copy: CriLogWriter | undefined): Promise<void> {
  return new Promise((resolve) => {
    source.on('data', (chunk: Buffer) => {
      target.write(chunk);
      copy?.write(stream, chunk);
    });
    source.once('end', resolve);
    source.once('error', () => resolve());
  });
}
