import type { Logger } from '../log.js';
import { descendantsOf, isRunning } from './processes.js';
import { signalTree } from './tree.js';

const POLL_INTERVAL_MS = 50;

/**
 * Stops a process tree: the stop signal to every process of the tree, then SIGKILL to what is left
 * when the timeout runs out. The tree is listed before the signal, so descendants that outlive the
 * main process (re-parented elsewhere once it exits) still get the SIGKILL at the same deadline.
 * Resolves once the main process has exited and the listed processes are gone or killed.
 */
export async function stopTree(pid: number, signal: NodeJS.Signals, timeoutMs: number, exited: Promise<unknown>, log: Logger): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const members = descendantsOf(pid);
  log.info({ event: 'stopping', pid, signal, stopTimeoutMs: timeoutMs, processes: members.length + 1 }, `sending ${signal} to the process tree of ${pid}`);
  await signalTree(pid, signal).catch((error: unknown) => log.error({ event: 'signal-failed', pid, signal, err: error }, 'sending the stop signal failed'));

  const mainExited = await waitUntil(deadline, exited);
  const survivors = (): number[] => members.filter(isRunning);
  if (mainExited) {
    await pollUntil(deadline, () => survivors().length === 0);
  }

  const remaining = survivors();
  if (!mainExited || remaining.length > 0) {
    log.warn({ event: 'kill', pid, stopTimeoutMs: timeoutMs, pids: remaining }, `processes of the tree of ${pid} outlived the stop timeout; sending SIGKILL`);
    if (!mainExited) {
      await signalTree(pid, 'SIGKILL').catch((error: unknown) => log.error({ event: 'signal-failed', pid, signal: 'SIGKILL', err: error }, 'sending SIGKILL failed'));
    }
    for (const member of remaining) {
      killQuietly(member);
    }
    await exited;
  }
}

/** Resolves true when `done` settles before the deadline, false at the deadline. */
async function waitUntil(deadline: number, done: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
  });
  const outcome = await Promise.race([done.then(() => true), timedOut]);
  clearTimeout(timer);
  return outcome;
}

async function pollUntil(deadline: number, check: () => boolean): Promise<void> {
  while (!check() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // The process ended on its own in the meantime.
  }
}
