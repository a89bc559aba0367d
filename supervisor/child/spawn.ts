import { execa, type ResultPromise } from 'execa';
import { ExitCode, signalExitCode } from '../exit-codes.js';
import { runtimeLauncher } from './processes.js';

/** The running command: its process and the pipes of its output. */
export type Child = ResultPromise<{ stdin: 'inherit'; stdout: 'pipe'; stderr: 'pipe'; buffer: false; reject: false; encoding: 'buffer' }>;

/** The end of the command: the code the supervisor reports, and the signal or spawn error behind it. */
export interface ChildExit {
  exitCode: number;
  /** Set when a signal killed the command. */
  signal?: NodeJS.Signals;
  /** Set when the command could not be started at all. */
  spawnError?: string;
}

/**
 * Starts the command with its arguments as they are (no shell), in the supervisor's working
 * directory and with the given environment. Output is piped so the supervisor can copy it.
 * NOTE: Node.js decodes argv and environment values as UTF-8 and spawns with UTF-8 strings, so a
 * byte sequence that is not valid UTF-8 reaches the command as U+FFFD. Valid UTF-8 passes unchanged.
 */
export function spawnChild(command: string, args: readonly string[], env: NodeJS.ProcessEnv, extraFds: readonly number[] = [], pipeOutput = true): Child {
  const launch = extraFds.length > 0 ? withListenPid(command, args) : { file: command, args };
  const child = execa(launch.file, launch.args, {
    // Descriptors after the three standard ones become the command's fd 3, 4, … as socket activation expects.
    // execa's types allow no descriptor number after fd 2, but it passes one to Node.js's spawn as it is.
    // Without a log copy the command writes to the container's stdout and stderr itself, at full speed.
    stdio: ['inherit', pipeOutput ? 'pipe' : 'inherit', pipeOutput ? 'pipe' : 'inherit', ...extraFds] as unknown as ['inherit', 'pipe', 'pipe'],
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
  // execa's promise settles only when the output pipes close, and a background process can delay
  // that forever. The supervisor therefore follows the process's own exit (see waitForExit).
  void child.catch(() => undefined);
  return child as unknown as Child;
}

/**
 * Socket activation passes LISTEN_PID, the PID of the process meant to use the sockets, which is
 * known only after the fork. The runtime's launcher sets it to its own PID and then execs the
 * command, which keeps that PID. Outside a runtime (tests on the build machine's Node.js) the
 * command starts directly and LISTEN_PID stays unset.
 */
function withListenPid(command: string, args: readonly string[]): { file: string; args: readonly string[] } {
  const launcher = runtimeLauncher();
  return launcher === undefined ? { file: command, args } : { file: launcher, args: ['exec-listen-pid', '--', command, ...args] };
}

/**
 * Waits for the command's process to end and maps its status to the code the supervisor returns.
 * It resolves at exit(2), even when a descendant keeps the output pipes open.
 */
export function waitForExit(child: Child, command: string): Promise<ChildExit> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      if (signal !== null) {
        resolve({ exitCode: signalExitCode(signal), signal });
      } else {
        resolve({ exitCode: code ?? ExitCode.internalError });
      }
    });
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) {
        return;
      }
      resolve(spawnFailure(command, error.code));
    });
  });
}

/** Maps the errno of a failed spawn to 127 (not found) or 126 (cannot execute), with a message naming the path. */
function spawnFailure(command: string, code: string | undefined): ChildExit {
  if (code === 'ENOENT') {
    return { exitCode: ExitCode.notFound, spawnError: `command not found: ${command} (check the path and PATH, and the interpreter named after #! in a script)` };
  }
  return {
    exitCode: ExitCode.cannotExecute,
    spawnError: `cannot execute ${command}: ${code ?? 'unknown error'} (check that it is an executable file for this platform)`,
  };
}
