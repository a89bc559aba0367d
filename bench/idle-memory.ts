/**
 * Idle footprint of a supervisor whose command sleeps. It measures the RSS and PSS of the
 * supervisor's Node.js process (the child of tini) next to tini and dumb-init alone. It also
 * measures the PSS per supervisor when 10 supervisors of one pod share the runtime's files, and the
 * CPU time that a supervisor uses while idle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { once } from 'node:events';
import type { PodContainer } from '../supervisor/protocol/pod.js';
import { childPids, clockTicksPerSecond, cpuTimeMs, delay, isMain, isQuick, makePodVolume, markdownTable, memoryKiB, runtimeTandem, type Result } from './common.js';

const TARGET_PSS_MIB = 20;
const SUPERVISOR_COUNT = 10;

/** Time given to a started process to finish its start-up before it is measured. */
const SETTLE_MS = 1000;

/** Time over which the CPU use of an idle supervisor is measured. */
const IDLE_WINDOW_MS = 2000;

/** Resolves once `text` appears on the process's stderr, or rejects after `timeoutMs`. */
function waitForStderr(child: ChildProcess, text: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for "${text}" on stderr; stderr so far: ${seen}`)), timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** Sends SIGTERM to each process and waits until all have exited. */
async function stopAll(children: readonly ChildProcess[]): Promise<void> {
  const exits = children.filter((child) => child.exitCode === null && child.signalCode === null).map((child) => once(child, 'exit'));
  for (const child of children) {
    child.kill('SIGTERM');
  }
  await Promise.all(exits);
}

/** Returns the PID of the supervisor's Node.js process: the only child of tini that is not the command. */
function supervisorPid(tiniPid: number): number {
  const children = childPids(tiniPid);
  if (children.length !== 1) {
    throw new Error(`expected one child of tini (PID ${tiniPid}), found ${children.length}: ${children.join(' ')}`);
  }
  return children[0]!;
}

/** Creates a shared volume whose pod has `count` apps named app0, app1, …, none of which waits for another. */
async function makePod(count: number): Promise<{ sharedDir: string; names: string[] }> {
  const names = Array.from({ length: count }, (_, index) => `app${index}`);
  const containers: PodContainer[] = names.map((name) => ({ name, role: 'app', priority: 0 }));
  return { sharedDir: await makePodVolume('memory', containers), names };
}

/** Starts one supervisor per app of the pod, each running `sleep 1000`, and waits until every command runs. */
async function startSupervisors(sharedDir: string, names: readonly string[]): Promise<ChildProcess[]> {
  const children = names.map((name) =>
    spawn(runtimeTandem, ['supervise', '--shared-dir', sharedDir, '--name', name, '--role', 'app', '--', 'sleep', '1000'], { stdio: ['ignore', 'ignore', 'pipe'] }),
  );
  await Promise.all(children.map((child) => waitForStderr(child, '"event":"started"')));
  return children;
}

/** Measures a reaper (tini or dumb-init) with a sleeping child. */
async function measureReaper(label: string, command: string[]): Promise<Result[]> {
  const child = spawn(command[0]!, [...command.slice(1), 'sleep', '1000'], { stdio: 'ignore' });
  try {
    await delay(SETTLE_MS);
    const memory = memoryKiB(child.pid!);
    return [
      { benchmark: 'idle-memory', measurement: `RSS of ${label}`, value: memory.rss / 1024, unit: 'MiB', target: '' },
      { benchmark: 'idle-memory', measurement: `PSS of ${label}`, value: memory.pss / 1024, unit: 'MiB', target: '' },
    ];
  } finally {
    await stopAll([child]);
  }
}

/** Measures one supervisor of a one-app pod: memory, then CPU time over an idle window. */
async function measureOneSupervisor(): Promise<Result[]> {
  const { sharedDir, names } = await makePod(1);
  const children = await startSupervisors(sharedDir, names);
  try {
    await delay(SETTLE_MS);
    const pid = supervisorPid(children[0]!.pid!);
    const memory = memoryKiB(pid);
    const cpuBefore = cpuTimeMs(pid);
    await delay(IDLE_WINDOW_MS);
    const cpuUsed = cpuTimeMs(pid) - cpuBefore;
    return [
      { benchmark: 'idle-memory', measurement: 'RSS of one supervisor (node)', value: memory.rss / 1024, unit: 'MiB', target: '' },
      { benchmark: 'idle-memory', measurement: 'PSS of one supervisor (node)', value: memory.pss / 1024, unit: 'MiB', target: `≤ ${TARGET_PSS_MIB} MiB`, meets: memory.pss / 1024 <= TARGET_PSS_MIB },
      { benchmark: 'idle-memory', measurement: `CPU time of one idle supervisor over ${IDLE_WINDOW_MS / 1000} s`, value: cpuUsed, unit: 'ms', target: '≈ 0 (≤ 1 clock tick)', meets: cpuUsed <= 1000 / clockTicksPerSecond },
    ];
  } finally {
    await stopAll(children);
    rmSync(sharedDir, { recursive: true, force: true });
  }
}

/** Measures the mean PSS of the supervisors of a pod with SUPERVISOR_COUNT apps, started together. */
async function measureManySupervisors(): Promise<Result[]> {
  const { sharedDir, names } = await makePod(SUPERVISOR_COUNT);
  const children = await startSupervisors(sharedDir, names);
  try {
    await delay(SETTLE_MS);
    const memories = children.map((child) => memoryKiB(supervisorPid(child.pid!)));
    const meanPssMiB = memories.reduce((sum, memory) => sum + memory.pss, 0) / memories.length / 1024;
    const meanRssMiB = memories.reduce((sum, memory) => sum + memory.rss, 0) / memories.length / 1024;
    return [
      { benchmark: 'idle-memory', measurement: `RSS per supervisor, ${SUPERVISOR_COUNT} together`, value: meanRssMiB, unit: 'MiB', target: '' },
      { benchmark: 'idle-memory', measurement: `PSS per supervisor, ${SUPERVISOR_COUNT} together`, value: meanPssMiB, unit: 'MiB', target: `≤ ${TARGET_PSS_MIB} MiB`, meets: meanPssMiB <= TARGET_PSS_MIB },
    ];
  } finally {
    await stopAll(children);
    rmSync(sharedDir, { recursive: true, force: true });
  }
}

/** Runs the idle benchmark; the quick mode measures the same things, since the run is already short. */
export async function benchIdleMemory(_quick: boolean): Promise<Result[]> {
  return [
    ...(await measureReaper('tini', ['tini', '--'])),
    ...(await measureReaper('dumb-init', ['dumb-init'])),
    ...(await measureOneSupervisor()),
    ...(await measureManySupervisors()),
  ];
}

if (isMain(import.meta.url)) {
  console.log(markdownTable(await benchIdleMemory(isQuick())));
}
