import type { Logger } from '../log.js';
import { childrenOf, isRunning } from './processes.js';
import { signalTree } from './tree.js';

const POLL_INTERVAL_MS = 50;

export interface LeftoverPolicy {
  /** Time that processes left by the command get to end by themselves. */
  waitMs: number;
  stopSignal: NodeJS.Signals;
  stopTimeoutMs: number;
}

/**
 * Ends what the command left running after it exited (daemons, background jobs), so that nothing
 * outlives the container's supervisor: a bounded wait, then the stop signal to each leftover tree,
 * then SIGKILL. Leftovers are the other children of the reaper that adopted them.
 */
export async function settleLeftovers(reaperPid: number, policy: LeftoverPolicy, log: Logger): Promise<void> {
  const find = (): number[] => childrenOf(reaperPid).filter((pid) => pid !== process.pid);
  let leftovers = find();
  if (leftovers.length === 0) {
    return;
  }

  log.info({ event: 'leftovers', pids: leftovers, waitMs: policy.waitMs }, `the command left ${leftovers.length} processes running; waiting for them to exit`);
  leftovers = await waitUntilGone(find, policy.waitMs);
  if (leftovers.length === 0) {
    return;
  }

  log.info({ event: 'leftovers-stopping', pids: leftovers, signal: policy.stopSignal }, `sending ${policy.stopSignal} to ${leftovers.length} leftover processes`);
  await Promise.all(leftovers.map((pid) => signalTree(pid, policy.stopSignal).catch(() => undefined)));
  leftovers = await waitUntilGone(find, policy.stopTimeoutMs);
  if (leftovers.length === 0) {
    return;
  }

  log.warn({ event: 'leftovers-kill', pids: leftovers }, `leftover processes outlived the stop timeout; sending SIGKILL`);
  await Promise.all(leftovers.map((pid) => signalTree(pid, 'SIGKILL').catch(() => undefined)));
  await waitUntilGone(find, policy.stopTimeoutMs);
}

async function waitUntilGone(find: () => number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let remaining = find();
  while (remaining.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    remaining = find().filter(isRunning);
  }
  return remaining;
}
