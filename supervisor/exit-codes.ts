import { constants } from 'node:os';

/**
 * Exit codes of `tandem supervise`. Apart from these, the supervisor exits with its command's own
 * code, or 128+N when signal N killed the command, as a shell and Kubernetes report it.
 */
export const ExitCode = {
  /** A sidecar that the supervisor stopped because the pod's apps finished. */
  stoppedOnRequest: 0,
  /** Invalid options or an unreadable pod spec: nothing was started. */
  invalidConfig: 2,
  /** A sidecar this container depends on was not ready within the startup timeout, or died. */
  dependencyFailed: 124,
  /** The supervisor itself failed, for example it could not write to the shared volume. */
  internalError: 125,
  /** The command exists but cannot be executed (permissions, wrong format). */
  cannotExecute: 126,
  /** The command was not found. */
  notFound: 127,
} as const;

/** Returns 128+N for signal N, the code a shell and kubelet report for a death by that signal. */
export function signalExitCode(signal: NodeJS.Signals): number {
  const number = (constants.signals as Record<string, number>)[signal];
  return 128 + (number ?? 0);
}
