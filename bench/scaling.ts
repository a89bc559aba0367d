/**
 * Growth of ordering latency and supervisor CPU time with the size of a pod. A 3-container pod (two
 * sidecars at launch priorities 2 and 1, one app) runs next to a 50-container pod (25 sidecars in
 * 5 launch priorities, 25 apps). Every container is a real `tandem supervise` process of the
 * runtime, and all of a pod's supervisors start together on one new temporary shared volume. The
 * sidecars run `sleep 1000` (ready when started) and the apps `sleep 2`, so the start and the
 * stop are apart in time and the CPU time of each can be read separately.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { PodContainer } from '../supervisor/protocol/pod.js';
import { childPids, clockTicksPerSecond, isMain, isQuick, makePodVolume, markdownTable, median, runtimeTandem, type Result } from './common.js';

/** How long each app's command runs, in seconds: long enough for every supervisor to be idle before the stop. */
const APP_SLEEP_SECONDS = 2;
const QUICK_APP_SLEEP_SECONDS = 1;

/** Time after which one run is abandoned as hung. */
const RUN_TIMEOUT_MS = 120_000;

interface PodShape {
  label: string;
  containers: PodContainer[];
}

/** Returns a pod of `sidecarLevels` launch priorities with `sidecarsPerLevel` sidecars each, and `apps` apps at priority 0. */
function podShape(sidecarLevels: number, sidecarsPerLevel: number, apps: number): PodShape {
  const containers: PodContainer[] = [];
  for (let level = sidecarLevels; level >= 1; level--) {
    for (let index = 0; index < sidecarsPerLevel; index++) {
      containers.push({ name: `sidecar-p${level}-${index}`, role: 'sidecar', priority: level, readiness: 'started' });
    }
  }
  for (let index = 0; index < apps; index++) {
    containers.push({ name: `app-${index}`, role: 'app', priority: 0 });
  }
  return { label: `${containers.length} containers`, containers };
}

interface Sample {
  /** The last sidecar `ready` to the last app `running`. */
  readyToAppsRunning: number;
  /** The last app `exited` to the last sidecar `exited`, through every exit priority. */
  appsExitedToSidecarsExited: number;
  /** The first spawn to the last app `running`: the whole start cascade, Node.js's start included. */
  spawnToAppsRunning: number;
  /** CPU time (user + system) of every supervisor tree from spawn until all apps run, in milliseconds. */
  startCpuMs: number;
  /** CPU time of every supervisor tree from then until all have exited, in milliseconds. */
  stopCpuMs: number;
}

/** Reads utime, stime, cutime and cstime of /proc/PID/stat, in milliseconds; 0 when the process is gone. */
function ownAndReapedCpuMs(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).trim().split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  return (ticks * 1000) / clockTicksPerSecond;
}

/** CPU time of a live process and of all its descendants, live or reaped, in milliseconds. */
function treeCpuMs(pid: number): number {
  let total = ownAndReapedCpuMs(pid);
  let children: number[] = [];
  try {
    children = childPids(pid);
  } catch {
    // The process exited between the two reads.
  }
  for (const child of children) {
    total += treeCpuMs(child);
  }
  return total;
}

/** CPU time of the processes that this process has waited for (cutime + cstime of /proc/self/stat), in milliseconds. */
function reapedChildrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).trim().split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / clockTicksPerSecond;
}

/** Resolves once `text` appears on the process's stderr. */
function waitForStderr(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve) => {
    let seen = '';
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString();
      if (seen.includes(text)) {
        child.stderr!.off('data', onData);
        resolve();
      }
    };
    child.stderr!.on('data', onData);
  });
}

/** Waits for the process to exit and rejects unless it exits 0. */
async function expectExitZero(child: ChildProcess, name: string, stderr: () => string): Promise<void> {
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  if (code !== 0) {
    throw new Error(`${name} supervisor exited with code ${code} (signal ${signal}); stderr: ${stderr()}`);
  }
}

function phaseTime(sharedDir: string, name: string, phase: string): number {
  const record = JSON.parse(readFileSync(path.join(sharedDir, 'state', `${name}.json`), 'utf8')) as { times: Record<string, string> };
  const value = record.times[phase];
  if (value === undefined) {
    throw new Error(`the record of ${name} has no time for phase ${phase}`);
  }
  return Date.parse(value);
}

/** Starts every container of the pod together and measures one run. */
async function runPod(shape: PodShape, appSleepSeconds: number): Promise<Sample> {
  const sharedDir = await makePodVolume('scaling', shape.containers);
  const children: ChildProcess[] = [];
  const timer = setTimeout(() => children.forEach((child) => child.kill('SIGKILL')), RUN_TIMEOUT_MS);
  try {

    const reapedBefore = reapedChildrenCpuMs();
    const spawnedAt = Date.now();
    const exits: Promise<void>[] = [];
    const appsStarted: Promise<void>[] = [];
    for (const container of shape.containers) {
      const command = container.role === 'sidecar' ? ['sleep', '1000'] : ['sleep', String(appSleepSeconds)];
      const child = spawn(runtimeTandem, ['supervise', '--shared-dir', sharedDir, '--name', container.name, '--role', container.role, '--', ...command], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      exits.push(expectExitZero(child, container.name, () => stderr));
      if (container.role === 'app') {
        appsStarted.push(waitForStderr(child, '"event":"started"'));
      }
    }

    // Once every app's command runs, the start is over: the CPU time up to here is the start's.
    const exitedTooEarly = Promise.all(exits).then(() => {
      throw new Error('the pod exited before every app started');
    });
    await Promise.race([Promise.all(appsStarted), exitedTooEarly]);
    const startCpuMs = children.reduce((sum, child) => sum + treeCpuMs(child.pid!), 0);
    await Promise.all(exits);
    const totalCpuMs = reapedChildrenCpuMs() - reapedBefore;

    const sidecars = shape.containers.filter((container) => container.role === 'sidecar').map((container) => container.name);
    const apps = shape.containers.filter((container) => container.role === 'app').map((container) => container.name);
    const latest = (names: string[], phase: string): number => Math.max(...names.map((name) => phaseTime(sharedDir, name, phase)));
    return {
      readyToAppsRunning: latest(apps, 'running') - latest(sidecars, 'ready'),
      appsExitedToSidecarsExited: latest(sidecars, 'exited') - latest(apps, 'exited'),
      spawnToAppsRunning: latest(apps, 'running') - spawnedAt,
      startCpuMs,
      stopCpuMs: totalCpuMs - startCpuMs,
    };
  } finally {
    clearTimeout(timer);
    // After a failure, the sidecars' `sleep 1000` would outlive the benchmark; SIGTERM starts their stop.
    const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
    const stopped = running.map((child) => once(child, 'exit'));
    for (const child of running) {
      child.kill('SIGTERM');
    }
    // The pod's grace period is 30 s, so a supervisor still running after 40 s is hung.
    const killTimer = setTimeout(() => running.forEach((child) => child.kill('SIGKILL')), 40_000);
    await Promise.all(stopped);
    clearTimeout(killTimer);
    rmSync(sharedDir, { recursive: true, force: true });
  }
}

export async function benchScaling(quick: boolean): Promise<Result[]> {
  const small = podShape(2, 1, 1);
  // The quick mode uses a 6-container pod, because 50 Node.js starts take several seconds on 2 CPUs.
  const large = quick ? podShape(2, 2, 2) : podShape(5, 5, 25);
  const appSleepSeconds = quick ? QUICK_APP_SLEEP_SECONDS : APP_SLEEP_SECONDS;
  const runs = quick ? 1 : 10;
  const samples = new Map<PodShape, Sample[]>([
    [small, []],
    [large, []],
  ]);
  // The two pods run in turns, one at a time, so that both see the same state of the machine.
  for (let run = 0; run < runs; run++) {
    for (const shape of [small, large]) {
      samples.get(shape)!.push(await runPod(shape, appSleepSeconds));
    }
  }

  const sizeRatio = large.containers.length / small.containers.length;
  const results: Result[] = [];
  const measures: { field: keyof Sample; label: string }[] = [
    { field: 'readyToAppsRunning', label: 'last sidecar ready → last app running' },
    { field: 'appsExitedToSidecarsExited', label: 'last app exited → last sidecar exited' },
    { field: 'spawnToAppsRunning', label: 'spawn → last app running' },
    { field: 'startCpuMs', label: 'supervisor CPU time, start (spawn → all apps running)' },
    { field: 'stopCpuMs', label: 'supervisor CPU time, rest of the run and stop' },
  ];
  for (const { field, label } of measures) {
    const smallValue = median(samples.get(small)!.map((sample) => sample[field]));
    const largeValue = median(samples.get(large)!.map((sample) => sample[field]));
    const growth = largeValue / smallValue;
    results.push(
      { benchmark: 'scaling', measurement: `${label}, ${small.label}, median of ${runs}`, value: smallValue, unit: 'ms', target: '' },
      { benchmark: 'scaling', measurement: `${label}, ${large.label}, median of ${runs}`, value: largeValue, unit: 'ms', target: '' },
      {
        benchmark: 'scaling',
        measurement: `${label}, ${large.containers.length} / ${small.containers.length} containers`,
        value: growth,
        unit: '×',
        target: `≤ ${sizeRatio.toFixed(1)} × (linear)`,
        meets: growth <= sizeRatio,
      },
    );
  }
  return results;
}

if (isMain(import.meta.url)) {
  console.log(markdownTable(await benchScaling(isQuick())));
}
