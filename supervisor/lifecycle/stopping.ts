import { execa } from 'execa';
import type { CommandRun } from '../child/command-run.js';
import type { SupervisorConfig } from '../config/options.js';
import type { Logger } from '../log.js';
import type { PodContext } from './pod-context.js';
import { allExited, containersToOutlive, stopDeadline } from './stop-order.js';

/** Cause of a stop: a stop signal from the container runtime, or the end of the pod's apps. */
export type StopTrigger = 'signal' | 'apps-finished';

/**
 * Stops the command in the pod's order. It waits until every container of a higher exit priority
 * has exited, so sidecars outlive their apps and stop in reverse launch order. A sidecar then keeps
 * serving for the stop delay, the pre-stop command runs at the end of a Job, and the stop sequence
 * follows. After a stop signal every step shares one budget that ends before kubelet's SIGKILL at
 * terminationGracePeriodSeconds.
 */
export async function stopInOrder(run: CommandRun, trigger: StopTrigger, config: SupervisorConfig, context: PodContext | undefined, env: NodeJS.ProcessEnv, log: Logger): Promise<void> {
  try {
    await stopInOrderSteps(run, trigger, config, context, env, log);
  } catch (error) {
    // The command must stop whatever failed on the way, so the stop sequence runs as a fallback.
    log.error({ event: 'stop-failed', err: error }, `stopping in order failed: ${(error as Error).message}; stopping now`);
    await run.stop(trigger);
  }
}

async function stopInOrderSteps(run: CommandRun, trigger: StopTrigger, config: SupervisorConfig, context: PodContext | undefined, env: NodeJS.ProcessEnv, log: Logger): Promise<void> {
  const requestedAt = Date.now();
  const deadline = trigger === 'signal' && context !== undefined ? stopDeadline(requestedAt, context.pod.terminationGracePeriodSeconds) : Number.POSITIVE_INFINITY;
  // Part of the budget is kept for the stop sequence itself, so waiting never eats all of it.
  const reserveMs = Math.min(config.stopTimeoutMs, (deadline - requestedAt) / 2);

  if (context !== undefined) {
    await context.writer.update('stopping');
    // A command that exits by itself meanwhile ends the wait: there is nothing left to keep serving.
    await Promise.race([waitForOutlived(context, deadline - reserveMs, log), run.exited]);
    if (context.self.role === 'sidecar' && config.stopDelayMs > 0 && !run.hasExited) {
      await sleep(Math.min(config.stopDelayMs, deadline - reserveMs - Date.now()), run.exited);
    }
  }
  if (run.hasExited) {
    return;
  }
  if (trigger === 'apps-finished' && config.preStop !== undefined) {
    await runHook('pre-stop', config.preStop, Math.min(config.stopTimeoutMs, deadline - Date.now()), env, log);
  }

  const timeoutMs = Math.min(config.stopTimeoutMs, deadline - Date.now());
  await run.stop(trigger, timeoutMs);
}

async function waitForOutlived(context: PodContext, waitDeadline: number, log: Logger): Promise<void> {
  const outlived = containersToOutlive(context.pod, context.self);
  if (outlived.length === 0 || allExited(outlived, context.store.records)) {
    return;
  }

  const names = outlived.map((container) => container.name);
  log.info({ event: 'stop-waiting', containers: names }, `waiting for ${names.join(', ')} to exit before stopping`);
  const waitMs = Math.max(0, waitDeadline - Date.now());
  const timeout = Number.isFinite(waitMs) ? AbortSignal.timeout(Math.round(waitMs)) : undefined;
  const done = await context.store.until((records) => (allExited(outlived, records) ? true : undefined), timeout).catch(() => false);
  if (!done) {
    log.warn({ event: 'stop-wait-timeout', containers: names, waitMs: Math.round(waitMs) }, 'the stop budget ran out before those containers exited; stopping now');
  }
}

/**
 * Runs a hook command (pre-stop, drain, hand-off) with its share of the budget as a timeout, its
 * output going to the container's. A failure is logged and returned; the caller decides whether it
 * goes on.
 */
export async function runHook(name: string, argv: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv, log: Logger): Promise<{ ok: boolean; exitCode: number; message: string }> {
  const [file, ...args] = argv;
  const startedAt = Date.now();
  const result = await execa(file!, args, { env, extendEnv: false, reject: false, timeout: Math.max(1, timeoutMs), stdio: ['ignore', 'inherit', 'inherit'] });
  const durationMs = Date.now() - startedAt;
  if (result.exitCode === 0) {
    log.info({ event: name, durationMs }, `the ${name} command succeeded`);
    return { ok: true, exitCode: 0, message: '' };
  }
  log.warn({ event: `${name}-failed`, exitCode: result.exitCode, timedOut: result.timedOut, durationMs }, `the ${name} command failed: ${result.shortMessage}`);
  return { ok: false, exitCode: result.exitCode ?? 1, message: result.shortMessage ?? `exit code ${result.exitCode}` };
}

function sleep(ms: number, cancel: Promise<unknown>): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([cancel, new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]).finally(() => clearTimeout(timer));
}
