/**
 * Ordering latency of a real sidecar and app pair on a temporary shared volume: from the sidecar's
 * `ready` to the app's command `running`, and from the app's `exited` to the sidecar's `exited`.
 * The times come from the containers' records (millisecond resolution) and the sidecar's log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { isMain, isQuick, makePodVolume, markdownTable, percentile, runtimeTandem, type Result } from './common.js';

const TARGET_START_P99_MS = 20;
const TARGET_STOP_P99_MS = 100;

/** Time after which one run is abandoned as hung. */
const RUN_TIMEOUT_MS = 30_000;

interface Sample {
  /** Sidecar `ready` to app `running`. */
  readyToRunning: number;
  /** App `exited` to sidecar `exited`, including the SIGTERM stop of the sidecar's `sleep`. */
  appExitToSidecarExit: number;
  /** App `exited` to the sidecar's `apps-finished` log line: how long the sidecar takes to notice. */
  appExitToDetection: number;
}

/** Runs a process to its exit and returns its stderr; rejects on a non-zero exit or a timeout. */
async function runToExit(child: ChildProcess, label: string): Promise<string> {
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  clearTimeout(timer);
  if (code !== 0) {
    throw new Error(`${label} supervisor exited with code ${code} (signal ${signal}); stderr: ${stderr}`);
  }
  return stderr;
}

function readTimes(sharedDir: string, name: string): Record<string, string> {
  const record = JSON.parse(readFileSync(path.join(sharedDir, 'state', `${name}.json`), 'utf8')) as { times: Record<string, string> };
  return record.times;
}

/** Returns the time of the first log line of an event, in milliseconds since the epoch. */
function eventTime(stderr: string, event: string): number {
  for (const line of stderr.split('\n')) {
    if (line.startsWith('{"level"')) {
      const entry = JSON.parse(line) as { event?: string; time?: string };
      if (entry.event === event && entry.time !== undefined) {
        return Date.parse(entry.time);
      }
    }
  }
  throw new Error(`no "${event}" event in the log: ${stderr}`);
}

function timeOf(times: Record<string, string>, phase: string, name: string): number {
  const value = times[phase];
  if (value === undefined) {
    throw new Error(`the record of ${name} has no time for phase ${phase}`);
  }
  return Date.parse(value);
}

/** Starts a sidecar (`sleep 1000`, ready when started) and an app (`true`) together and measures one run. */
async function runPair(): Promise<Sample> {
  const sharedDir = await makePodVolume('ordering', [
    { name: 'sidecar', role: 'sidecar', priority: 1, readiness: 'started' },
    { name: 'app', role: 'app', priority: 0 },
  ]);
  try {
    const supervise = (name: string, role: string, command: string[]): ChildProcess =>
      spawn(runtimeTandem, ['supervise', '--shared-dir', sharedDir, '--name', name, '--role', role, '--', ...command], { stdio: ['ignore', 'ignore', 'pipe'] });
    const sidecar = supervise('sidecar', 'sidecar', ['sleep', '1000']);
    const app = supervise('app', 'app', ['true']);
    const [sidecarLog] = await Promise.all([runToExit(sidecar, 'sidecar'), runToExit(app, 'app')]);

    const sidecarTimes = readTimes(sharedDir, 'sidecar');
    const appTimes = readTimes(sharedDir, 'app');
    const appExited = timeOf(appTimes, 'exited', 'app');
    return {
      readyToRunning: timeOf(appTimes, 'running', 'app') - timeOf(sidecarTimes, 'ready', 'sidecar'),
      appExitToSidecarExit: timeOf(sidecarTimes, 'exited', 'sidecar') - appExited,
      appExitToDetection: eventTime(sidecarLog, 'apps-finished') - appExited,
    };
  } finally {
    rmSync(sharedDir, { recursive: true, force: true });
  }
}

export async function benchOrdering(quick: boolean): Promise<Result[]> {
  const runs = quick ? 10 : 200;
  const samples: Sample[] = [];
  // The runs are sequential so that two pairs never compete for the CPU.
  for (let run = 0; run < runs; run++) {
    samples.push(await runPair());
  }

  const results: Result[] = [];
  const add = (measurement: string, values: number[], target?: number): void => {
    for (const p of [50, 99]) {
      const value = percentile(values, p);
      const result: Result = { benchmark: 'ordering', measurement: `${measurement}, p${p} of ${runs}`, value, unit: 'ms', target: '' };
      if (p === 99 && target !== undefined) {
        result.target = `≤ ${target} ms`;
        result.meets = value <= target;
      }
      results.push(result);
    }
  };
  add('sidecar ready → app running', samples.map((sample) => sample.readyToRunning), TARGET_START_P99_MS);
  add('app exited → sidecar exited', samples.map((sample) => sample.appExitToSidecarExit), TARGET_STOP_P99_MS);
  add('app exited → sidecar notices (apps-finished)', samples.map((sample) => sample.appExitToDetection));
  return results;
}

if (isMain(import.meta.url)) {
  console.log(markdownTable(await benchOrdering(isQuick())));
}
