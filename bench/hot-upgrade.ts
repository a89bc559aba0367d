/**
 * Hot upgrade under HTTP keep-alive load: two slots of a socket-activated test server hand over
 * several times while autocannon sends requests on loopback. Reports the requests served, the
 * failed ones (errors, timeouts, non-2xx and resets), and each hand-off's duration from the new
 * slot's start of the take-over to the end of the old slot's drain.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import type { PodContainer } from '../supervisor/protocol/pod.js';
import type { ContainerRecord } from '../supervisor/protocol/record.js';
import { delay, isMain, isQuick, makePodVolume, markdownTable, percentile, repoRoot, runtimeTandem, type Result } from './common.js';

const SERVER = path.join(repoRoot, 'test', 'support', 'activated-server.mjs');
const AUTOCANNON = path.join(repoRoot, 'node_modules', 'autocannon', 'autocannon.js');
const TARGET_REQUESTS = 100_000;
/** Time a step of the upgrade may take before the benchmark gives up. */
const STEP_TIMEOUT_MS = 30_000;

interface LoadReport {
  requests: { total: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  resets?: number;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === 'object' && address !== null ? address.port : 0;
}

function readRecord(sharedDir: string, name: string): ContainerRecord | undefined {
  try {
    return JSON.parse(readFileSync(path.join(sharedDir, 'state', `${name}.json`), 'utf8')) as ContainerRecord;
  } catch {
    return undefined;
  }
}

async function waitFor(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await delay(20);
  }
}

export async function benchHotUpgrade(quick: boolean): Promise<Result[]> {
  const upgrades = quick ? 1 : 6;
  const intervalMs = quick ? 1000 : 5000;
  const loadSeconds = Math.ceil(((upgrades + 1) * intervalMs) / 1000) + 2;
  const slotContainers: PodContainer[] = [
    { name: 'mesh-1', role: 'sidecar', priority: 1 },
    { name: 'mesh-2', role: 'sidecar', priority: 1 },
  ];
  const sharedDir = await makePodVolume('upgrade', slotContainers, 'Always');
  const port = await freePort();
  const slots = new Map<string, ChildProcess>();
  const startSlot = (name: string, version: number): void => {
    const flags = ['--shared-dir', sharedDir, '--name', name, '--role', 'sidecar', '--listen', `tcp:127.0.0.1:${port}`, '--drain-timeout', '10s', '--log-level', 'warn'];
    const child = spawn(runtimeTandem, ['supervise', ...flags, '--', 'node', SERVER], {
      env: { ...process.env, SIDECARSET_VERSION: String(version), VERSION: `v${version}` },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    slots.set(name, child);
  };
  const stopSlot = async (name: string): Promise<void> => {
    const child = slots.get(name)!;
    child.kill('SIGTERM');
    if (child.exitCode === null && child.signalCode === null) {
      await once(child, 'exit');
    }
  };

  const durations: number[] = [];
  let report: LoadReport;
  try {
    startSlot('mesh-1', 1);
    startSlot('mesh-2', 0);
    await waitFor('mesh-1 ready', () => readRecord(sharedDir, 'mesh-1')?.phase === 'ready');
    await waitFor('mesh-2 parked', () => readRecord(sharedDir, 'mesh-2')?.phase === 'parked');

    const load = spawn('node', [AUTOCANNON, '--json', '--connections', '8', '--duration', String(loadSeconds), `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let output = '';
    load.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const loadDone = once(load, 'exit');

    // Each upgrade replaces the parked slot with the next version, as Kruise changes the idle slot's image.
    for (let version = 2; version <= upgrades + 1; version += 1) {
      await delay(intervalMs);
      const idle = version % 2 === 0 ? 'mesh-2' : 'mesh-1';
      const serving = idle === 'mesh-2' ? 'mesh-1' : 'mesh-2';
      await stopSlot(idle);
      startSlot(idle, version);
      await waitFor(`${idle} hand-off done`, () => {
        const record = readRecord(sharedDir, idle);
        return record?.slotVersion === String(version) && record.handoff?.phase === 'done';
      });
      await waitFor(`${serving} parked`, () => readRecord(sharedDir, serving)?.phase === 'parked');
      durations.push(readRecord(sharedDir, idle)!.handoff!.durationMs!);
    }
    await loadDone;
    report = JSON.parse(output) as LoadReport;
  } finally {
    for (const name of slots.keys()) {
      await stopSlot(name).catch(() => undefined);
    }
    rmSync(sharedDir, { recursive: true, force: true });
  }

  const failed = report.errors + report.timeouts + report.non2xx + (report.resets ?? 0);
  const benchmark = `hot upgrade, ${upgrades} hand-off${upgrades === 1 ? '' : 's'} under keep-alive load (autocannon, 8 connections, ${loadSeconds} s)`;
  return [
    { benchmark, measurement: 'requests served', value: report.requests.total, unit: 'requests', target: quick ? '' : `≥ ${TARGET_REQUESTS}`, meets: quick ? undefined : report.requests.total >= TARGET_REQUESTS },
    { benchmark, measurement: 'failed requests', value: failed, unit: 'requests', target: '0', meets: failed === 0 },
    { benchmark, measurement: 'hand-off duration p50', value: percentile(durations, 50), unit: 'ms', target: '' },
    { benchmark, measurement: 'hand-off duration max', value: Math.max(...durations), unit: 'ms', target: '' },
  ];
}

if (isMain(import.meta.url)) {
  console.log(markdownTable(await benchHotUpgrade(isQuick())));
}
