/**
 * stdout throughput through the supervisor: one command writes 100-byte lines to a pipe that this
 * process reads, directly, under `tandem supervise` without a shared volume (no log copy), and
 * under `tandem supervise` with a shared volume (the CRI log copy on). The three cases run in
 * turns, several rounds, so that the noise of the machine falls on all of them alike.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { isMain, isQuick, makePodVolume, markdownTable, median, runtimeTandem, type Result } from './common.js';

/** Throughput under the supervisor, as a share of the direct throughput. */
const TARGET_SHARE = 0.9;

/** 99 characters; `yes` adds the newline, so each line is 100 bytes. */
const LINE = '0'.repeat(99);

/** Time after variant one run is killed as hung. */
const RUN_TIMEOUT_MS = 300_000;

type Variant = 'direct' | 'supervise' | 'supervise with log copy';
const VARIANTS: readonly Variant[] = ['direct', 'supervise', 'supervise with log copy'];

interface Run {
  /** Bytes per second from the first byte read to the end of the stream, so the start time is left out. */
  bytesPerSecond: number;
  /** Time from spawn to the end of the stream, in milliseconds. */
  wallMs: number;
  /** Log records that the supervisor dropped instead of copying (0 without a log copy). */
  droppedRecords: number;
}

/** Returns the producer command: `yes` cut to an exact byte count by `head`, so every variant writes the same bytes in the same chunks. */
function producer(bytes: number): string[] {
  return ['sh', '-c', `yes ${LINE} | head -c ${bytes}`];
}

/** Returns `droppedRecords` of the supervisor's `log-copy-dropped` log line, or 0 when there is none. */
function droppedRecordsIn(stderr: string): number {
  for (const line of stderr.split('\n')) {
    if (line.startsWith('{"level"') && line.includes('"event":"log-copy-dropped"')) {
      return (JSON.parse(line) as { droppedRecords: number }).droppedRecords;
    }
  }
  return 0;
}

/** Runs one variant to its exit, reading its stdout as fast as the pipe delivers, and times the stream. */
async function runVariant(variant: Variant, bytes: number, sharedDir: string): Promise<Run> {
  let command: string[];
  if (variant === 'direct') {
    command = producer(bytes);
  } else if (variant === 'supervise') {
    command = [runtimeTandem, 'supervise', '--', ...producer(bytes)];
  } else {
    command = [runtimeTandem, 'supervise', '--shared-dir', sharedDir, '--name', 'app', '--role', 'app', '--', ...producer(bytes)];
  }

  const started = performance.now();
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let received = 0;
  let firstByteAt: number | undefined;
  let endedAt = 0;
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    firstByteAt ??= performance.now();
    received += chunk.length;
  });
  child.stdout.on('end', () => {
    endedAt = performance.now();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });

  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal])));
  clearTimeout(timer);
  if (code !== 0 || received !== bytes || firstByteAt === undefined) {
    throw new Error(`${variant}: exited with code ${code} (signal ${signal}) after ${received} of ${bytes} bytes; stderr: ${stderr.slice(-2000)}`);
  }
  return { bytesPerSecond: (received / (endedAt - firstByteAt)) * 1000, wallMs: endedAt - started, droppedRecords: droppedRecordsIn(stderr) };
}

/** Creates a shared volume whose pod spec lists the one app `app`, so the supervisor copies its output. */
async function makeSharedDir(): Promise<string> {
  return makePodVolume('throughput', [{ name: 'app', role: 'app', priority: 0 }]);
}

export async function benchThroughput(quick: boolean): Promise<Result[]> {
  const bytes = quick ? 32 * 2 ** 20 : 2 ** 30;
  const rounds = quick ? 1 : 3;
  const sizeLabel = quick ? '32 MiB' : '1 GiB';
  const runs = new Map<Variant, Run[]>(VARIANTS.map((variant) => [variant, []]));

  for (let round = 0; round < rounds; round++) {
    for (const variant of VARIANTS) {
      // Each run gets a new shared volume: a supervisor refuses to start next to a record of a live one,
      // and the log files of the last run would otherwise count towards the next rotation.
      const sharedDir = await makeSharedDir();
      try {
        runs.get(variant)!.push(await runVariant(variant, bytes, sharedDir));
      } finally {
        rmSync(sharedDir, { recursive: true, force: true });
      }
    }
  }

  const medianOf = (variant: Variant, field: keyof Run): number => median(runs.get(variant)!.map((run) => run[field]));
  const direct = medianOf('direct', 'bytesPerSecond');
  const lines = Math.ceil(bytes / (LINE.length + 1));
  const results: Result[] = [];
  for (const variant of VARIANTS) {
    const rate = medianOf(variant, 'bytesPerSecond');
    results.push({ benchmark: 'throughput', measurement: `${variant}, ${sizeLabel} in 100-byte lines, median of ${rounds}`, value: rate / 2 ** 20, unit: 'MiB/s', target: '' });
  }
  for (const variant of VARIANTS) {
    results.push({ benchmark: 'throughput', measurement: `${variant}, wall time from spawn, median of ${rounds}`, value: medianOf(variant, 'wallMs'), unit: 'ms', target: '' });
  }
  for (const variant of VARIANTS.slice(1)) {
    const share = medianOf(variant, 'bytesPerSecond') / direct;
    results.push({
      benchmark: 'throughput',
      measurement: `${variant} / direct`,
      value: share * 100,
      unit: '%',
      target: `≥ ${TARGET_SHARE * 100} %`,
      meets: share >= TARGET_SHARE,
    });
  }
  const dropped = Math.max(...runs.get('supervise with log copy')!.map((run) => run.droppedRecords));
  results.push({ benchmark: 'throughput', measurement: `log records dropped, most of ${rounds} runs (of ${lines} lines)`, value: (dropped / lines) * 100, unit: '%', target: '' });
  return results;
}

if (isMain(import.meta.url)) {
  console.log(markdownTable(await benchThroughput(isQuick())));
}
