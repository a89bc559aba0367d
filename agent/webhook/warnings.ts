import { LOGS_VOLUME } from '../inject/transform.js';

/** Lists names for a warning: at most three, then a count. */
function listNames(names: readonly string[]): string {
  const listed = names.slice(0, 3).join(', ');
  return names.length > 3 ? `${listed} and ${names.length - 3} more` : listed;
}

/**
 * Returns the warning about stdlog CSI volumes that the injection replaced, which `tandem inject`
 * prints as a report line. In a cluster the admission warnings are all that reach the pod's author.
 */
export function stdlogWarnings(removedStdlogVolumes: readonly string[]): string[] {
  if (removedStdlogVolumes.length === 0) {
    return [];
  }
  return [
    `stdlog CSI volume ${listNames(removedStdlogVolumes)} replaced by tandem's volume ${LOGS_VOLUME} at the same mount paths, ` +
      'where tandem writes <container>/<restart>.log.',
  ];
}
