import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from './atomic.js';
import { stateDir, type Role } from './pod.js';

/**
 * Phase of a container as its supervisor reports it: waiting for dependencies, running its command,
 * ready to serve (sidecars), stopping, or exited. A hot-upgrade slot that runs no command is parked.
 */
export type Phase = 'waiting' | 'running' | 'ready' | 'stopping' | 'exited' | 'parked';

/** Step of a hot-upgrade hand-off, as the slot that takes over reports it. */
export type HandoffPhase = 'waiting-turn' | 'starting' | 'draining-peer' | 'done' | 'failed';

/** A hand-off between the two slots of a hot-upgrade sidecar, in the record of the slot that takes over. */
export interface HandoffRecord {
  phase: HandoffPhase;
  /** The slot that served before. */
  from: string;
  fromVersion: string;
  /** Generation of the record of `from` that is asked to drain, so a later run of that slot ignores the request. */
  fromGeneration: number;
  /** ISO 8601 times of the steps. */
  requestedAt: string;
  readyAt?: string;
  doneAt?: string;
  /** Time from the start of the take-over to the end of the old slot's drain. */
  durationMs?: number;
  reason?: string;
}

/** The drain of an old slot, in its own record. */
export interface DrainRecord {
  /** The slot that took over, and the generation of its record. */
  for: string;
  forGeneration: number;
  drainMs: number;
  exitCode: number;
}

/** The record each supervisor writes about its own container, in `<shared>/state/<name>.json`. */
export interface ContainerRecord {
  version: 1;
  name: string;
  role: Role;
  priority: number;
  /** Restart count of the container: 0 for its first run, one more for each restart. */
  generation: number;
  phase: Phase;
  supervisorPid: number;
  /** PID of the command, set once it runs. */
  pid?: number;
  /** Code the container exits with. */
  exitCode?: number;
  /** Code the command itself returned, kept when the supervisor reports another one. */
  rawExitCode?: number;
  /** In-place restarts of a sidecar's command in this run of the container. */
  restarts?: number;
  signal?: string;
  /** Reason for the phase, for example the sidecar that a wait failed on. */
  reason?: string;
  /** ISO 8601 time at which each phase was entered. */
  times: Partial<Record<Phase, string>>;
  /** Version of a hot-upgrade slot (SIDECARSET_VERSION), "0" for the empty slot. */
  slotVersion?: string;
  handoff?: HandoffRecord;
  drained?: DrainRecord;
}

export function recordFile(sharedDir: string, name: string): string {
  return path.join(stateDir(sharedDir), `${name}.json`);
}

/** Reads a record, returning undefined when it does not exist or is not a tandem record. */
export async function readRecord(file: string): Promise<ContainerRecord | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }

  try {
    const record = JSON.parse(text) as ContainerRecord;
    return record?.version === 1 && typeof record.name === 'string' ? record : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps this container's record and writes each change in order, atomically. */
export class RecordWriter {
  private writing: Promise<void> = Promise.resolve();
  /** The error of the last write, cleared by the next successful one. */
  lastError: Error | undefined;

  /** `onError` gets every failed write; a failed write never stops the container's command. */
  constructor(
    private readonly sharedDir: string,
    public record: ContainerRecord,
    private readonly onError: (error: Error, record: ContainerRecord) => void = () => undefined,
  ) {}

  /** Moves the record to a phase with the given fields, and resolves when it is written or has failed. */
  update(phase: Phase, fields: Partial<ContainerRecord> = {}): Promise<void> {
    this.record = {
      ...this.record,
      ...fields,
      phase,
      // A phase keeps the time it was entered; an update that stays in the phase changes only fields.
      times: phase === this.record.phase && this.record.times[phase] !== undefined ? this.record.times : { ...this.record.times, [phase]: new Date().toISOString() },
    };

    const snapshot = this.record;
    this.writing = this.writing.then(async () => {
      try {
        await writeJsonAtomic(recordFile(this.sharedDir, snapshot.name), snapshot);
        this.lastError = undefined;
      } catch (error) {
        this.lastError = error as Error;
        this.onError(error as Error, snapshot);
      }
    });
    return this.writing;
  }
}
