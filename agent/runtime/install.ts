import { randomUUID } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger } from '../../supervisor/log.js';
import { logDir, parsePodSpec, stateDir, writePodSpec, type PodSpec } from '../../supervisor/protocol/pod.js';
import { RUNTIME_PATHS, runtimeSourceOf, type RuntimeManifest } from './build.js';

/**
 * Mode of DIR/state and DIR/logs: containers of a pod may run as different UIDs, and each writes
 * its own files there. The sticky bit, as on /tmp, keeps them from deleting each other's files.
 */
const SHARED_DIR_MODE = 0o1777;

export interface InstallOptions {
  /** Pod spec as JSON text, validated and written to DIR/state/pod.json. Unset leaves that file as it is. */
  podJson?: string;
  /** Runtime to copy. Default: the runtime this module belongs to (see runtimeSourceOf). */
  source?: string;
  /** Default: an info-level logger on stderr. */
  logger?: Logger;
}

export interface InstallResult {
  source: string;
  target: string;
  version: string;
  /** True when the target already had this runtime, so no file was copied. */
  skipped: boolean;
  files: number;
  /** Total size of the runtime's files in bytes. */
  bytes: number;
  milliseconds: number;
}

/**
 * Installs the tandem runtime into targetDir for the containers of a pod: copies the runtime,
 * creates the shared state and log directories, and writes the pod spec when one is given.
 * Files of an older runtime that the new one lacks stay, so processes of that version can still
 * load their chunks.
 */
export async function installRuntime(targetDir: string, options: InstallOptions = {}): Promise<InstallResult> {
  const started = performance.now();
  const logger = options.logger ?? createLogger('info', { command: 'install' });
  const spec = options.podJson === undefined ? undefined : parsePodJson(options.podJson);
  const source = path.resolve(options.source ?? runtimeSourceOf(fileURLToPath(import.meta.url)));
  const target = path.resolve(targetDir);
  const manifestText = await readSourceManifest(source);
  const manifest = JSON.parse(manifestText) as RuntimeManifest;

  const skipped = source === target || (await isInstalled(target, manifestText, manifest));
  if (!skipped) {
    await copyRuntime(source, target, manifest);
  }
  for (const directory of [stateDir(target), logDir(target)]) {
    await makeSharedDir(directory, logger);
  }
  if (spec !== undefined) {
    await writePodSpec(target, spec);
  }

  const result: InstallResult = {
    source,
    target,
    version: manifest.version,
    skipped,
    files: manifest.files.length,
    bytes: manifest.files.reduce((sum, file) => sum + file.size, 0),
    milliseconds: Math.round(performance.now() - started),
  };
  logger.info(result, skipped ? 'runtime already installed' : 'runtime installed');
  return result;
}

/** Validates --pod-json, naming the exact value in the error because it arrives through shells and YAML. */
function parsePodJson(text: string): PodSpec {
  return parsePodSpec(text, `--pod-json ${JSON.stringify(text)}`);
}

async function readSourceManifest(source: string): Promise<string> {
  const file = path.join(source, RUNTIME_PATHS.manifest);
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(
      `No tandem runtime at ${source}: reading ${file} failed (${(error as Error).message}). ` +
        'In the repository, run `npm run build` to assemble it.',
    );
  }
}

/** Tells whether the target has the same manifest and every file it lists, with the listed size. */
async function isInstalled(target: string, manifestText: string, manifest: RuntimeManifest): Promise<boolean> {
  const installedText = await readFile(path.join(target, RUNTIME_PATHS.manifest), 'utf8').catch(() => undefined);
  if (installedText !== manifestText) {
    return false;
  }
  const sizes = await Promise.all(
    manifest.files.map((file) => stat(path.join(target, file.path)).then((fileStat) => fileStat.size, () => -1)),
  );
  return sizes.every((size, index) => size === manifest.files[index]?.size);
}

/**
 * Copies every file of the manifest, then the manifest itself, so an interrupted copy never looks
 * installed. Each file goes to a temporary name and is renamed into place, which works while
 * processes still run the old file (a direct write fails with ETXTBSY) and never shows a partial file.
 */
async function copyRuntime(source: string, target: string, manifest: RuntimeManifest): Promise<void> {
  // chmod after mkdir, because mkdir applies the umask and other UIDs must be able to enter.
  if ((await mkdir(target, { recursive: true })) !== undefined) {
    await chmod(target, 0o755);
  }
  const directories = new Set(manifest.files.map((file) => path.dirname(path.join(target, file.path))));
  for (const directory of directories) {
    await mkdir(directory, { recursive: true });
    await chmod(directory, 0o755);
  }

  await Promise.all(manifest.files.map((file) => copyAtomically(path.join(source, file.path), path.join(target, file.path), file.mode)));
  await copyAtomically(path.join(source, RUNTIME_PATHS.manifest), path.join(target, RUNTIME_PATHS.manifest), 0o644);
}

async function copyAtomically(source: string, target: string, mode: number): Promise<void> {
  // Containers of a pod have separate PID namespaces, so the process ID alone is not unique.
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${randomUUID()}.tmp`);
  await copyFile(source, temporary);
  await chmod(temporary, mode);
  await rename(temporary, target);
}

/**
 * Creates a directory that every UID can write, or accepts an existing one. These are often mount
 * points of other emptyDirs, owned by root with mode 0777, which a non-root init container cannot
 * chmod. Such a directory is accepted because every UID can already write there.
 */
async function makeSharedDir(directory: string, logger: Logger): Promise<void> {
  await mkdir(directory, { recursive: true });
  try {
    await chmod(directory, SHARED_DIR_MODE);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') {
      throw error;
    }
    const mode = (await stat(directory)).mode & 0o7777;
    if ((mode & 0o777) !== 0o777) {
      throw new Error(
        `${directory} has mode ${mode.toString(8)} and chmod to ${SHARED_DIR_MODE.toString(8)} failed (EPERM): ` +
          'containers running as other UIDs could not write there. Run the init container as the owner or as root, ' +
          'or mount an emptyDir, which every UID can write.',
      );
    }
    logger.warn({ directory, mode: mode.toString(8), err: error }, 'chmod of a shared directory failed, and its existing mode lets every UID write');
  }
}
