import path from 'node:path';
import type { SupervisorConfig } from './config/options.js';
import { relayOutput } from './child/output.js';
import { spawnChild, waitForChild, type ChildExit } from './child/spawn.js';
import { stopTree } from './child/stop.js';
import { signalTree } from './child/tree.js';
import { ExitCode, signalExitCode } from './exit-codes.js';
import { appsFinished } from './lifecycle/completion.js';
import { checkDependencies, dependenciesOf, notReady } from './lifecycle/dependencies.js';
import { joinPod, SupervisorError, type PodContext } from './lifecycle/pod-context.js';
import { createLogger, type Logger } from './log.js';
import { CriLogWriter } from './logs/cri-writer.js';
import { logDir } from './protocol/pod.js';
import { onSignals, SHUTDOWN_SIGNALS } from './signals.js';

/** Bytes of log copy that may wait for a slow disk before records are dropped. */
const MAX_QUEUED_LOG_BYTES = 8 * 1024 * 1024;

/**
 * Runs one container's command under supervision and returns the code the container exits with:
 * join the pod, wait for the sidecars this container depends on, run the command, stop it when
 * the pod's apps are done (sidecars), and report its exit.
 */
export async function supervise(config: SupervisorConfig, argv: readonly string[]): Promise<number> {
  const log = createLogger(config.logLevel, { container: config.name });
  const [command, ...args] = argv;
  if (command === undefined) {
    log.error({ event: 'invalid-config' }, 'no command given: use `tandem supervise [options] -- COMMAND [ARGS...]`');
    return ExitCode.invalidConfig;
  }

  // Handlers go in before anything else, so a stop request during the wait is never lost.
  const shutdown = new AbortController();
  let childPid: number | undefined;
  const removeHandlers = onSignals((signal) => {
    log.info({ event: 'signal', signal, pid: childPid }, `received ${signal}`);
    if (childPid !== undefined) {
      void signalTree(childPid, signal).catch((error: unknown) => log.error({ event: 'signal-failed', signal, err: error }, 'forwarding the signal failed'));
    } else if (SHUTDOWN_SIGNALS.includes(signal)) {
      shutdown.abort(signal);
    }
  });

  let context: PodContext | undefined;
  try {
    context = config.sharedDir === undefined ? undefined : await joinPod({ ...config, sharedDir: config.sharedDir }, log);
    const early = context ? await waitForTurn(context, config, shutdown.signal, log) : undefined;
    if (early !== undefined) {
      return early;
    }

    const exit = await runCommand(command, args, config, context, log, (pid) => {
      childPid = pid;
    });
    await context?.writer.update('exited', { exitCode: exit.exitCode, rawExitCode: exit.rawExitCode, signal: exit.signal });
    return exit.exitCode;
  } catch (error) {
    const exitCode = error instanceof SupervisorError ? error.exitCode : ExitCode.internalError;
    // A SupervisorError is an expected outcome with a message for the user; anything else gets its stack.
    log.error({ event: 'failed', exitCode, ...(error instanceof SupervisorError ? {} : { err: error }) }, (error as Error).message);
    await context?.writer.update('exited', { exitCode, reason: (error as Error).message }).catch(() => undefined);
    return exitCode;
  } finally {
    removeHandlers();
    await context?.store.close();
  }
}

/**
 * Waits until this container may start its command. Returns an exit code when it must not start:
 * a sidecar whose apps already finished, a failed dependency, a timeout or a stop request.
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
    const state = await store.until((records) => checkDependencies(dependencies, records), AbortSignal.any([shutdown, timeout]));
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
      const signal = shutdown.reason as NodeJS.Signals;
      log.info({ event: 'not-started', reason: 'stop-requested', signal }, `received ${signal} while waiting; the command was not started`);
      await writer.update('exited', { exitCode: signalExitCode(signal), signal, reason: 'stopped while waiting' });
      return signalExitCode(signal);
    }
    const names = notReady(dependencies, store.records).join(', ');
    throw new SupervisorError(`${names} not ready after ${config.startupTimeoutMs / 1000}s; the command of ${self.name} was not started`, ExitCode.dependencyFailed);
  }
}

interface CommandExit {
  exitCode: number;
  rawExitCode?: number;
  signal?: NodeJS.Signals;
}

/** Runs the command, copies its output, stops it when the pod's apps are done, and waits for its exit. */
async function runCommand(
  command: string,
  args: readonly string[],
  config: SupervisorConfig,
  context: PodContext | undefined,
  log: Logger,
  onStarted: (pid: number) => void,
): Promise<CommandExit> {
  const copy = context && config.logCopy && config.sharedDir !== undefined ? openLogCopy(config.sharedDir, context, log) : undefined;

  const child = spawnChild(command, args, childEnvironment());
  const exited: Promise<ChildExit> = waitForChild(child, command);
  const relayed = Promise.all([relayOutput(child.stdout, 'stdout', process.stdout, copy), relayOutput(child.stderr, 'stderr', process.stderr, copy)]);

  let stoppedOnRequest = false;
  const stopWatch = new AbortController();
  if (child.pid !== undefined) {
    const pid = child.pid;
    onStarted(pid);
    log.info({ event: 'started', pid, command }, `started ${command}`);
    await context?.writer.update(context.self.role === 'sidecar' ? 'ready' : 'running', { pid });

    if (context?.self.role === 'sidecar') {
      void context.store
        .until((records) => (appsFinished(context.pod, records) ? true : undefined), stopWatch.signal)
        .then(async () => {
          stoppedOnRequest = true;
          log.info({ event: 'apps-finished' }, 'every app of the pod has finished; stopping the sidecar');
          await context.writer.update('stopping');
          await stopTree(pid, config.stopSignal, config.stopTimeoutMs, exited, log);
        })
        .catch(() => undefined);
    }
  }

  const exit = await exited;
  stopWatch.abort();
  await relayed;
  await copy?.close();
  if (copy !== undefined && copy.droppedRecords > 0) {
    log.warn({ event: 'log-copy-dropped', file: copy.file, droppedRecords: copy.droppedRecords }, `dropped ${copy.droppedRecords} log records of ${copy.file}`);
  }

  if (exit.spawnError !== undefined) {
    log.error({ event: 'spawn-failed', exitCode: exit.exitCode }, exit.spawnError);
    return { exitCode: exit.exitCode };
  }
  if (stoppedOnRequest) {
    const how = exit.signal ? `terminated by signal ${signalNumber(exit.signal)} on request` : `exited with code ${exit.exitCode} on request`;
    log.info({ event: 'exited', rawExitCode: exit.exitCode, signal: exit.signal, exitCode: ExitCode.stoppedOnRequest }, `${config.name} ${how}; the container exits 0`);
    return { exitCode: ExitCode.stoppedOnRequest, rawExitCode: exit.exitCode, signal: exit.signal };
  }
  log.info({ event: 'exited', exitCode: exit.exitCode, signal: exit.signal }, `${command} exited with code ${exit.exitCode}`);
  return { exitCode: exit.exitCode, signal: exit.signal };
}

function openLogCopy(sharedDir: string, context: PodContext, log: Logger): CriLogWriter {
  const file = path.join(logDir(sharedDir), context.self.name, `${context.writer.record.generation}.log`);
  return new CriLogWriter(file, {
    maxQueuedBytes: MAX_QUEUED_LOG_BYTES,
    onDrop: (droppedRecords, reason) => log.warn({ event: 'log-copy-dropping', file, droppedRecords, reason }, `dropping log records for ${file}: ${reason}`),
  });
}

/** Returns the environment for the command: the container's own, with the app's NODE_OPTIONS restored. */
function childEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (env.TANDEM_APP_NODE_OPTIONS !== undefined) {
    env.NODE_OPTIONS = env.TANDEM_APP_NODE_OPTIONS;
    delete env.TANDEM_APP_NODE_OPTIONS;
  }
  return env;
}

function signalNumber(signal: NodeJS.Signals): number {
  return signalExitCode(signal) - 128;
}
