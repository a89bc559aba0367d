import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../supervisor/log.js';
import { RecordWriter, type ContainerRecord } from '../../../supervisor/protocol/record.js';
import { RecordStore } from '../../../supervisor/protocol/store.js';
import { makeSharedDir } from '../../support/tandem.js';

const log = createLogger('silent');

function record(name: string, generation: number): ContainerRecord {
  return { version: 1, name, role: 'app', priority: 0, generation, phase: 'waiting', supervisorPid: process.pid, times: {} };
}

describe('record store', () => {
  it('initial scan sees records written before it', async () => {
    const shared = makeSharedDir();
    await new RecordWriter(shared, record('early', 4)).update('exited', { exitCode: 9 });

    const store = await RecordStore.open(shared, log);
    try {
      expect(store.records.get('early')?.phase).toBe('exited');
      expect(store.records.get('early')?.generation).toBe(4);
    } finally {
      await store.close();
    }
  });

  it('last of rapid rewrites is always seen', async () => {
    const shared = makeSharedDir();
    const store = await RecordStore.open(shared, log);
    try {
      const writer = new RecordWriter(shared, record('busy', 0));
      for (let index = 0; index < 30; index += 1) {
        await writer.update('running', { pid: index });
      }
      await writer.update('exited', { exitCode: 42 });

      const seen = await store.until((records) => (records.get('busy')?.phase === 'exited' ? records.get('busy') : undefined), AbortSignal.timeout(2000));
      expect(seen.exitCode).toBe(42);
    } finally {
      await store.close();
    }
  });

  it('ignores files that are not records', async () => {
    const shared = makeSharedDir();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${shared}/state/garbage.json`, '{not json');
    writeFileSync(`${shared}/state/other.json`, '{"hello":1}');

    const store = await RecordStore.open(shared, log);
    try {
      expect(store.records.size).toBe(0);
    } finally {
      await store.close();
    }
  });
});
