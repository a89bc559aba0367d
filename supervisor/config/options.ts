import { InvalidArgumentError, Option } from 'commander';
import type { Role } from '../protocol/pod.js';
import type { LogLevel } from '../log-levels.js';
import { readMarkers } from './markers.js';
import { describeListener, LISTEN_FORMS, parseListen, type ListenSpec } from '../handoff/listen-spec.js';
import { parseReadiness, READINESS_FORMS, type Readiness } from '../lifecycle/readiness-spec.js';
import { parseBoolean, parseCommand, parseContainerName, parseDirectory, parseDurationMs, parseInteger, parseLogLevel, parseLogMaxSize, parsePositiveInteger, parseSignal } from './parse.js';

/** Settings of one supervisor, from flags or from the matching `TANDEM_*` variable (flags win). */
export interface SupervisorConfig {
  name: string;
  /** Role; undefined means the platform markers' or the pod spec's, or app. */
  role?: Role;
  /** Launch priority; undefined means the platform markers' or the pod spec's value. */
  priority?: number;
  /** Exit priority from the platform markers; undefined means the pod spec's value. */
  exitPriority?: number;
  /** Shared volume of the pod; without it the supervisor runs the command with no coordination. */
  sharedDir?: string;
  /** Readiness check of a sidecar; undefined means the pod spec's, or `started`. */
  readiness?: Readiness;
  logCopy: boolean;
  logMaxBytes: number;
  logMaxFiles: number;
  stopSignal: NodeJS.Signals;
  stopTimeoutMs: number;
  /** Time that processes left running by an exited command get before they are stopped. */
  leftoverWaitMs: number;
  /** Time a sidecar keeps running after the containers it outlives have exited, to flush. */
  stopDelayMs: number;
  /** Command run before the stop signal when tandem itself stops the container (kubelet runs preStop hooks on deletion). */
  preStop?: string[];
  startupTimeoutMs: number;
  logLevel: LogLevel;
  /** Listening sockets of a hot-upgrade sidecar (see handoff/listeners.ts). */
  listen: ListenSpec[];
  /** Command an old hot-upgrade slot runs before its stop signal when the new slot takes over. */
  drainCommand?: string[];
  /** Time an old slot's command gets to drain, from the drain command to SIGKILL. */
  drainTimeoutMs: number;
  /** Command a new slot runs before its own command starts, to take state over from the old slot. */
  handoffCommand?: string[];
}

/** Parses `--listen`: repeated flags add up, and one value may list several sockets separated by commas or spaces. */
function parseListenOption(value: string, previous: ListenSpec[] | undefined): ListenSpec[] {
  const specs = [...(previous ?? [])];
  for (const word of value.split(/[\s,]+/).filter(Boolean)) {
    try {
      specs.push(parseListen(word));
    } catch {
      throw new InvalidArgumentError(`Expected ${LISTEN_FORMS}; ${JSON.stringify(word)} is none of them.`);
    }
  }
  if (specs.length === 0) {
    throw new InvalidArgumentError(`Expected ${LISTEN_FORMS}.`);
  }
  const ports = new Map<number, string>();
  for (const spec of specs) {
    const seen = ports.get(spec.port);
    if (seen !== undefined) {
      throw new InvalidArgumentError(`Expected each port once; ${seen} and ${describeListener(spec)} both use port ${spec.port}.`);
    }
    ports.set(spec.port, describeListener(spec));
  }
  return specs;
}

function parseReadinessOption(value: string): Readiness {
  try {
    return parseReadiness(value);
  } catch {
    throw new InvalidArgumentError(`Expected ${READINESS_FORMS}.`);
  }
}

/** Values as commander parses them from the options below. */
export interface SupervisorOptionValues {
  name: string;
  role?: Role;
  priority?: number;
  sharedDir?: string;
  readiness?: Readiness;
  logCopy: boolean;
  logMaxSize: number;
  logMaxFiles: number;
  stopSignal: NodeJS.Signals;
  stopTimeout: number;
  leftoverWait: number;
  stopDelay: number;
  preStop?: string[];
  startupTimeout: number;
  logLevel: LogLevel;
  listen?: ListenSpec[];
  drainCommand?: string[];
  drainTimeout: number;
  handoffCommand?: string[];
}

/**
 * Converts parsed option values into the supervisor's configuration, with units in the names.
 * Role and priorities not set by a flag or `TANDEM_*` variable come from the platform markers.
 */
export function toSupervisorConfig(values: SupervisorOptionValues, env: NodeJS.ProcessEnv = process.env): SupervisorConfig {
  const markers = readMarkers(env);
  return {
    name: values.name,
    role: values.role ?? markers.role,
    priority: values.priority ?? markers.priority,
    exitPriority: markers.exitPriority,
    // An empty TANDEM_SHARED_DIR counts as unset, as an empty variable usually does.
    sharedDir: values.sharedDir || undefined,
    readiness: values.readiness,
    logCopy: values.logCopy,
    logMaxBytes: values.logMaxSize,
    logMaxFiles: values.logMaxFiles,
    stopSignal: values.stopSignal,
    stopTimeoutMs: values.stopTimeout,
    leftoverWaitMs: values.leftoverWait,
    stopDelayMs: values.stopDelay,
    preStop: values.preStop,
    startupTimeoutMs: values.startupTimeout,
    logLevel: values.logLevel,
    listen: values.listen ?? [],
    drainCommand: values.drainCommand,
    drainTimeoutMs: values.drainTimeout,
    handoffCommand: values.handoffCommand,
  };
}

/** Options of `tandem supervise`, each with its environment variable, unit and default. */
export function supervisorOptions(): Option[] {
  return [
    new Option('--name <name>', 'container name, used for records and the log file').env('TANDEM_NAME').argParser(parseContainerName).default('main'),
    new Option('--role <role>', 'role of this container in the pod (default: from ECI_SIDECAR_CONTAINER and similar markers, the pod spec, or app)')
      .choices(['app', 'sidecar'])
      .env('TANDEM_ROLE'),
    new Option('--priority <integer>', 'launch priority: higher starts first (default: from KRUISE_CONTAINER_PRIORITY or ECI_CONTAINER_LAUNCH_PRIORITY, or the pod spec)')
      .env('TANDEM_PRIORITY')
      .argParser(parseInteger),
    new Option('--shared-dir <dir>', 'shared volume of the pod; unset runs the command alone').env('TANDEM_SHARED_DIR').argParser(parseDirectory),
    new Option('--readiness <check>', `when a sidecar counts as ready: ${READINESS_FORMS} (default: the pod spec's, or started)`)
      .env('TANDEM_READINESS')
      .argParser(parseReadinessOption),
    new Option('--log-copy <boolean>', 'copy stdout and stderr to <shared-dir>/logs/<name>/<restart>.log in CRI format')
      .env('TANDEM_LOG_COPY')
      .argParser(parseBoolean)
      .default(true),
    new Option('--log-max-size <bytes>', 'size at which the log copy is rotated to <restart>.log.1 (512Ki, 10Mi, or bytes)')
      .env('TANDEM_LOG_MAX_SIZE')
      .argParser(parseLogMaxSize)
      .default(10 * 1024 * 1024, '10Mi'),
    new Option('--log-max-files <count>', 'log copy files kept per container run, the current one included')
      .env('TANDEM_LOG_MAX_FILES')
      .argParser(parsePositiveInteger)
      .default(5),
    new Option('--stop-signal <signal>', 'signal sent to the command’s process tree to stop it, also when the container gets SIGTERM').env('TANDEM_STOP_SIGNAL').argParser(parseSignal).default('SIGTERM'),
    new Option('--stop-timeout <duration>', 'time from the stop signal to SIGKILL (500ms, 5s, 2m; a bare number is seconds)')
      .env('TANDEM_STOP_TIMEOUT')
      .argParser(parseDurationMs)
      .default(10_000, '10s'),
    new Option('--leftover-wait <duration>', 'time that processes left running by an exited command get before they are stopped')
      .env('TANDEM_LEFTOVER_WAIT')
      .argParser(parseDurationMs)
      .default(1000, '1s'),
    new Option('--stop-delay <duration>', 'time a sidecar keeps running after the apps it serves have exited, for example to flush logs')
      .env('TANDEM_STOP_DELAY')
      .argParser(parseDurationMs)
      .default(0, '0s'),
    new Option('--pre-stop <command>', 'command run before the stop signal when tandem stops the container at the end of a Job: a JSON array, or words split on spaces')
      .env('TANDEM_PRE_STOP')
      .argParser(parseCommand),
    new Option('--startup-timeout <duration>', 'how long an app waits for the sidecars it depends on to be ready')
      .env('TANDEM_STARTUP_TIMEOUT')
      .argParser(parseDurationMs)
      .default(120_000, '120s'),
    new Option('--log-level <level>', "level of tandem's own JSON logs on stderr").env('TANDEM_LOG_LEVEL').argParser(parseLogLevel).default('info'),
    new Option('--listen <sockets>', `hot upgrade: listening sockets, ${LISTEN_FORMS}; tcp sockets are opened by tandem, passed by socket activation and handed to the new slot (repeat the flag, or separate with commas)`)
      .env('TANDEM_LISTEN')
      .argParser(parseListenOption),
    new Option('--drain-command <command>', 'hot upgrade: command the old slot runs before its stop signal when the new slot takes over: a JSON array, or words split on spaces')
      .env('TANDEM_DRAIN_COMMAND')
      .argParser(parseCommand),
    new Option('--drain-timeout <duration>', 'hot upgrade: time the old slot’s command gets to finish its requests, from the drain command to SIGKILL')
      .env('TANDEM_DRAIN_TIMEOUT')
      .argParser(parseDurationMs)
      .default(30_000, '30s'),
    new Option('--handoff-command <command>', 'hot upgrade: command the new slot runs before its own, to take state over from the old slot (TANDEM_HANDOFF_DIR is shared by both)')
      .env('TANDEM_HANDOFF_COMMAND')
      .argParser(parseCommand),
  ];
}
