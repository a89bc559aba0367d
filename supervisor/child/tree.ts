import { accessSync, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import treeKill from 'tree-kill';

let psAvailable: boolean | undefined;

/** Reports whether `ps`, which tree-kill runs to list descendants, is on the supervisor's PATH. */
export function canListTree(): boolean {
  if (psAvailable === undefined) {
    psAvailable = (process.env.PATH ?? '').split(':').some((dir) => {
      try {
        accessSync(path.join(dir || '.', 'ps'), fsConstants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  }
  return psAvailable;
}

/**
 * Sends a signal to a process and all its descendants, found through their parent PIDs, so it also
 * reaches those that left the process group with setsid. Without `ps` only the process itself is
 * signalled, because tree-kill would fail to start it.
 */
export function signalTree(pid: number, signal: NodeJS.Signals): Promise<void> {
  if (!canListTree()) {
    try {
      process.kill(pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') {
        return Promise.reject(error);
      }
    }
    return Promise.resolve();
  }

  return new Promise((resolve, reject) => {
    treeKill(pid, signal, (error) => (error ? reject(error) : resolve()));
  });
}
