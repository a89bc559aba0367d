import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuntimeManifest } from '../../agent/runtime/build.js';
import { VERSION } from '../../agent/version.js';
import { poll, Podman } from '../../examples/podman.js';
import { BUSYBOX_IMAGE, buildImages, DISTROLESS_IMAGE, EMPTY_IMAGE } from '../../images/build.js';
import { repoRoot } from '../support/tandem.js';

/**
 * The images as podman built them from the Dockerfile and images/: facts read from the real
 * images with `podman image inspect` and from containers that run them.
 */

const TANDEM_IMAGE = 'localhost/tandem:dev';
/** The UID and GID of `nobody`, which the Dockerfile sets as a number for runAsNonRoot. */
const NON_ROOT_USER = '65534:65534';

interface ImageInspection {
  Size: number;
  RootFS: { Layers: string[] };
  Config: { User?: string; Entrypoint?: string[]; Labels?: Record<string, string> };
}

describe('tandem image', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'tandem-e2e-image-'));
  const podman = new Podman(path.join(workDir, 'podman'));

  beforeAll(async () => {
    await buildImages({ repoRoot, containersConf: podman.containersConf, testImages: true });
  }, 600_000);

  afterAll(() => {
    rmSync(workDir, { recursive: true, force: true });
  });

  async function inspectImage(image: string): Promise<ImageInspection> {
    const [inspection] = JSON.parse(await podman.run(['image', 'inspect', image])) as ImageInspection[];
    if (inspection === undefined) {
      throw new Error(`podman image inspect ${image} returned no image.`);
    }
    return inspection;
  }

  /** Runs a container that podman removes when it exits, with `args` after the image name. */
  function runOnce(options: readonly string[], image: string, args: readonly string[] = []): Promise<string> {
    return podman.run(['run', '--rm', '--network', 'none', ...options, image, ...args]);
  }

  it('runs as non-root user', async () => {
    const inspection = await inspectImage(TANDEM_IMAGE);
    expect(inspection.Config.User).toBe(NON_ROOT_USER);
    expect(inspection.Config.Entrypoint).toEqual(['/opt/tandem/bin/tandem']);

    const ids = await runOnce(['--entrypoint', '/bin/id'], TANDEM_IMAGE);
    expect(ids).toContain('uid=65534');
  });

  it('has OCI labels', async () => {
    const labels = (await inspectImage(TANDEM_IMAGE)).Config.Labels ?? {};
    expect(labels['org.opencontainers.image.title']).toBe('tandem');
    expect(labels['org.opencontainers.image.version']).toBe(VERSION);
    expect(labels['org.opencontainers.image.licenses']).toBe('Apache-2.0');
    expect(labels['org.opencontainers.image.description']).toBeTruthy();
    expect(labels['org.opencontainers.image.base.name']).toBe(BUSYBOX_IMAGE);
  });

  it('adds only the runtime to its base', async () => {
    const tandemImage = await inspectImage(TANDEM_IMAGE);
    const base = await inspectImage(BUSYBOX_IMAGE);
    const manifest = JSON.parse(await runOnce(['--entrypoint', '/bin/cat'], TANDEM_IMAGE, ['/opt/tandem/manifest.json'])) as RuntimeManifest;
    const runtimeBytes = manifest.files.reduce((sum, file) => sum + file.size, 0);

    // One layer on the base: nothing of the build stage (compiler, node_modules, sources) remains.
    expect(tandemImage.RootFS.Layers).toHaveLength(base.RootFS.Layers.length + 1);
    expect(tandemImage.RootFS.Layers.slice(0, -1)).toEqual(base.RootFS.Layers);
    // The manifest counts bin/ps, a hard link to bin/tandem, as a file of its own, and the layer
    // adds tar headers, directories and manifest.json, so the two sizes differ by less than 1 MiB.
    expect(Math.abs(tandemImage.Size - base.Size - runtimeBytes)).toBeLessThan(1024 * 1024);
    expect(manifest.version).toBe(VERSION);
  });

  it('prints its version', async () => {
    const output = await runOnce([], TANDEM_IMAGE, ['--version']);
    expect(output.trim()).toBe(VERSION);
  });

  it('installs a working runtime into a volume', async () => {
    // An emptyDir is world-writable, and the image's non-root user writes into it.
    const volume = path.join(workDir, 'tandem-volume');
    mkdirSync(volume);
    chmodSync(volume, 0o777);

    await runOnce(['--volume', `${volume}:/tandem`], TANDEM_IMAGE, ['install', '/tandem']);
    const installed = JSON.parse(readFileSync(path.join(volume, 'manifest.json'), 'utf8')) as RuntimeManifest;
    expect(installed.version).toBe(VERSION);
    expect(statSync(path.join(volume, 'bin', 'tandem')).uid).toBe(65534);
    expect(statSync(path.join(volume, 'state')).mode & 0o7777).toBe(0o1777);

    // The distroless image has no shell, no libc and no Node.js, so the runtime brings all it runs.
    const version = await runOnce(['--volume', `${volume}:/tandem:ro`, '--entrypoint', '/tandem/bin/tandem'], DISTROLESS_IMAGE, ['--version']);
    expect(version.trim()).toBe(VERSION);
    const status = await runOnce(['--volume', `${volume}:/tandem:ro`, '--entrypoint', '/tandem/bin/tandem'], DISTROLESS_IMAGE, [
      'status',
      '--shared-dir',
      '/tandem',
      '--output',
      'json',
    ]);
    expect(JSON.parse(status)).toEqual({ rows: [] });
  }, 120_000);
});

describe('hot-upgrade empty image', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'tandem-e2e-empty-'));
  const podman = new Podman(path.join(workDir, 'podman'));
  const container = `e2e-empty-${process.pid}`;

  beforeAll(async () => {
    await buildImages({ repoRoot, containersConf: podman.containersConf, testImages: true });
  }, 600_000);

  afterAll(async () => {
    await execa('podman', ['rm', '--force', '--ignore', container], { env: { CONTAINERS_CONF: podman.containersConf }, reject: false });
    rmSync(workDir, { recursive: true, force: true });
  }, 60_000);

  it('is tiny and has no shell', async () => {
    const [inspection] = JSON.parse(await podman.run(['image', 'inspect', EMPTY_IMAGE])) as ImageInspection[];
    expect(inspection?.Size).toBeLessThan(1024 * 1024);
    expect(inspection?.Config.User).toBe(NON_ROOT_USER);
    expect(inspection?.Config.Entrypoint).toEqual(['/idle']);

    const noShell = await execa('podman', ['run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', EMPTY_IMAGE, '-c', 'true'], {
      env: { CONTAINERS_CONF: podman.containersConf },
      reject: false,
    });
    expect(noShell.exitCode).not.toBe(0);
  });

  it('exits 0 on podman stop', async () => {
    await podman.run(['run', '--detach', '--network', 'none', '--name', container, EMPTY_IMAGE]);
    await poll(`${container} to start idling`, 20_000, async () => ((await podman.logs(container)).includes('idle: started') ? true : undefined));

    // podman stop sends SIGTERM and SIGKILL after --time seconds, so a stop well below that came from SIGTERM.
    const started = performance.now();
    await podman.run(['stop', '--time', '20', container]);
    const stopMs = performance.now() - started;

    const inspection = await podman.inspectContainer(container);
    expect(inspection.exitCode).toBe(0);
    expect(stopMs).toBeLessThan(10_000);
    const log = await podman.logs(container);
    expect(log).toContain('uid 65534');
    expect(log).toContain('idle: received SIGTERM, exiting 0');
  }, 60_000);
});
