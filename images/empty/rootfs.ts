import { chmod, rm } from 'node:fs/promises';
import path from 'node:path';
import { compileIdle } from '../idle/compile.js';

/**
 * Writes the root filesystem of the hot-upgrade empty image into rootfsDir, replacing what was
 * there: only /idle, linked statically.
 */
export async function writeEmptyRootfs(rootfsDir: string, idleSource: string): Promise<void> {
  await rm(rootfsDir, { recursive: true, force: true });
  await compileIdle(idleSource, path.join(rootfsDir, 'idle'), 'static');
  await chmod(path.join(rootfsDir, 'idle'), 0o755);
}
