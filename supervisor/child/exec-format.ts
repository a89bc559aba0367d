import { closeSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const SHEBANG = Buffer.from('#!');

/** Finds the file that execvp(3) would run for a command, or undefined when none is found. */
function resolveCommand(command: string, env: NodeJS.ProcessEnv): string | undefined {
  if (command.includes('/')) {
    return command;
  }
  for (const dir of (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const candidate = path.join(dir || '.', command);
    try {
      if (statSync(candidate).isFile()) {
        return candidate;
      }
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * Returns an error message when the command is a readable file that is neither an ELF binary nor
 * a script with `#!`. glibc's execvp, which Node.js uses, runs such a file with /bin/sh, while a
 * container runtime fails it with "exec format error". The supervisor reports what the runtime would.
 * Returns undefined when the file looks executable or cannot be read (spawn reports that).
 */
export function execFormatError(command: string, env: NodeJS.ProcessEnv): string | undefined {
  const file = resolveCommand(command, env);
  if (file === undefined) {
    return undefined;
  }

  const header = Buffer.alloc(4);
  let length: number;
  try {
    const descriptor = openSync(file, 'r');
    try {
      length = readSync(descriptor, header, 0, 4, 0);
    } finally {
      closeSync(descriptor);
    }
  } catch {
    return undefined;
  }

  const start = header.subarray(0, length);
  if (start.subarray(0, 4).equals(ELF_MAGIC) || start.subarray(0, 2).equals(SHEBANG)) {
    return undefined;
  }
  return `cannot execute ${file}: exec format error (it is neither an ELF binary nor a script starting with #!)`;
}
