import { chmod, rm } from 'node:fs/promises';
import path from 'node:path';
import { compileIdle } from '../idle/compile.js';

/**
 * Writes the root filesystem of the distroless test image into rootfsDir, replacing what was
 * there: only /idle, linked statically, so the image has no shell, no libc and no loader.
 */
export async function writeDistrolessRootfs(rootfsDir: string, idleSource: string): Promise<void> {
  await rm(rootfsDir, { recursive: true, force: true });
  await compileIdle(idleSource, path.join(rootfsDir, 'idle'), 'static');
  await chmod(path.join(rootfsDir, 'idle'), 0o755);
}
