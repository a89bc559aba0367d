/**
 * Role, launch priority and readiness check of each regular container. Only literal env values
 * count, because a `valueFrom` is unknown until the pod runs. Precedence, first match wins:
 *
 * Role:
 *   1. `sidecar` when env ECI_SIDECAR_CONTAINER is `true` or ECI_CONTAINER_TYPE is `sidecar`
 *      (the variables of Alibaba Cloud ECI), when KRUISE_TERMINATE_SIDECAR_WHEN_JOB_EXIT is `true`
 *      (OpenKruise's Job sidecar terminator), or when IS_INJECTED is `true` (OpenKruise marks
 *      every container that a SidecarSet injected with it).
 *   2. `sidecar` when the container is named in the pod annotation `tandem.dev/sidecars`
 *      (a comma-separated list of container names).
 *   3. `app` otherwise.
 * Priority (an integer; higher starts first):
 *   1. env KRUISE_CONTAINER_PRIORITY (OpenKruise container launch priority).
 *   2. env ECI_CONTAINER_LAUNCH_PRIORITY.
 *   3. 1 for a sidecar, 0 for an app.
 * Exit priority (an integer; higher stops first):
 *   1. env ECI_CONTAINER_EXIT_PRIORITY.
 *   2. none, which the supervisor reads as the negated launch priority (reverse launch order).
 * Readiness (sidecars only):
 *   1. the pod annotation `readiness.tandem.dev/<container>`.
 *   2. `started`.
 */
import { parseReadiness } from '../../supervisor/lifecycle/readiness-spec.js';
import type { PodContainer } from '../../supervisor/protocol/pod.js';
import { InjectError } from './errors.js';
import { findEnvVar, literalEnvValue, type Container } from './k8s.js';

export const SIDECARS_ANNOTATION = 'tandem.dev/sidecars';
export const READINESS_ANNOTATION_PREFIX = 'readiness.tandem.dev/';
export const PRIORITY_VARIABLES = ['KRUISE_CONTAINER_PRIORITY', 'ECI_CONTAINER_LAUNCH_PRIORITY'] as const;
export const EXIT_PRIORITY_VARIABLES = ['ECI_CONTAINER_EXIT_PRIORITY'] as const;

/** Literal env values that mark a container as a sidecar. */
const SIDECAR_MARKERS: readonly [string, string][] = [
  ['ECI_SIDECAR_CONTAINER', 'true'],
  ['ECI_CONTAINER_TYPE', 'sidecar'],
  ['KRUISE_TERMINATE_SIDECAR_WHEN_JOB_EXIT', 'true'],
  ['IS_INJECTED', 'true'],
];
export const DEFAULT_SIDECAR_READINESS = 'started';

function listedSidecars(annotations: Readonly<Record<string, string>>, containers: readonly Container[], owner: string): Set<string> {
  const text = annotations[SIDECARS_ANNOTATION];
  if (text === undefined) {
    return new Set();
  }

  const names = text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  const known = new Set(containers.map((container) => container.name));
  for (const name of names) {
    if (!known.has(name)) {
      throw new InjectError(
        `Annotation ${SIDECARS_ANNOTATION} in ${owner} names container ${JSON.stringify(name)}, which is not a regular container ` +
          `of the pod (containers: ${[...known].join(', ')}). Fix the name or remove it from the annotation.`,
      );
    }
  }
  return new Set(names);
}

function parsePriority(container: Container, owner: string, variables: readonly string[] = PRIORITY_VARIABLES): number | undefined {
  for (const variable of variables) {
    const entry = findEnvVar(container, variable);
    if (entry === undefined) {
      continue;
    }
    if (entry.valueFrom !== undefined) {
      throw new InjectError(
        `Container ${container.name} in ${owner} sets ${variable} with valueFrom, so its launch priority is unknown until the pod runs. ` +
          `Set ${variable} to a literal integer.`,
      );
    }
    const text = (entry.value ?? '').trim();
    const priority = Number(text);
    if (!/^[+-]?\d+$/.test(text) || !Number.isSafeInteger(priority)) {
      throw new InjectError(
        `Invalid ${variable} ${JSON.stringify(entry.value ?? '')} in container ${container.name} of ${owner}: expected an integer such as 1 or -1.`,
      );
    }
    return priority;
  }
  return undefined;
}

/** Returns the entry of every regular container for tandem's pod spec, in pod order. */
export function describeContainers(
  containers: readonly Container[],
  annotations: Readonly<Record<string, string>>,
  owner: string,
): PodContainer[] {
  const listed = listedSidecars(annotations, containers, owner);

  return containers.map((container) => {
    const isSidecar = SIDECAR_MARKERS.some(([variable, value]) => literalEnvValue(container, variable) === value) || listed.has(container.name);
    const priority = parsePriority(container, owner) ?? (isSidecar ? 1 : 0);
    const exitPriority = parsePriority(container, owner, EXIT_PRIORITY_VARIABLES);
    const order = exitPriority === undefined ? { priority } : { priority, exitPriority };
    const readinessKey = `${READINESS_ANNOTATION_PREFIX}${container.name}`;
    const readiness = annotations[readinessKey];

    if (!isSidecar) {
      if (readiness !== undefined) {
        throw new InjectError(
          `Annotation ${readinessKey} in ${owner} sets a readiness check for container ${container.name}, which is an app. ` +
            `Readiness checks apply to sidecars only. Remove the annotation, or list the container in ${SIDECARS_ANNOTATION}.`,
        );
      }
      return { name: container.name, role: 'app', ...order };
    }

    if (readiness !== undefined) {
      try {
        parseReadiness(readiness.trim());
      } catch (error) {
        throw new InjectError(`Annotation ${readinessKey} in ${owner}: ${(error as Error).message}`);
      }
    }
    return { name: container.name, role: 'sidecar', ...order, readiness: readiness?.trim() ?? DEFAULT_SIDECAR_READINESS };
  });
}
