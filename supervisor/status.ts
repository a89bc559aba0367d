import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { readPodSpec, stateDir, type PodSpec } from './protocol/pod.js';
import { deadSupervisorRecord, livenessSocketFile } from './protocol/liveness.js';
import { readRecord, recordFile, type ContainerRecord } from './protocol/record.js';

/** Time a liveness socket gets to accept the status check's connection. */
const LIVENESS_CHECK_TIMEOUT_MS = 500;

/** One row of `tandem status`: a container of the pod spec, with its record when it has one. */
export interface StatusRow {
  name: string;
  role: string;
  priority: number;
  phase: string;
  /** Whether a sidecar is ready now; undefined for apps. */
  ready?: boolean;
  /** Container restarts plus in-place restarts of a sidecar's command. */
  restarts: number;
  exitCode?: number;
  rawExitCode?: number;
  reason?: string;
  times: ContainerRecord['times'];
  /** Version of a hot-upgrade slot. */
  slotVersion?: string;
  /** The last hand-off this slot took part in: the one it made, or the drain it did for the other slot. */
  handoff?: ContainerRecord['handoff'];
  drained?: ContainerRecord['drained'];
}

/** Reads the pod spec and every container's record from the shared volume. */
export async function readStatus(sharedDir: string): Promise<{ pod?: PodSpec; rows: StatusRow[] }> {
  if (!existsSync(stateDir(sharedDir))) {
    throw new Error(`${stateDir(sharedDir)} not found: tandem status reads the pod's shared volume. Run it in a container that tandem injected, or set --shared-dir.`);
  }
  const pod = await readPodSpec(sharedDir).catch(() => undefined);
  const names = new Set(pod?.containers.map((container) => container.name) ?? []);
  const files = await readdir(stateDir(sharedDir)).catch(() => [] as string[]);
  for (const file of files) {
    if (file.endsWith('.json') && !file.startsWith('.') && file !== 'pod.json') {
      names.add(path.basename(file, '.json'));
    }
  }

  const rows: StatusRow[] = [];
  for (const name of names) {
    const written = await readRecord(recordFile(sharedDir, name));
    // A record in a live phase whose supervisor no longer listens is a container that died without
    // writing its end, as the peers see it through the liveness socket.
    const record = written !== undefined && written.phase !== 'exited' && !(await isListening(livenessSocketFile(sharedDir, name))) ? deadSupervisorRecord(written) : written;
    const entry = pod?.containers.find((container) => container.name === name);
    rows.push({
      name,
      role: record?.role ?? entry?.role ?? '?',
      priority: record?.priority ?? entry?.priority ?? 0,
      phase: record?.phase ?? 'pending',
      ready: (record?.role ?? entry?.role) === 'sidecar' ? record?.phase === 'ready' : undefined,
      slotVersion: record?.slotVersion,
      handoff: record?.handoff,
      drained: record?.drained,
      restarts: (record?.generation ?? 0) + (record?.restarts ?? 0),
      exitCode: record?.exitCode,
      rawExitCode: record?.rawExitCode,
      reason: record?.reason,
      times: record?.times ?? {},
    });
  }
  rows.sort((left, right) => right.priority - left.priority || left.name.localeCompare(right.name));
  return { pod, rows };
}

/** Reports whether a supervisor accepts connections on its liveness socket. */
function isListening(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path: file, timeout: LIVENESS_CHECK_TIMEOUT_MS });
    const finish = (listening: boolean): void => {
      socket.destroy();
      resolve(listening);
    };
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
    // A supervisor too busy to accept in time is still alive.
    socket.once('timeout', () => finish(true));
  });
}

/** Formats the rows as an aligned table, like `kubectl get`. */
export function formatStatusTable(rows: readonly StatusRow[]): string {
  const slots = rows.some((row) => row.slotVersion !== undefined);
  const header = ['NAME', 'ROLE', 'PRIORITY', 'PHASE', 'READY', 'RESTARTS', 'EXIT', 'STARTED', 'EXITED', ...(slots ? ['VERSION', 'HANDOFF'] : []), 'REASON'];
  const lines = rows.map((row) => [
    row.name,
    row.role,
    String(row.priority),
    row.phase,
    row.ready === undefined ? '-' : String(row.ready),
    String(row.restarts),
    formatExitCode(row),
    row.times.running ?? row.times.ready ?? '-',
    row.times.exited ?? '-',
    ...(slots ? [row.slotVersion ?? '-', formatHandoff(row)] : []),
    row.reason ?? '',
  ]);

  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]!.length)));
  return [header, ...lines].map((line) => line.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

/**
 * Summarizes a slot's part in its last hand-off: `from mesh-1 v1: done 412ms`, or
 * `drained for mesh-2 in 230ms`. Timings are whole milliseconds.
 */
export function formatHandoff(row: Pick<StatusRow, 'handoff' | 'drained'>): string {
  const parts: string[] = [];
  if (row.handoff !== undefined) {
    const { from, fromVersion, phase, durationMs } = row.handoff;
    parts.push(`from ${from} v${fromVersion}: ${phase}${durationMs === undefined ? '' : ` ${durationMs}ms`}`);
  }
  if (row.drained !== undefined) {
    parts.push(`drained for ${row.drained.for} in ${row.drained.drainMs}ms`);
  }
  return parts.length === 0 ? '-' : parts.join('; ');
}

/** Formats the exit code, with the command's own code when the container reports another one. */
function formatExitCode(row: StatusRow): string {
  if (row.exitCode === undefined) {
    return '-';
  }
  if (row.rawExitCode !== undefined && row.rawExitCode !== row.exitCode) {
    return `${row.exitCode} (raw ${row.rawExitCode})`;
  }
  return String(row.exitCode);
}
