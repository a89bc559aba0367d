import { chmod, copyFile, mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { writeBusyboxRootfs } from '../busybox/rootfs.js';
import { compileIdle } from '../idle/compile.js';

/** Debian's musl dynamic loader (package musl), which is also musl's libc.so. */
export const MUSL_LOADER = '/lib/ld-musl-x86_64.so.1';

/**
 * Writes the root filesystem of the musl test image into rootfsDir, replacing what was there. It
 * contains the busybox tree of images/busybox (static, for sh), musl's loader at
 * /lib/ld-musl-x86_64.so.1 and /bin/idle linked against it with musl-gcc. /usr/bin/ldd is a link to
 * the loader, which then lists a program's libraries. No glibc file is in it.
 */
export async function writeMuslRootfs(rootfsDir: string, idleSource: string): Promise<void> {
  await writeBusyboxRootfs(rootfsDir);
  await mkdir(path.join(rootfsDir, 'lib'), { recursive: true });
  const loader = path.join(rootfsDir, MUSL_LOADER);
  try {
    // copyFile follows Debian's link to /usr/lib/x86_64-linux-musl/libc.so and copies the library.
    await copyFile(MUSL_LOADER, loader);
  } catch (error) {
    throw new Error(`Copying ${MUSL_LOADER} failed (${(error as Error).message}). Install musl (Debian: apt-get install musl-tools).`);
  }
  await chmod(loader, 0o755);
  await compileIdle(idleSource, path.join(rootfsDir, 'bin', 'idle'), 'musl');
  await symlink(MUSL_LOADER, path.join(rootfsDir, 'usr', 'bin', 'ldd'));
}
