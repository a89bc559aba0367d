/**
 * Start overhead: the wall time from exec to exit of `true` run directly, under tini, under
 * dumb-init and under `tandem supervise`, next to Node.js's own start (`node -e 0` through the
 * runtime's loader, as the launcher runs it). hyperfine measures each command and exports JSON.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isMain, isQuick, markdownTable, runtimeNodeCommand, runtimeTandem, type Result } from './common.js';

/** How far tandem's start may exceed Node.js's own start, in milliseconds. */
const TARGET_OVERHEAD_MS = 15;

interface HyperfineResult {
  command: string;
  mean: number;
  stddev: number;
  median: number;
  min: number;
  max: number;
}

const commands: { label: string; command: string }[] = [
  { label: 'true', command: 'true' },
  { label: 'tini -- true', command: 'tini -- true' },
  { label: 'dumb-init true', command: 'dumb-init true' },
  { label: 'node -e 0 (runtime loader)', command: `${runtimeNodeCommand.join(' ')} -e 0` },
  { label: 'tandem supervise -- true', command: `${runtimeTandem} supervise -- true` },
];

/** Runs hyperfine over the commands and returns its results in seconds, in the order of `commands`. */
function runHyperfine(quick: boolean): HyperfineResult[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-bench-start-'));
  const exportPath = path.join(dir, 'start.json');
  try {
    // --shell=none runs each command without a shell, so no shell start-up is added or subtracted.
    const runs = quick ? ['--runs', '5', '--warmup', '1'] : ['--runs', '100', '--warmup', '5'];
    execFileSync('hyperfine', ['--shell=none', '--style', 'none', ...runs, '--export-json', exportPath, ...commands.map((entry) => entry.command)], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const exported = JSON.parse(readFileSync(exportPath, 'utf8')) as { results: HyperfineResult[] };
    return exported.results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchStart(quick: boolean): Promise<Result[]> {
  const measured = runHyperfine(quick);
  const meanMs = (index: number): number => measured[index]!.mean * 1000;
  const nodeMs = meanMs(3);
  const tandemMs = meanMs(4);

  const results: Result[] = commands.map((entry, index) => ({
    benchmark: 'start',
    measurement: `mean of ${entry.label}`,
    value: meanMs(index),
    unit: 'ms',
    target: '',
  }));
  results[4] = { ...results[4]!, target: `≤ node + ${TARGET_OVERHEAD_MS} ms (${(nodeMs + TARGET_OVERHEAD_MS).toFixed(1)} ms)`, meets: tandemMs <= nodeMs + TARGET_OVERHEAD_MS };
  results.push(
    { benchmark: 'start', measurement: 'tandem minus node', value: tandemMs - nodeMs, unit: 'ms', target: `≤ ${TARGET_OVERHEAD_MS} ms`, meets: tandemMs - nodeMs <= TARGET_OVERHEAD_MS },
    { benchmark: 'start', measurement: 'tandem / node', value: tandemMs / nodeMs, unit: '×', target: '' },
    { benchmark: 'start', measurement: 'tandem / tini', value: tandemMs / meanMs(1), unit: '×', target: '' },
  );
  return results;
}

if (isMain(import.meta.url)) {
  console.log(markdownTable(await benchStart(isQuick())));
}
