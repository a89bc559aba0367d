import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/**
 * Builds the socket-activated HTTP server of the hot-upgrade pod test. `server.c` is compiled on
 * the host with `gcc -static` and goes into one image per version,
 * `localhost/tandem-test/activated-http:<version>`, whose ENV VERSION the server returns.
 */

export const ACTIVATED_HTTP_REPOSITORY = 'localhost/tandem-test/activated-http';

/** Image label with the hash of the program, the Containerfile and the version, so an unchanged image is not built again. */
const INPUTS_LABEL = 'dev.tandem.build-inputs';

export interface ActivatedHttpOptions {
  repoRoot: string;
  /** Versions to build, one tag each, such as `v1` and `v2`. */
  versions: readonly string[];
  /** containers.conf(5) for podman, passed as CONTAINERS_CONF. Default: podman's own lookup. */
  containersConf?: string;
}

/** Returns the image name of one version. */
export function activatedHttpImage(version: string): string {
  return `${ACTIVATED_HTTP_REPOSITORY}:${version}`;
}

/**
 * Compiles the server and builds one image per version with podman, offline, skipping the
 * versions whose image already has the same inputs. Returns the image names in the order of
 * `versions`. Needs gcc and libc6-dev (Debian packages).
 */
export async function buildActivatedHttpImages(options: ActivatedHttpOptions): Promise<string[]> {
  const context = path.join(options.repoRoot, 'build', 'images', 'activated-http');
  const program = path.join(context, 'rootfs', 'activated-http');
  const source = path.join(options.repoRoot, 'images', 'activated-http', 'server.c');
  const containerfile = path.join(context, 'Containerfile');
  await rm(path.join(context, 'rootfs'), { recursive: true, force: true });
  await compileStatic(source, program);
  await copyFile(path.join(options.repoRoot, 'images', 'activated-http', 'Containerfile'), containerfile);
  // Stripped and static, the program has the same bytes for the same source and compiler.
  const sharedInputs = [await hashFile(program), await hashFile(containerfile)];

  const env = options.containersConf === undefined ? {} : { CONTAINERS_CONF: options.containersConf };
  const images: string[] = [];
  for (const version of options.versions) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(version)) {
      throw new Error(`Invalid version ${JSON.stringify(version)} for ${ACTIVATED_HTTP_REPOSITORY}: it must be a valid image tag, such as v1.`);
    }
    const image = activatedHttpImage(version);
    const inputs = createHash('sha256').update([...sharedInputs, version].join('\n')).digest('hex');
    const existing = await execa('podman', ['image', 'inspect', '--format', `{{index .Config.Labels "${INPUTS_LABEL}"}}`, image], { env, reject: false });
    if (existing.exitCode !== 0 || existing.stdout.trim() !== inputs) {
      const args = ['build', '--network', 'none', '--pull=never', '--file', containerfile, '--build-arg', `VERSION=${version}`, '--label', `${INPUTS_LABEL}=${inputs}`, '--tag', image, context];
      const result = await execa('podman', args, { env, reject: false });
      if (result.exitCode !== 0) {
        throw new Error(`podman ${args.join(' ')} failed with exit code ${result.exitCode}: ${result.stderr.trim()}`);
      }
    }
    images.push(image);
  }
  return images;
}

async function compileStatic(source: string, output: string): Promise<void> {
  await mkdir(path.dirname(output), { recursive: true });
  const result = await execa('gcc', ['-static', '-O2', '-s', '-Wall', '-Wextra', '-Werror', '-o', output, source], { reject: false });
  if (result.exitCode !== 0) {
    const detail = result.stderr.trim() || (result.failed ? String(result.message) : '');
    throw new Error(`Compiling ${source} with gcc -static failed: ${detail}. Install gcc and libc6-dev (Debian packages).`);
  }
  await chmod(output, 0o755);
}

async function hashFile(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}
