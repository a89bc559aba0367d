import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from './atomic.js';

/** Role of a container in the pod: apps do the pod's work, sidecars serve them. */
export type Role = 'app' | 'sidecar';

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

/** One container as the injector describes it to every supervisor of the pod. */
export interface PodContainer {
  name: string;
  role: Role;
  /** Launch priority: higher starts first. */
  priority: number;
  /** Exit priority: higher stops first; the default is the negated launch priority (reverse launch order). */
  exitPriority?: number;
  /** Readiness check of a sidecar, such as `started` or `tcp:8080`. */
  readiness?: string;
}

/** Pod-wide settings, written once by the init container into `<shared>/state/pod.json`. */
export interface PodSpec {
  version: 1;
  restartPolicy: RestartPolicy;
  terminationGracePeriodSeconds: number;
  containers: PodContainer[];
}

export const POD_SPEC_FILE = 'pod.json';

/** Container names are DNS-1123 labels in Kubernetes, which also keeps them safe as file names. */
const CONTAINER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function isContainerName(value: string): boolean {
  return CONTAINER_NAME.test(value);
}

/** Directory of the state volume with one folder per hot-upgrade sidecar, for the state its new version takes over. */
export const HANDOFF_DIR = 'handoff';

export function stateDir(sharedDir: string): string {
  return path.join(sharedDir, 'state');
}

export function logDir(sharedDir: string): string {
  return path.join(sharedDir, 'logs');
}

/** Parses and validates a pod spec, naming the first invalid field. */
export function parsePodSpec(text: string, source: string): PodSpec {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`Invalid pod spec in ${source}: not JSON (${(error as Error).message}).`);
  }

  const spec = value as Partial<PodSpec>;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
    throw new Error(`Invalid pod spec in ${source}: expected a JSON object.`);
  }
  if (spec.version !== 1) {
    throw new Error(`Invalid pod spec in ${source}: version ${JSON.stringify(spec.version)} is not supported, expected 1.`);
  }
  if (!['Always', 'OnFailure', 'Never'].includes(spec.restartPolicy as string)) {
    throw new Error(`Invalid pod spec in ${source}: restartPolicy ${JSON.stringify(spec.restartPolicy)}, expected Always, OnFailure or Never.`);
  }
  if (!Number.isInteger(spec.terminationGracePeriodSeconds) || (spec.terminationGracePeriodSeconds as number) < 0) {
    throw new Error(`Invalid pod spec in ${source}: terminationGracePeriodSeconds ${JSON.stringify(spec.terminationGracePeriodSeconds)}, expected an integer >= 0.`);
  }
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) {
    throw new Error(`Invalid pod spec in ${source}: containers must be a non-empty array.`);
  }
  const names = new Set<string>();
  for (const container of spec.containers) {
    if (typeof container?.name !== 'string' || container.name === '') {
      throw new Error(`Invalid pod spec in ${source}: a container has no name.`);
    }
    if (!isContainerName(container.name)) {
      throw new Error(`Invalid pod spec in ${source}: container name ${JSON.stringify(container.name)} is not a Kubernetes container name (lower-case letters, digits and dashes).`);
    }
    if (names.has(container.name)) {
      throw new Error(`Invalid pod spec in ${source}: container name ${JSON.stringify(container.name)} appears twice.`);
    }
    names.add(container.name);
    if (container.role !== 'app' && container.role !== 'sidecar') {
      throw new Error(`Invalid pod spec in ${source}: container ${container.name} has role ${JSON.stringify(container.role)}, expected app or sidecar.`);
    }
    if (!Number.isInteger(container.priority)) {
      throw new Error(`Invalid pod spec in ${source}: container ${container.name} has priority ${JSON.stringify(container.priority)}, expected an integer.`);
    }
    if (container.exitPriority !== undefined && !Number.isInteger(container.exitPriority)) {
      throw new Error(`Invalid pod spec in ${source}: container ${container.name} has exitPriority ${JSON.stringify(container.exitPriority)}, expected an integer.`);
    }
  }
  return spec as PodSpec;
}

export async function readPodSpec(sharedDir: string): Promise<PodSpec> {
  const file = path.join(stateDir(sharedDir), POD_SPEC_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`Cannot read the pod spec ${file}: ${(error as Error).message}. The init container writes it with \`tandem install DIR --pod-json JSON\`.`);
  }
  return parsePodSpec(text, file);
}

export async function writePodSpec(sharedDir: string, spec: PodSpec): Promise<void> {
  await writeJsonAtomic(path.join(stateDir(sharedDir), POD_SPEC_FILE), spec);
}
