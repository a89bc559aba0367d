import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** State and parent of a process, from /proc/PID/stat. */
interface ProcessStat {
  state: string;
  parentPid: number;
}

function readStat(pid: number): ProcessStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }

  // The command name in parentheses may contain spaces and parentheses, so fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '?', parentPid: Number(fields[1]) };
}

/** Lists the live (not zombie) children of a process by scanning /proc; none when /proc is not mounted. */
export function childrenOf(parentPid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }

  const children: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    const stat = readStat(Number(entry));
    if (stat !== undefined && stat.parentPid === parentPid && stat.state !== 'Z') {
      children.push(Number(entry));
    }
  }
  return children;
}

/** Lists every descendant of a process (children, their children, …), not the process itself. */
export function descendantsOf(rootPid: number): number[] {
  const found: number[] = [];
  const pending = [rootPid];
  while (pending.length > 0) {
    const children = childrenOf(pending.pop()!);
    found.push(...children);
    pending.push(...children);
  }
  return found;
}

/** Reports whether a process still runs; a zombie has ended and only waits to be reaped. */
export function isRunning(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z';
}

/**
 * Returns the process that adopts the command's orphans: tini, which the runtime's launcher starts
 * as this supervisor's parent and which announces its PID in TANDEM_REAPER_PID, or the supervisor
 * itself when it is PID 1. Returns undefined when orphans go to a process outside tandem.
 */
export function findReaper(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const announced = Number(env.TANDEM_REAPER_PID);
  if (Number.isInteger(announced) && announced === process.ppid) {
    return announced;
  }
  return process.pid === 1 ? 1 : undefined;
}

/**
 * Puts the runtime's own `bin/` first on the supervisor's PATH when it ships `ps`, which tree-kill
 * runs to list a process tree. Images without procps `ps` (busybox, distroless) still work then.
 * Only the supervisor's PATH changes; the command gets the container's environment.
 */
export function preferRuntimeTools(bundleFile: string | undefined = process.argv[1]): void {
  if (bundleFile === undefined) {
    return;
  }
  const runtimeBin = path.resolve(path.dirname(bundleFile), '..', 'bin');
  if (existsSync(path.join(runtimeBin, 'ps'))) {
    process.env.PATH = `${runtimeBin}:${process.env.PATH ?? ''}`;
  }
}

/**
 * Returns the runtime's launcher `bin/tandem` when this supervisor runs from an assembled runtime
 * (bundle in `app/`, with `manifest.json` beside it), or undefined.
 */
export function runtimeLauncher(bundleFile: string | undefined = process.argv[1]): string | undefined {
  if (bundleFile === undefined) {
    return undefined;
  }
  const root = path.resolve(path.dirname(bundleFile), '..');
  const launcher = path.join(root, 'bin', 'tandem');
  return existsSync(path.join(root, 'manifest.json')) && existsSync(launcher) ? launcher : undefined;
}
