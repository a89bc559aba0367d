import { execa, type ResultPromise } from 'execa';
import { ExitCode, signalExitCode } from '../exit-codes.js';

/** The running command: its process and the pipes of its output. */
export type Child = ResultPromise<{ stdin: 'inherit'; stdout: 'pipe'; stderr: 'pipe'; buffer: false; reject: false; encoding: 'buffer' }>;

/** How the command ended, with the code the supervisor reports for it. */
export interface ChildExit {
  exitCode: number;
  /** Set when a signal killed the command. */
  signal?: NodeJS.Signals;
  /** Set when the command could not be started at all. */
  spawnError?: string;
}

/**
 * Starts the command with its arguments as they are (no shell), with the environment and working
 * directory of the supervisor. Output is piped so the supervisor can copy it; stdin is inherited.
 */
export function spawnChild(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  return execa(command, args, {
    stdin: 'inherit',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    encoding: 'buffer',
    env,
    extendEnv: false,
    stripFinalNewline: false,
    // The supervisor decides when to stop and kill; execa must not add its own timers or kills.
    cleanup: false,
    forceKillAfterDelay: false,
  });
}

/** Waits for the command to end and maps the result to the exit code the supervisor returns. */
export async function waitForChild(child: Child, command: string): Promise<ChildExit> {
  const result = await child;
  if (result.signal) {
    return { exitCode: signalExitCode(result.signal), signal: result.signal };
  }
  if (result.exitCode !== undefined) {
    return { exitCode: result.exitCode };
  }

  // The command never ran: execa reports the errno of spawn(2)/execve(2).
  if (result.code === 'ENOENT') {
    return { exitCode: ExitCode.notFound, spawnError: `command not found: ${command} (check the path and PATH)` };
  }
  return {
    exitCode: ExitCode.cannotExecute,
    spawnError: `cannot execute ${command}: ${result.code ?? result.shortMessage ?? 'unknown error'} (check that it is an executable file for this platform)`,
  };
}
