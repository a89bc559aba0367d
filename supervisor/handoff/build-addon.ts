import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { FD_PASSING_ADDON } from './fd-passing.js';

const run = promisify(execFile);

/** The addon's C source, relative to the repository root. */
export const FD_PASSING_SOURCE = 'supervisor/handoff/fd-passing.c';

/** Path of the addon that code running from the repository loads, relative to the repository root. */
export const FD_PASSING_DIST = path.join('dist', 'supervisor', 'handoff', FD_PASSING_ADDON);

/**
 * Compiles the fd-passing addon with gcc against the Node-API headers of the npm package
 * node-api-headers, unless `outFile` is newer than the C source. node-gyp is not used because it
 * downloads Node.js headers, and Node-API needs none of them.
 */
export async function compileFdPassing(repoRoot: string, outFile: string): Promise<void> {
  const source = path.join(repoRoot, FD_PASSING_SOURCE);
  const [sourceStat, targetStat] = await Promise.all([stat(source), stat(outFile).catch(() => undefined)]);
  if (targetStat !== undefined && targetStat.mtimeMs >= sourceStat.mtimeMs) {
    return;
  }

  const headers = path.join(repoRoot, 'node_modules', 'node-api-headers', 'include');
  if (!existsSync(path.join(headers, 'node_api.h'))) {
    throw new Error(`Node-API headers not found in ${headers}: run \`npm install\` to install the devDependency node-api-headers.`);
  }

  await mkdir(path.dirname(outFile), { recursive: true });
  const temporary = `${outFile}.tmp`;
  // Node.js resolves the napi_* symbols when it loads the addon, so they stay undefined here.
  const flags = ['-shared', '-fPIC', '-O2', '-std=gnu11', '-Wall', '-Wextra', '-Werror', '-I', headers, '-o', temporary, source];
  try {
    await run('gcc', flags);
  } catch (error) {
    throw new Error(
      `Failed to compile ${source} with \`gcc ${flags.join(' ')}\`: ${(error as Error).message}. ` +
        'Install gcc and the glibc headers (Debian: apt-get install gcc libc6-dev).',
    );
  }
  await rename(temporary, outFile);
}

/**
 * Compiles the addon into dist/, where the compiled wrapper and the tests load it, and copies it
 * into a runtime's `app/` directory, where the bundled wrapper looks for it next to its chunk.
 */
export async function buildFdPassing(repoRoot: string, appDir: string): Promise<void> {
  const compiled = path.join(repoRoot, FD_PASSING_DIST);
  await compileFdPassing(repoRoot, compiled);
  const target = path.join(appDir, FD_PASSING_ADDON);
  await copyFile(compiled, target);
  await chmod(target, 0o644);
}
