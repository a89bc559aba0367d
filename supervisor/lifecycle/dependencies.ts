import type { PodContainer, PodSpec } from '../protocol/pod.js';
import type { ContainerRecord } from '../protocol/record.js';
import type { Records } from '../protocol/store.js';

/** Sidecars that must be ready before a container of the given priority starts its command. */
export function dependenciesOf(pod: PodSpec, self: { name: string; priority: number }): PodContainer[] {
  return pod.containers.filter((container) => container.role === 'sidecar' && container.name !== self.name && container.priority > self.priority);
}

/**
 * Reports whether a sidecar no longer keeps the apps waiting: it is ready, or it is a parked
 * hot-upgrade slot, which serves nothing while its other slot serves.
 */
export function isServingOrParked(record: ContainerRecord | undefined): boolean {
  return record?.phase === 'ready' || record?.phase === 'parked';
}

/** Outcome of checking dependencies: all ready, still waiting, or one that exited and cannot become ready. */
export type DependencyState = { kind: 'ready' } | { kind: 'failed'; name: string; reason: string };

/** Returns the state once it is decided, or undefined while some dependency is still starting. */
export function checkDependencies(dependencies: readonly PodContainer[], records: Records): DependencyState | undefined {
  let waiting = false;
  for (const dependency of dependencies) {
    const record = records.get(dependency.name);
    if (record?.phase === 'exited') {
      return { kind: 'failed', name: dependency.name, reason: `sidecar ${dependency.name} exited with code ${record.exitCode} before it was ready` };
    }
    if (!isServingOrParked(record)) {
      waiting = true;
    }
  }
  return waiting ? undefined : { kind: 'ready' };
}

/** Names the dependencies that are not ready yet, for the startup timeout message. */
export function notReady(dependencies: readonly PodContainer[], records: Records): string[] {
  return dependencies.filter((dependency) => !isServingOrParked(records.get(dependency.name))).map((dependency) => dependency.name);
}
