import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writePodSpec, type PodContainer, type RestartPolicy } from '../supervisor/protocol/pod.js';

/** The repository root: bench/ compiles to dist/bench/, two levels below it. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The runtime that `npm run build` assembles and `tandem install` copies into pods.
 * TANDEM_BENCH_RUNTIME names a copy to measure instead, one that a build running meanwhile cannot change.
 */
export const runtimeRoot = process.env.TANDEM_BENCH_RUNTIME ? path.resolve(process.env.TANDEM_BENCH_RUNTIME) : path.join(repoRoot, 'build', 'runtime');
export const runtimeTandem = path.join(runtimeRoot, 'bin', 'tandem');

/** Node.js as the launcher runs it: through the runtime's own loader and libraries. */
export const runtimeNodeCommand = [
  path.join(runtimeRoot, 'lib', 'ld-linux-x86-64.so.2'),
  '--inhibit-cache',
  '--library-path',
  path.join(runtimeRoot, 'lib'),
  path.join(runtimeRoot, 'libexec', 'node'),
];

/** One measured value of a benchmark, with the target it is compared against, if any. */
export interface Result {
  benchmark: string;
  measurement: string;
  value: number;
  unit: string;
  /** The target as text, such as "≤ 20 ms"; empty when the value is reported for comparison only. */
  target: string;
  /** Whether the value meets the target; undefined when there is no target. */
  meets?: boolean;
}

/** Reports whether the process was started with `--quick`, the short mode of the smoke test. */
export function isQuick(argv: readonly string[] = process.argv): boolean {
  return argv.includes('--quick');
}

/** Reports whether the module at `moduleUrl` is the script that Node.js was started with. */
export function isMain(moduleUrl: string): boolean {
  return process.argv[1] !== undefined && pathToFileURL(path.resolve(process.argv[1])).href === moduleUrl;
}

/** Returns the p-th percentile (0 to 100) of `values` by the nearest-rank method. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) {
    throw new Error('percentile of an empty list');
  }
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** Formats a number with up to `digits` decimals, dropping trailing zeros. */
export function formatNumber(value: number, digits = 1): string {
  return Number(value.toFixed(digits)).toString();
}

/** Renders results as a Markdown table. */
export function markdownTable(results: readonly Result[]): string {
  const lines = ['| benchmark | measurement | result | target | meets target |', '|---|---|---|---|---|'];
  for (const result of results) {
    let meets = '';
    if (result.meets !== undefined) {
      meets = result.meets ? 'yes' : 'no';
    }
    lines.push(`| ${result.benchmark} | ${result.measurement} | ${formatNumber(result.value)} ${result.unit} | ${result.target} | ${meets} |`);
  }
  return lines.join('\n');
}

/**
 * Creates a temporary shared volume with `state/` and `logs/` and a pod spec listing `containers`,
 * as `tandem install` leaves it for the pod's supervisors. `label` names the directory.
 */
export async function makePodVolume(label: string, containers: PodContainer[], restartPolicy: RestartPolicy = 'Never'): Promise<string> {
  const sharedDir = mkdtempSync(path.join(tmpdir(), `tandem-bench-${label}-`));
  mkdirSync(path.join(sharedDir, 'state'));
  mkdirSync(path.join(sharedDir, 'logs'));
  await writePodSpec(sharedDir, { version: 1, restartPolicy, terminationGracePeriodSeconds: 30, containers });
  return sharedDir;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Clock ticks per second (USER_HZ) of utime and stime in /proc/PID/stat, as `getconf CLK_TCK` prints it. */
export const clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** Reads the fields of /proc/PID/stat after the command name, so that field 3 (state) is at index 0. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).trim().split(' ');
}

/** Returns the CPU time (utime + stime) that a process has used, in milliseconds. */
export function cpuTimeMs(pid: number): number {
  const fields = statFields(pid);
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / clockTicksPerSecond;
}

/** Returns the PIDs of a process's direct children, from /proc/PID/task/PID/children. */
export function childPids(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(' ').map(Number);
}

/** Returns the RSS and PSS of a process in KiB, from /proc/PID/smaps_rollup. */
export function memoryKiB(pid: number): { rss: number; pss: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (match === null) {
      throw new Error(`${name} not found in /proc/${pid}/smaps_rollup`);
    }
    return Number(match[1]);
  };
  return { rss: field('Rss'), pss: field('Pss') };
}

/** Returns the median of `values`: the mean of the two middle values when their count is even. */
export function median(values: readonly number[]): number {
  if (values.length === 0) {
    throw new Error('median of an empty list');
  }
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
