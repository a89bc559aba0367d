import type { PodSpec, RestartPolicy } from '../protocol/pod.js';
import type { ContainerRecord } from '../protocol/record.js';
import type { Records } from '../protocol/store.js';

/**
 * Reports whether an app container has finished for good under the pod's restartPolicy: with
 * Never any exit is final, with OnFailure only exit 0 (kubelet restarts a failed container), and
 * with Always no exit is final.
 */
export function isFinished(record: ContainerRecord | undefined, restartPolicy: RestartPolicy): boolean {
  if (record?.phase !== 'exited') {
    return false;
  }
  if (restartPolicy === 'Never') {
    return true;
  }
  return restartPolicy === 'OnFailure' && record.exitCode === 0;
}

/** Reports whether every app container of the pod has finished, so its sidecars can stop. */
export function appsFinished(pod: PodSpec, records: Records): boolean {
  if (pod.restartPolicy === 'Always') {
    return false;
  }
  return pod.containers.filter((container) => container.role === 'app').every((app) => isFinished(records.get(app.name), pod.restartPolicy));
}
