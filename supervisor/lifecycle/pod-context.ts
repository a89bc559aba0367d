import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { LivenessListener, livenessSocketFile, SocketPathTooLongError } from '../protocol/liveness.js';
import { readPodSpec, type PodContainer, type PodSpec } from '../protocol/pod.js';
import { RecordWriter } from '../protocol/record.js';
import { RecordStore } from '../protocol/store.js';
import type { SupervisorConfig } from '../config/options.js';
import { parseReadiness, type Readiness } from './readiness-spec.js';

/** A supervisor's view of its pod: the pod spec, the other containers' records and its own. */
export interface PodContext {
  pod: PodSpec;
  self: PodContainer;
  /** When this container counts as ready; used by sidecars. */
  readiness: Readiness;
  store: RecordStore;
  writer: RecordWriter;
  /**
   * Socket that the peers stay connected to, so that they notice when this supervisor is gone. Close
   * it only after the last record is written, or the peers may count this container as killed (137).
   */
  liveness: LivenessListener;
}

/** A failure that ends the supervisor with a documented exit code and a message for the user. */
export class SupervisorError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * Reads the pod spec, listens on this container's liveness socket, starts watching the records, and
 * writes this container's first record of this run. The generation is one more than in the record a
 * previous run of this container left.
 */
export async function joinPod(config: SupervisorConfig & { sharedDir: string }, log: Logger): Promise<PodContext> {
  let pod: PodSpec;
  try {
    pod = await readPodSpec(config.sharedDir);
  } catch (error) {
    throw new SupervisorError((error as Error).message, ExitCode.invalidConfig);
  }

  const entry = pod.containers.find((container) => container.name === config.name);
  if (entry === undefined) {
    const names = pod.containers.map((container) => container.name).join(', ');
    throw new SupervisorError(`Container ${JSON.stringify(config.name)} is not in the pod spec (containers: ${names}). Set --name to one of them.`, ExitCode.invalidConfig);
  }
  const self: PodContainer = {
    ...entry,
    role: config.role ?? entry.role,
    priority: config.priority ?? entry.priority,
    exitPriority: config.exitPriority ?? entry.exitPriority,
  };
  let readiness: Readiness;
  try {
    readiness = config.readiness ?? parseReadiness(entry.readiness ?? 'started');
  } catch (error) {
    throw new SupervisorError(`${(error as Error).message} (readiness of ${entry.name} in the pod spec)`, ExitCode.invalidConfig);
  }

  // Listening starts before the first record is written, so a record in a live phase always has a listener.
  let liveness: LivenessListener;
  try {
    liveness = await LivenessListener.listen(livenessSocketFile(config.sharedDir, self.name), log);
  } catch (error) {
    const exitCode = error instanceof SocketPathTooLongError ? ExitCode.invalidConfig : ExitCode.internalError;
    throw new SupervisorError((error as Error).message, exitCode);
  }

  const store = await RecordStore.open(config.sharedDir, log, { self: self.name });
  const previous = store.records.get(self.name);
  const writer = new RecordWriter(config.sharedDir, {
    version: 1,
    name: self.name,
    role: self.role,
    priority: self.priority,
    generation: previous === undefined ? 0 : previous.generation + 1,
    phase: 'waiting',
    supervisorPid: process.pid,
    times: {},
  }, (error, record) => {
    log.error({ event: 'record-write-failed', phase: record.phase, err: error }, `writing the record of ${record.name} failed: ${error.message}; the other containers do not see that it is ${record.phase}`);
  });

  await writer.update('waiting');
  if (writer.lastError !== undefined) {
    await store.close();
    await liveness.close();
    throw new SupervisorError(
      `Cannot write the record of ${self.name} to the shared volume ${config.sharedDir}: ${writer.lastError.message}. The volume must be writable by this container's user and have free space.`,
      ExitCode.internalError,
    );
  }
  // Every decision below reads the pod spec, so it carries this container's effective settings too.
  pod = { ...pod, containers: pod.containers.map((container) => (container.name === self.name ? self : container)) };
  return { pod, self, readiness, store, writer, liveness };
}
