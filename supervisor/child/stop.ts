import type { Logger } from '../log.js';
import { signalTree } from './tree.js';

/**
 * Stops a process tree: the stop signal to every process of the tree, then SIGKILL to what is left
 * when the timeout runs out. Resolves when `exited` resolves.
 */
export async function stopTree(pid: number, signal: NodeJS.Signals, timeoutMs: number, exited: Promise<unknown>, log: Logger): Promise<void> {
  log.info({ event: 'stopping', pid, signal, stopTimeoutMs: timeoutMs }, `sending ${signal} to the process tree of ${pid}`);
  await signalTree(pid, signal).catch((error: unknown) => log.error({ event: 'signal-failed', pid, signal, err: error }, 'sending the stop signal failed'));

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const outcome = await Promise.race([exited.then(() => 'exited' as const), timedOut]);
  clearTimeout(timer);

  if (outcome === 'timeout') {
    log.warn({ event: 'kill', pid, stopTimeoutMs: timeoutMs }, `the process tree of ${pid} outlived the stop timeout; sending SIGKILL`);
    await signalTree(pid, 'SIGKILL').catch((error: unknown) => log.error({ event: 'signal-failed', pid, signal: 'SIGKILL', err: error }, 'sending SIGKILL failed'));
    await exited;
  }
}
