import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Path of the statically linked busybox from Debian's busybox-static package. */
export const DEFAULT_BUSYBOX = '/bin/busybox';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n';
const GROUP = 'root:x:0:\nnobody:x:65534:\n';

/**
 * Writes a busybox root filesystem into rootfsDir, replacing what was there: /bin/busybox with one
 * symbolic link per applet in /bin, /tmp with mode 1777, and /etc/passwd and /etc/group that
 * define root and nobody (65534).
 */
export async function writeBusyboxRootfs(rootfsDir: string, busybox: string = DEFAULT_BUSYBOX): Promise<void> {
  await checkStatic(busybox);
  const applets = await listApplets(busybox);
  await rm(rootfsDir, { recursive: true, force: true });
  for (const directory of ['bin', 'etc', 'home', 'root', 'tmp', 'usr/bin', 'usr/local/bin']) {
    await mkdir(path.join(rootfsDir, directory), { recursive: true });
  }
  await chmod(path.join(rootfsDir, 'root'), 0o700);
  await chmod(path.join(rootfsDir, 'tmp'), 0o1777);

  await copyFile(busybox, path.join(rootfsDir, 'bin', 'busybox'));
  await chmod(path.join(rootfsDir, 'bin', 'busybox'), 0o755);
  for (const applet of applets) {
    await symlink('busybox', path.join(rootfsDir, 'bin', applet));
  }

  await writeFile(path.join(rootfsDir, 'etc', 'passwd'), PASSWD, { mode: 0o644 });
  await writeFile(path.join(rootfsDir, 'etc', 'group'), GROUP, { mode: 0o644 });
}

/** Returns the applet names that a busybox binary provides, without busybox itself. */
async function listApplets(busybox: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await run(busybox, ['--list']));
  } catch (error) {
    throw new Error(
      `Running ${busybox} --list failed (${(error as Error).message}). Install a static busybox (Debian: apt-get install busybox-static).`,
    );
  }
  return stdout
    .split('\n')
    .map((name) => name.trim())
    .filter((name) => name !== '' && name !== 'busybox' && !name.includes('/'));
}

/** Rejects a dynamically linked busybox, whose libraries the image would lack. */
async function checkStatic(busybox: string): Promise<void> {
  // ldd(1) from glibc exits with 1 and prints "not a dynamic executable" for a static binary.
  const output = await run('ldd', [busybox]).then(
    ({ stdout }) => stdout,
    (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`,
  );
  if (!output.includes('not a dynamic executable')) {
    throw new Error(`${busybox} is dynamically linked, but the image has no libraries. Install busybox-static and use its /bin/busybox.`);
  }
}
