import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes JSON so that readers see either the old content or the new, never a part: the data goes
 * to a temporary file in the same directory, is flushed, and replaces the target by rename(2).
 */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const handle = await open(temporary, 'w', 0o644);
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
