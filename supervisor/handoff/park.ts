import { ExitCode } from '../exit-codes.js';
import { appsFinished } from '../lifecycle/completion.js';
import type { PodContext } from '../lifecycle/pod-context.js';
import type { Logger } from '../log.js';
import type { ContainerRecord } from '../protocol/record.js';

/**
 * Keeps a hot-upgrade slot's container up without its command: the empty slot, a slot whose
 * version is older than the one serving, and an old slot after its drain. Staying up means kubelet
 * never restarts the container, so an old version cannot come back. The slot exits 0 when it is
 * stopped, or when the pod's apps have finished, as a sidecar does.
 */
export async function park(context: PodContext, shutdown: AbortSignal, reason: string, fields: Partial<ContainerRecord>, log: Logger): Promise<number> {
  await context.writer.update('parked', { ...fields, pid: undefined, reason });
  log.info({ event: 'parked', reason }, `${context.self.name} is parked: ${reason}`);

  const outcome = await context.store
    .until((records) => (appsFinished(context.pod, records) ? 'apps finished' : undefined), shutdown)
    .catch(() => `stopped by ${String(shutdown.reason)}`);
  log.info({ event: 'exited', exitCode: ExitCode.stoppedOnRequest, reason: outcome }, `${context.self.name} was parked; ${outcome}`);
  await context.writer.update('exited', { exitCode: ExitCode.stoppedOnRequest, reason: `parked slot, ${outcome}` });
  return ExitCode.stoppedOnRequest;
}
