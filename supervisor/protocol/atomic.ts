import { chmod, mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/** Directories where temporary files already exist, so each is created once per process. */
const temporaryDirectories = new Set<string>();

/**
 * Writes JSON so that readers see either the old content or the new, never a part: the data goes
 * to a temporary file in `.tmp/` of the same directory, is flushed, and replaces the target by
 * rename(2). Watchers of the directory then see one event per write instead of three, and a
 * watcher that reads the whole directory on each event (chokidar) does so a third as often.
 */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const directory = path.join(path.dirname(file), '.tmp');
  if (!temporaryDirectories.has(directory)) {
    // Mode 1777 as the state directory's, because containers of other users write their records too.
    await mkdir(directory).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') {
        throw error;
      }
    });
    await chmod(directory, 0o1777).catch(() => undefined);
    temporaryDirectories.add(directory);
  }
  let temporary = path.join(directory, `${path.basename(file)}.${process.pid}.tmp`);
  const handle = await open(temporary, 'w', 0o644).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EACCES') {
      throw error;
    }
    // `.tmp/` of another user that has not set its mode yet: the directory itself works too.
    temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
    return open(temporary, 'w', 0o644);
  });
  try {
    try {
      await handle.writeFile(`${JSON.stringify(value)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    // A full or failing disk must not leave a half-written temporary file behind.
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
}
