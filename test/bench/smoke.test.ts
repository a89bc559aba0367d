import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/tandem.js';

/**
 * Runs each benchmark in its quick mode as a real process. The check is that it completes and
 * prints measured numbers, not that they meet the targets: timings depend on the machine.
 */
const benchmarks = ['start', 'idle-memory', 'ordering', 'throughput', 'webhook', 'scaling', 'hot-upgrade', 'all'];

/** Matches a table row whose result cell is a number with a unit, such as "| 25.8 ms |" or "| 512 MiB/s |". */
const numberCell = /\| \d+(\.\d+)? (ms|MiB|MiB\/s|req\/s|%|×) \|/;

describe('benchmarks in quick mode', () => {
  for (const name of benchmarks) {
    it(`${name} prints numbers`, async () => {
      const result = await execa('node', [path.join(repoRoot, 'dist', 'bench', `${name}.js`), '--quick'], { reject: false, timeout: 110_000 });

      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toContain('| benchmark | measurement | result |');
      expect(result.stdout).toMatch(numberCell);
    }, 120_000);
  }
});
