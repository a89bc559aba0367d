import type { Logger } from '../log.js';
import type { CriLogWriter } from '../logs/cri-writer.js';
import { relayOutput } from './output.js';
import { spawnChild, waitForExit, type Child, type ChildExit } from './spawn.js';
import { stopTree } from './stop.js';
import { signalTree } from './tree.js';

/** Time that output still in the pipes gets after the command and its leftovers are gone. */
const OUTPUT_DRAIN_MS = 500;

export interface StopSettings {
  stopSignal: NodeJS.Signals;
  stopTimeoutMs: number;
}

/**
 * One run of the command: its process, the relay of its output, and at most one stop sequence,
 * however many stop requests arrive.
 */
export class CommandRun {
  readonly child: Child;
  readonly exited: Promise<ChildExit>;
  /** Set once a stop sequence has started, with its reason. */
  stopReason: string | undefined;
  /** Set once a sidecar's readiness check has passed for this run. */
  becameReady = false;
  /** Set once the process has exited; its PID may then belong to another process. */
  hasExited = false;
  private stopping: Promise<void> | undefined;
  private readonly relayed: Promise<unknown>;

  constructor(
    readonly command: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv,
    private readonly settings: StopSettings,
    private readonly log: Logger,
    readonly copy: CriLogWriter | undefined,
    /** Descriptors the command gets from fd 3 on, such as listening sockets for socket activation. */
    extraFds: readonly number[] = [],
  ) {
    // Output passes through the supervisor only when it is copied; otherwise the command inherits the container's.
    this.child = spawnChild(command, args, env, extraFds, copy !== undefined);
    this.exited = waitForExit(this.child, command);
    void this.exited.then(() => {
      this.hasExited = true;
    });
    this.relayed =
      copy === undefined ? Promise.resolve() : Promise.all([relayOutput(this.child.stdout, 'stdout', process.stdout, copy), relayOutput(this.child.stderr, 'stderr', process.stderr, copy)]);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Starts the stop sequence (stop signal, then SIGKILL after `timeoutMs`, the stop timeout by
   * default) unless one is running, and resolves when the command has exited.
   */
  stop(reason: string, timeoutMs = this.settings.stopTimeoutMs): Promise<void> {
    if (this.stopping === undefined && this.pid !== undefined && !this.hasExited) {
      this.stopReason = reason;
      this.stopping = stopTree(this.pid, this.settings.stopSignal, Math.max(0, timeoutMs), this.exited, this.log);
    }
    return this.stopping ?? Promise.resolve();
  }

  /** Resolves when the stop sequence, if one started, has finished with every process it listed. */
  stopSequenceDone(): Promise<void> {
    return this.stopping ?? Promise.resolve();
  }

  /** Passes a signal to the whole process tree as it is. */
  forward(signal: NodeJS.Signals): void {
    if (this.pid === undefined || this.hasExited) {
      return;
    }
    signalTree(this.pid, signal).catch((error: unknown) => this.log.error({ event: 'signal-failed', signal, err: error }, `forwarding ${signal} failed`));
  }

  /** Waits for the output that is still in the pipes, for a bounded time, and closes them. */
  async drainOutput(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.relayed, new Promise((resolve) => (timer = setTimeout(resolve, OUTPUT_DRAIN_MS)))]);
    clearTimeout(timer);
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
  }
}
