import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { SupervisorConfig } from './config/options.js';
import { CommandRun } from './child/command-run.js';
import { tolerateClosedStdio } from './child/output.js';
import { execFormatError } from './child/exec-format.js';
import { settleLeftovers } from './child/leftovers.js';
import { findReaper, preferRuntimeTools } from './child/processes.js';
import type { ChildExit } from './child/spawn.js';
import { ExitCode, signalExitCode } from './exit-codes.js';
import { appsFinished } from './lifecycle/completion.js';
import { checkDependencies, dependenciesOf, notReady } from './lifecycle/dependencies.js';
import { waitUntilReady } from './lifecycle/readiness.js';
import { stopInOrder, type StopTrigger } from './lifecycle/stopping.js';
import { joinPod, SupervisorError, type PodContext } from './lifecycle/pod-context.js';
import { createLogger, type Logger } from './log.js';
import { CriLogWriter } from './logs/cri-writer.js';
import { MAX_SOCKET_PATH_BYTES } from './protocol/liveness.js';
import { HANDOFF_DIR, logDir, stateDir } from './protocol/pod.js';
import { onSignals, SHUTDOWN_SIGNALS } from './signals.js';
import { handoffSocketFile, Listeners, PortInUseError } from './handoff/listeners.js';
import { park } from './handoff/park.js';
import { waitUntilServing } from './handoff/serving.js';
import { slotOf, type Slot } from './handoff/slot.js';
import { drainRequested, planSlot, Takeover } from './handoff/takeover.js';
import { runHook } from './lifecycle/stopping.js';
import type { ContainerRecord } from './protocol/record.js';

/**
 * Bytes of log copy that may wait for the disk before records are dropped. Bursts of 100 MB at
 * about 80 MB/s, measured on a 2-core machine, fit without a drop at this size.
 */
const MAX_QUEUED_LOG_BYTES = 32 * 1024 * 1024;

/** Attempts of a take-over whose new version exits or is never ready, before the slot parks. */
const TAKEOVER_ATTEMPTS = 3;
/** Wait before the second attempt of a take-over; the third waits twice as long. */
const TAKEOVER_RETRY_MS = 1000;

/** Time before the first in-place restart of a crashed sidecar; it doubles up to the maximum. */
const RESTART_BACKOFF_MS = 1000;
const MAX_RESTART_BACKOFF_MS = 60_000;
/** Run time after which a crash restarts with the first back-off again: kubelet's 10 minutes. */
const BACKOFF_RESET_MS = 10 * 60_000;

/**
 * Runs one container's command under supervision and returns the code the container exits with.
 * The supervisor joins the pod, waits for the sidecars this container depends on, and runs the
 * command. It stops the command in the pod's order on request, or when the pod's apps are done
 * (sidecars), restarts a sidecar that crashed while serving, and reports the exit.
 */
export async function supervise(config: SupervisorConfig, argv: readonly string[]): Promise<number> {
  const log = createLogger(config.logLevel, { container: config.name });
  const [command, ...args] = argv;
  if (command === undefined) {
    log.error({ event: 'invalid-config' }, 'no command given: use `tandem supervise [options] -- COMMAND [ARGS...]`');
    return ExitCode.invalidConfig;
  }
  const commandEnv = childEnvironment();
  preferRuntimeTools();
  tolerateClosedStdio((stream, error) => log.warn({ event: 'output-closed', stream, err: error }, `the container's ${stream} was closed; output now goes to the log copy only`));

  // Handlers go in before anything else, so a stop request during the wait is never lost.
  const stopRequest = new AbortController();
  let run: CommandRun | undefined;
  let context: PodContext | undefined;
  let stopping: Promise<void> | undefined;
  const removeHandlers = onSignals((signal) => {
    log.info({ event: 'signal', signal, pid: run?.pid }, `received ${signal}`);
    const isStopRequest = signal === 'SIGTERM' || signal === config.stopSignal || (run === undefined && SHUTDOWN_SIGNALS.includes(signal));
    if (isStopRequest && !stopRequest.signal.aborted) {
      stopRequest.abort(signal);
      if (run !== undefined) {
        stopping = stopInOrder(run, 'signal', config, context, commandEnv, log);
      }
    } else {
      run?.forward(signal);
    }
  });

  let listeners: Listeners | undefined;
  try {
    context = config.sharedDir === undefined ? undefined : await joinPod({ ...config, sharedDir: config.sharedDir }, log);
    const slot = context ? hotUpgradeSlot(config.name, commandEnv) : undefined;
    if (slot !== undefined && config.listen.some((spec) => spec.kind === 'tcp')) {
      checkHandoffSocketPaths(config.sharedDir!, slot);
    }
    let takeover: Takeover | undefined;
    while (slot !== undefined && context !== undefined) {
      const plan = await planSlot(slot, context, stopRequest.signal, log).catch(() => undefined);
      if (plan === undefined) {
        return await stoppedWhileWaiting(context, stopRequest.signal, log);
      }
      if (plan.kind === 'park') {
        return await park(context, stopRequest.signal, plan.reason, { slotVersion: slot.version, handoff: undefined }, log);
      }
      takeover = plan.kind === 'take-over' ? new Takeover(slot, plan.peer, context, log) : undefined;
      await context.writer.update('waiting', { slotVersion: slot.version, handoff: takeover?.begin() });
      if (config.listen.length === 0) {
        break;
      }
      // Both slots may decide to start alone when they start together. The one that finds the port
      // taken by the other slot decides again, so it waits for that slot and then takes over or parks.
      const peerStarting = takeover === undefined && isLive(context.store.records.get(slot.peer));
      try {
        listeners = await openListeners(config, slot, takeover, peerStarting ? 0 : config.startupTimeoutMs, log);
        break;
      } catch (error) {
        if (takeover !== undefined) {
          return await failTakeover(takeover, `its listening sockets cannot be opened: ${(error as Error).message}`, undefined, context, stopRequest.signal, log);
        }
        if (!(peerStarting && error instanceof PortInUseError)) {
          throw new SupervisorError((error as Error).message, ExitCode.internalError);
        }
        log.info({ event: 'handoff-replan', peer: slot.peer }, `${slot.peer} started at the same time and listens on the port; deciding again`);
        await context.writer.update('waiting', { handoff: { phase: 'waiting-turn', from: slot.peer, fromVersion: slot.altVersion ?? '?', fromGeneration: -1, requestedAt: new Date().toISOString() } });
      }
    }

    const early = context ? await waitForTurn(context, config, stopRequest.signal, log) : undefined;
    if (early !== undefined) {
      return early;
    }

    const formatError = execFormatError(command, commandEnv);
    if (formatError !== undefined) {
      throw new SupervisorError(formatError, ExitCode.cannotExecute);
    }

    if (config.listen.length > 0) {
      listeners ??= await openListeners(config, slot, takeover, config.startupTimeoutMs, log).catch((error: Error) => {
        throw new SupervisorError(error.message, ExitCode.internalError);
      });
      Object.assign(commandEnv, listeners.activationEnv());
    }
    if (slot !== undefined) {
      commandEnv.TANDEM_HANDOFF_DIR = await handoffDirectory(config.sharedDir!, slot);
    }
    if (takeover !== undefined && config.handoffCommand !== undefined) {
      const hook = await runHook('handoff', config.handoffCommand, config.startupTimeoutMs, { ...commandEnv, TANDEM_HANDOFF_FROM: takeover.peer.name, TANDEM_HANDOFF_FROM_VERSION: takeover.record.fromVersion }, log);
      if (!hook.ok) {
        return await failTakeover(takeover, `the hand-off command failed: ${hook.message}`, listeners, context!, stopRequest.signal, log);
      }
    }

    let takeoverAttempts = 0;
    for (let restarts = 0; ; restarts += 1) {
      const runStartedAt = performance.now();
      const sidecarStop = new AbortController();
      const slotRun: SlotRun = { slot, takeover, listeners, drainedFor: undefined, failure: undefined };
      run = startCommand(command, args, commandEnv, config, context, log, sidecarStop.signal, slotRun, (trigger) => {
        stopping ??= stopInOrder(run!, trigger, config, context, commandEnv, log);
      }, (by, rearm) => {
        if (stopping !== undefined) {
          return;
        }
        const draining = drainForPeer(run!, by, slotRun, config, context!, commandEnv, log).then((drained) => {
          // A drain called off because the new slot died leaves this slot serving, ready for the next request.
          if (!drained && stopping === draining) {
            stopping = undefined;
            rearm();
          }
        });
        stopping = draining;
      });
      const exit = await finishCommand(run, config, context, log);
      sidecarStop.abort();
      await stopping;
      stopping = undefined;

      if (slotRun.drainedFor !== undefined && context !== undefined) {
        const by = slotRun.drainedFor;
        await listeners?.close();
        const drained = { for: by.name, forGeneration: by.generation, drainMs: slotRun.drainMs ?? 0, exitCode: exit.rawExitCode ?? exit.exitCode };
        return await park(context, stopRequest.signal, `drained for ${by.name} (version ${by.slotVersion ?? '?'})`, { drained, exitCode: undefined }, log);
      }
      if (takeover !== undefined && !run.becameReady && !stopRequest.signal.aborted) {
        // The old version was never asked to drain, so it still serves while this slot retries or parks.
        takeoverAttempts += 1;
        const reason = slotRun.failure ?? `the new version exited with code ${exit.rawExitCode ?? exit.exitCode} before it was ready`;
        if (takeoverAttempts >= TAKEOVER_ATTEMPTS) {
          return await failTakeover(takeover, `${reason} (attempt ${takeoverAttempts} of ${TAKEOVER_ATTEMPTS})`, listeners, context!, stopRequest.signal, log);
        }
        if (!(await retryTakeover(takeover, reason, takeoverAttempts, context!, stopRequest.signal, log))) {
          await context!.writer.update('exited', { exitCode: ExitCode.stoppedOnRequest, reason: 'stopped while waiting to retry the take-over' });
          return ExitCode.stoppedOnRequest;
        }
        run = undefined;
        continue;
      }
      if (!shouldRestart(run, exit, context, stopRequest.signal)) {
        // A take-over cut short by a stop request is recorded as failed, so its record does not stay at `starting`.
        const aborted = takeover !== undefined && !run.becameReady ? takeover.failureFields('stopped before the new version was ready') : {};
        await context?.writer.update('exited', { exitCode: exit.exitCode, rawExitCode: exit.rawExitCode, signal: exit.signal, ...aborted });
        return exit.exitCode;
      }
      takeover = undefined;
      if (performance.now() - runStartedAt >= BACKOFF_RESET_MS) {
        // As kubelet does, a command that ran long enough starts its back-off over.
        restarts = 0;
      }
      const resumed = await backOff(restarts, exit, context!, stopRequest.signal, log);
      if (!resumed) {
        await context!.writer.update('exited', { exitCode: ExitCode.stoppedOnRequest, rawExitCode: exit.exitCode, reason: 'stopped while waiting to restart' });
        return ExitCode.stoppedOnRequest;
      }
      run = undefined;
    }
  } catch (error) {
    const exitCode = error instanceof SupervisorError ? error.exitCode : ExitCode.internalError;
    // A SupervisorError is an expected outcome with a message for the user; anything else gets its stack.
    log.error({ event: 'failed', exitCode, ...(error instanceof SupervisorError ? {} : { err: error }) }, (error as Error).message);
    await context?.writer.update('exited', { exitCode, reason: (error as Error).message }).catch(() => undefined);
    return exitCode;
  } finally {
    removeHandlers();
    await listeners?.close();
    await context?.store.close();
    // The listener closes only after the last record is written: peers read its end as this container's death.
    context?.liveness.close();
  }
}

/**
 * Reports whether a sidecar's command should be restarted in place: it crashed (non-zero exit) on
 * its own after it had been ready, and the pod still needs it. A sidecar that fails before it is
 * ever ready is not restarted, so the apps waiting for it fail at once instead of at their timeout.
 */
function shouldRestart(run: CommandRun, exit: CommandExit, context: PodContext | undefined, stopRequest: AbortSignal): boolean {
  if (context === undefined || context.self.role !== 'sidecar' || run.stopReason !== undefined || stopRequest.aborted) {
    return false;
  }
  return exit.exitCode !== 0 && exit.spawnFailed !== true && run.becameReady && !appsFinished(context.pod, context.store.records);
}

/**
 * Waits before an in-place restart, with exponential back-off as kubelet uses for containers.
 * Returns false when the wait ends because the pod no longer needs the sidecar.
 */
async function backOff(restarts: number, exit: CommandExit, context: PodContext, stopRequest: AbortSignal, log: Logger): Promise<boolean> {
  const delayMs = Math.min(RESTART_BACKOFF_MS * 2 ** restarts, MAX_RESTART_BACKOFF_MS);
  log.warn({ event: 'restarting', exitCode: exit.exitCode, restarts: restarts + 1, backoffMs: delayMs }, `${context.self.name} crashed with code ${exit.exitCode}; restart ${restarts + 1} in ${delayMs} ms`);
  await context.writer.update('waiting', { exitCode: exit.exitCode, restarts: restarts + 1, reason: `restarting after exit code ${exit.exitCode}` });

  const outcome = await context.store
    .until((records) => (appsFinished(context.pod, records) ? 'apps-finished' : undefined), AbortSignal.any([stopRequest, AbortSignal.timeout(delayMs)]))
    .catch(() => (stopRequest.aborted ? 'stop-requested' : 'resume'));
  return outcome === 'resume';
}

/**
 * Waits until this container may start its command. Returns an exit code when it must not start:
 * a sidecar whose apps already finished, or a stop request. A failed dependency or the startup
 * timeout throws a SupervisorError naming the sidecars.
 */
async function waitForTurn(context: PodContext, config: SupervisorConfig, shutdown: AbortSignal, log: Logger): Promise<number | undefined> {
  const { pod, self, store, writer } = context;
  if (self.role === 'sidecar' && appsFinished(pod, store.records)) {
    log.info({ event: 'not-started', reason: 'apps-finished' }, 'the pod’s apps have already finished; the sidecar does not start');
    await writer.update('exited', { exitCode: ExitCode.stoppedOnRequest, reason: 'apps already finished' });
    return ExitCode.stoppedOnRequest;
  }

  const dependencies = dependenciesOf(pod, self);
  if (dependencies.length === 0) {
    return undefined;
  }
  log.info({ event: 'waiting', dependencies: dependencies.map((dependency) => dependency.name) }, 'waiting for sidecars to be ready');

  const waitStartedAt = performance.now();
  const timeout = AbortSignal.timeout(config.startupTimeoutMs);
  try {
    const state = await store.until(
      (records) => (self.role === 'sidecar' && appsFinished(pod, records) ? ({ kind: 'apps-finished' } as const) : checkDependencies(dependencies, records)),
      AbortSignal.any([shutdown, timeout]),
    );
    if (state.kind === 'apps-finished') {
      log.info({ event: 'not-started', reason: 'apps-finished' }, 'the pod’s apps finished while waiting; the sidecar does not start');
      await writer.update('exited', { exitCode: ExitCode.stoppedOnRequest, reason: 'apps finished before it started' });
      return ExitCode.stoppedOnRequest;
    }
    if (state.kind === 'failed') {
      throw new SupervisorError(`${state.reason}; the command of ${self.name} was not started`, ExitCode.dependencyFailed);
    }
    log.info({ event: 'dependencies-ready', waitMs: Math.round(performance.now() - waitStartedAt) }, 'sidecars are ready');
    return undefined;
  } catch (error) {
    if (error instanceof SupervisorError) {
      throw error;
    }
    if (shutdown.aborted) {
      return stoppedWhileWaiting(context, shutdown, log);
    }
    const names = notReady(dependencies, store.records).join(', ');
    throw new SupervisorError(`${names} not ready after ${config.startupTimeoutMs / 1000}s; the command of ${self.name} was not started`, ExitCode.dependencyFailed);
  }
}

/** Hot-upgrade state of one run of a sidecar's command. */
interface SlotRun {
  slot: Slot | undefined;
  /** Set while this run takes over from the other slot. */
  takeover: Takeover | undefined;
  listeners: Listeners | undefined;
  /** The slot this run was drained for, once the other slot asked. */
  drainedFor: ContainerRecord | undefined;
  drainMs?: number;
  /** Reason a take-over failed, set when this run never became ready in time. */
  failure: string | undefined;
}

/**
 * Starts the command with the log copy and records it. A sidecar is checked for readiness, and
 * `onStop` is called once the pod's apps have finished so that it stops in the pod's order. A
 * hot-upgrade slot also finishes its take-over once ready, and calls `onDrain` when the other slot
 * takes over from it.
 */
function startCommand(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  config: SupervisorConfig,
  context: PodContext | undefined,
  log: Logger,
  cancel: AbortSignal,
  slotRun: SlotRun,
  onStop: (trigger: StopTrigger) => void,
  onDrain: (by: ContainerRecord, rearm: () => void) => void,
): CommandRun {
  const copy = context && config.logCopy && config.sharedDir !== undefined ? openLogCopy(config, context, log) : undefined;
  const run = new CommandRun(command, args, env, config, log, copy, slotRun.listeners?.fds ?? []);
  const pid = run.pid;
  if (pid === undefined) {
    return run;
  }

  log.info({ event: 'started', pid, command }, `started ${command}`);
  if (context === undefined) {
    return run;
  }
  void context.writer.update('running', { pid, reason: undefined });
  if (context.self.role !== 'sidecar') {
    return run;
  }

  const startedAt = performance.now();
  const { takeover, listeners, slot } = slotRun;
  let readyTimer: NodeJS.Timeout | undefined;
  if (takeover !== undefined) {
    // A new version that never becomes ready is stopped, and the old one keeps serving.
    readyTimer = setTimeout(() => {
      slotRun.failure = `the new version was not ready within ${config.startupTimeoutMs / 1000}s`;
      void run.stop('handoff-failed');
    }, config.startupTimeoutMs);
  }
  void becomeReady(run, context, listeners, env, log).then(async (ready) => {
    clearTimeout(readyTimer);
    if (!ready || run.stopReason !== undefined) {
      return;
    }
    run.becameReady = true;
    log.info({ event: 'ready', readiness: context.readiness.kind, readyMs: Math.round(performance.now() - startedAt) }, `${context.self.name} is ready`);
    await context.writer.update('ready', { pid, ...(takeover ? { handoff: takeover.ready() } : {}) });
    if (takeover !== undefined) {
      await takeover.finish(config.drainTimeoutMs + config.stopTimeoutMs, cancel);
      slotRun.takeover = undefined;
    }
  });
  if (slot !== undefined) {
    const watchDrainRequests = (): void => {
      void drainRequested(slot, context, cancel)
        .then(({ by }) => onDrain(by, watchDrainRequests))
        .catch(() => undefined);
    };
    watchDrainRequests();
  }
  void context.store
    .until((records) => (appsFinished(context.pod, records) ? true : undefined), cancel)
    .then(() => {
      log.info({ event: 'apps-finished' }, 'every app of the pod has finished; stopping the sidecar');
      onStop('apps-finished');
    })
    .catch(() => undefined);
  return run;
}

/**
 * Waits until a sidecar's command passes its readiness check and serves its listening sockets
 * (see handoff/serving.ts). Resolves false when the command exits first.
 */
async function becomeReady(run: CommandRun, context: PodContext, listeners: Listeners | undefined, env: NodeJS.ProcessEnv, log: Logger): Promise<boolean> {
  if (!(await waitUntilReady(context.readiness, run.exited, env))) {
    return false;
  }
  if (listeners === undefined || listeners.isEmpty) {
    return true;
  }
  const serving = await waitUntilServing({ inodes: listeners.inodes(), ports: listeners.reusedPorts }, run.pid!, run.exited);
  if (serving === 'unknown') {
    log.warn({ event: 'serving-unknown', pid: run.pid }, `cannot read /proc/${run.pid}/fd, so whether the command accepts connections is not checked`);
    return !run.hasExited;
  }
  return serving;
}

/**
 * Drains this slot's command because the other slot took over: the drain command, then the stop
 * signal, and SIGKILL at the drain timeout. The command's listening sockets stay open in the new
 * slot, so connections waiting to be accepted are not lost.
 */
async function drainForPeer(run: CommandRun, by: ContainerRecord, slotRun: SlotRun, config: SupervisorConfig, context: PodContext, env: NodeJS.ProcessEnv, log: Logger): Promise<boolean> {
  const startedAt = performance.now();
  log.info({ event: 'draining', for: by.name, version: by.slotVersion }, `${by.name} took over; draining`);
  await context.writer.update('stopping', { reason: `draining for ${by.name}` });
  if (config.drainCommand !== undefined && !run.hasExited) {
    await runHook('drain', config.drainCommand, config.drainTimeoutMs, env, log);
  }
  // The stop signal cannot be taken back, so it goes out only while the new slot still serves.
  const requester = context.store.records.get(by.name);
  if (requester?.generation !== by.generation || requester.phase !== 'ready') {
    log.warn({ event: 'drain-cancelled', for: by.name, peerPhase: requester?.phase }, `${by.name} is no longer serving (${requester?.phase ?? 'no record'}); ${context.self.name} keeps serving`);
    await context.writer.update('ready', { reason: `drain for ${by.name} cancelled: it stopped serving` });
    return false;
  }
  slotRun.drainedFor = by;
  await run.stop('handoff', config.drainTimeoutMs - (performance.now() - startedAt));
  slotRun.drainMs = Math.round(performance.now() - startedAt);
  return true;
}

/**
 * Waits before the next attempt of a take-over whose new version failed, 1 s after the first
 * failure and 2 s after the second. Returns false when a stop request ends the wait.
 */
async function retryTakeover(takeover: Takeover, reason: string, attempt: number, context: PodContext, shutdown: AbortSignal, log: Logger): Promise<boolean> {
  const delayMs = TAKEOVER_RETRY_MS * attempt;
  log.warn({ event: 'handoff-retry', from: takeover.peer.name, attempt, reason, delayMs }, `attempt ${attempt} of ${TAKEOVER_ATTEMPTS} to take over from ${takeover.peer.name} failed: ${reason}; retrying in ${delayMs} ms`);
  await context.writer.update('waiting', { pid: undefined, reason: `take-over attempt ${attempt} failed: ${reason}` });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(true), delayMs);
    shutdown.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(false);
    }, { once: true });
  });
}

/**
 * Ends a failed take-over: the slot records the failure and parks, so its container stays up as the
 * idle slot and the old version keeps serving. Exiting instead would make kubelet restart the
 * container in a loop and mark the pod not ready.
 */
async function failTakeover(takeover: Takeover, reason: string, listeners: Listeners | undefined, context: PodContext, shutdown: AbortSignal, log: Logger): Promise<number> {
  const fields = takeover.failureFields(reason);
  await listeners?.close();
  return park(context, shutdown, `the upgrade to version ${takeover.slot.version} failed: ${reason}`, { ...fields, exitCode: undefined, rawExitCode: undefined }, log);
}

/** Opens the listening sockets, taking them from the other slot during a take-over, and serves them to it. */
async function openListeners(config: SupervisorConfig, slot: Slot | undefined, takeover: Takeover | undefined, bindTimeoutMs: number, log: Logger): Promise<Listeners> {
  const fromPeer = takeover !== undefined ? handoffSocketFile(config.sharedDir!, slot!.peer) : undefined;
  const listeners = await Listeners.open(config.listen, fromPeer, bindTimeoutMs, log);
  if (slot !== undefined) {
    await listeners.serve(handoffSocketFile(config.sharedDir!, config.name), log);
  }
  return listeners;
}

/**
 * Directory that both slots of a sidecar see, for state that the new version takes over. It is in
 * the state volume, the one volume of the pod that every container can write.
 */
async function handoffDirectory(sharedDir: string, slot: Slot): Promise<string> {
  const directory = path.join(stateDir(sharedDir), HANDOFF_DIR, slot.base);
  await mkdir(directory, { recursive: true });
  return directory;
}

/**
 * Checks at start that both slots' hand-off sockets fit in a Unix socket address, so that a path
 * too long fails the container at once (exit 2) rather than its first upgrade.
 */
function checkHandoffSocketPaths(sharedDir: string, slot: Slot): void {
  for (const name of [slot.name, slot.peer]) {
    const file = handoffSocketFile(sharedDir, name);
    if (Buffer.byteLength(file) > MAX_SOCKET_PATH_BYTES) {
      throw new SupervisorError(
        `The hand-off socket path ${file} is ${Buffer.byteLength(file)} bytes, longer than the ${MAX_SOCKET_PATH_BYTES} bytes of a Unix socket address. Mount the shared volume at a shorter path or use shorter container names.`,
        ExitCode.invalidConfig,
      );
    }
  }
}

function isLive(record: ContainerRecord | undefined): boolean {
  return record !== undefined && record.phase !== 'exited' && record.phase !== 'parked';
}

/** Returns the hot-upgrade slot of this container, or undefined; a bad slot name is a configuration error. */
function hotUpgradeSlot(name: string, env: NodeJS.ProcessEnv): Slot | undefined {
  try {
    return slotOf(name, env);
  } catch (error) {
    throw new SupervisorError((error as Error).message, ExitCode.invalidConfig);
  }
}

/** Records and returns the exit of a container stopped before its command started. */
async function stoppedWhileWaiting(context: PodContext, shutdown: AbortSignal, log: Logger): Promise<number> {
  const signal = shutdown.reason as NodeJS.Signals;
  log.info({ event: 'not-started', reason: 'stop-requested', signal }, `received ${signal} while waiting; the command was not started`);
  // A take-over that was waiting or starting ends here too, so the record does not show it as in progress.
  const handoff = context.writer.record.handoff;
  const aborted = handoff?.phase === 'waiting-turn' || handoff?.phase === 'starting' ? { handoff: { ...handoff, phase: 'failed' as const, reason: 'stopped before the take-over' } } : {};
  await context.writer.update('exited', { exitCode: signalExitCode(signal), signal, reason: 'stopped while waiting', ...aborted });
  return signalExitCode(signal);
}

interface CommandExit {
  exitCode: number;
  rawExitCode?: number;
  signal?: NodeJS.Signals;
  spawnFailed?: boolean;
}

/** Waits for the command's exit, ends its leftovers, flushes its output, and maps the exit code. */
async function finishCommand(run: CommandRun, config: SupervisorConfig, context: PodContext | undefined, log: Logger): Promise<CommandExit> {
  const exit: ChildExit = await run.exited;
  await run.stopSequenceDone();

  const reaper = findReaper();
  if (reaper !== undefined && exit.spawnError === undefined) {
    // After a stop sequence the stop timeout is spent, so what is left gets the signal and SIGKILL at once.
    const policy = run.stopReason === undefined ? { waitMs: config.leftoverWaitMs, stopTimeoutMs: config.stopTimeoutMs } : { waitMs: 0, stopTimeoutMs: 0 };
    await settleLeftovers(reaper, { ...policy, stopSignal: config.stopSignal }, log);
  }
  await run.drainOutput();

  const copy = run.copy;
  await copy?.close();
  if (copy !== undefined && copy.droppedRecords > 0) {
    log.warn({ event: 'log-copy-dropped', file: copy.file, droppedRecords: copy.droppedRecords }, `dropped ${copy.droppedRecords} log records of ${copy.file}`);
  }

  if (exit.spawnError !== undefined) {
    log.error({ event: 'spawn-failed', exitCode: exit.exitCode }, exit.spawnError);
    return { exitCode: exit.exitCode, spawnFailed: true };
  }
  if (run.stopReason !== undefined && context?.self.role === 'sidecar') {
    const ending = exit.signal ? `terminated by signal ${signalExitCode(exit.signal) - 128} on request` : `exited with code ${exit.exitCode} on request`;
    log.info({ event: 'exited', rawExitCode: exit.exitCode, signal: exit.signal, exitCode: ExitCode.stoppedOnRequest }, `${config.name} ${ending}; the container exits 0`);
    return { exitCode: ExitCode.stoppedOnRequest, rawExitCode: exit.exitCode, signal: exit.signal };
  }
  log.info({ event: 'exited', exitCode: exit.exitCode, signal: exit.signal }, `${run.command} exited with code ${exit.exitCode}`);
  return { exitCode: exit.exitCode, signal: exit.signal };
}

function openLogCopy(config: SupervisorConfig, context: PodContext, log: Logger): CriLogWriter {
  const file = path.join(logDir(config.sharedDir!), context.self.name, `${context.writer.record.generation}.log`);
  return new CriLogWriter(file, {
    maxQueuedBytes: MAX_QUEUED_LOG_BYTES,
    maxFileBytes: config.logMaxBytes,
    maxFiles: config.logMaxFiles,
    onDrop: (reason) => log.warn({ event: 'log-copy-dropping', file }, `dropping log records for ${file}: ${reason}`),
  });
}

/** Variables of the app that the runtime's launcher sets aside, so they cannot change tandem's Node.js or tini. */
const SET_ASIDE_VARIABLES = ['NODE_OPTIONS', 'NODE_COMPILE_CACHE', 'NODE_COMPILE_CACHE_PORTABLE', 'NODE_DISABLE_COMPILE_CACHE', 'TINI_KILL_PROCESS_GROUP', 'TINI_VERBOSITY'];

/**
 * Returns the environment for the command: the container's own, with the variables that the
 * launcher set aside restored and tandem's internal ones removed.
 */
function childEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of SET_ASIDE_VARIABLES) {
    const saved = env[`TANDEM_APP_${name}`];
    if (saved !== undefined) {
      env[name] = saved;
      delete env[`TANDEM_APP_${name}`];
    }
  }
  delete env.TANDEM_REAPER_PID;
  return env;
}
