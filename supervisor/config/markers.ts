import type { Role } from '../protocol/pod.js';

/**
 * Container settings that platforms express as environment variables of the container, read when
 * neither a flag nor the pod spec sets them (a container wrapped by hand, without the injector):
 * - role `sidecar`: ECI_SIDECAR_CONTAINER=true or ECI_CONTAINER_TYPE=sidecar (Alibaba Cloud ECI),
 *   KRUISE_TERMINATE_SIDECAR_WHEN_JOB_EXIT=true (OpenKruise's Job sidecar terminator), or
 *   IS_INJECTED=true (OpenKruise marks containers injected by a SidecarSet with it);
 * - launch priority (higher starts first): KRUISE_CONTAINER_PRIORITY, then ECI_CONTAINER_LAUNCH_PRIORITY;
 * - exit priority (higher stops first): ECI_CONTAINER_EXIT_PRIORITY.
 * docs/markers.md maps each variable to its platform's documented meaning.
 */
export interface MarkerSettings {
  role?: Role;
  priority?: number;
  exitPriority?: number;
}

const SIDECAR_MARKERS: readonly [string, string][] = [
  ['ECI_SIDECAR_CONTAINER', 'true'],
  ['ECI_CONTAINER_TYPE', 'sidecar'],
  ['KRUISE_TERMINATE_SIDECAR_WHEN_JOB_EXIT', 'true'],
  ['IS_INJECTED', 'true'],
];

/** Reads the platform markers of the environment, throwing on a priority that is not an integer. */
export function readMarkers(env: NodeJS.ProcessEnv): MarkerSettings {
  const settings: MarkerSettings = {};
  if (SIDECAR_MARKERS.some(([name, value]) => env[name]?.trim().toLowerCase() === value)) {
    settings.role = 'sidecar';
  }
  const priority = readInteger(env, 'KRUISE_CONTAINER_PRIORITY') ?? readInteger(env, 'ECI_CONTAINER_LAUNCH_PRIORITY');
  if (priority !== undefined) {
    settings.priority = priority;
  }
  const exitPriority = readInteger(env, 'ECI_CONTAINER_EXIT_PRIORITY');
  if (exitPriority !== undefined) {
    settings.exitPriority = exitPriority;
  }
  return settings;
}

function readInteger(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name]?.trim();
  if (text === undefined || text === '') {
    return undefined;
  }
  if (!/^[+-]?\d+$/.test(text)) {
    throw new Error(`Invalid ${name} ${JSON.stringify(env[name])}: expected an integer such as 1 or -1.`);
  }
  return Number(text);
}
