import type { PodContainer, PodSpec } from '../protocol/pod.js';
import type { Records } from '../protocol/store.js';

/**
 * Returns a container's exit priority: higher stops first. Without an explicit value, containers
 * stop in reverse launch order, so sidecars (launched first) stop after the apps they serve.
 */
export function exitPriorityOf(container: PodContainer): number {
  return container.exitPriority ?? -container.priority;
}

/** Containers that must have exited before this one stops its command. */
export function containersToOutlive(pod: PodSpec, self: PodContainer): PodContainer[] {
  const own = exitPriorityOf(self);
  return pod.containers.filter((container) => container.name !== self.name && exitPriorityOf(container) > own);
}

/**
 * Reports whether every given container has exited. A container without a record never started
 * in this pod, so there is nothing to wait for.
 */
export function allExited(containers: readonly PodContainer[], records: Records): boolean {
  return containers.every((container) => {
    const record = records.get(container.name);
    return record === undefined || record.phase === 'exited';
  });
}

/**
 * Returns the time by which every container of the pod must be stopped after a stop request. It
 * comes before kubelet's SIGKILL at terminationGracePeriodSeconds, by a margin of a fifth of the
 * grace period (at most 2 s) in which the supervisors write their records and exit.
 */
export function stopDeadline(requestedAt: number, terminationGracePeriodSeconds: number): number {
  const graceMs = terminationGracePeriodSeconds * 1000;
  return requestedAt + graceMs - Math.min(2000, graceMs / 5);
}
